"""Run Feast's own universal integration tests against featurestack's stores.

Feast's maintainers hold every store to ``sdk/python/tests/integration/`` of feast-dev/feast; a
store plugged in through Feast's extension points is held to the same contract by Feast's users.
This script runs that suite, from a checkout of the Feast repository kept outside this one
(never copied in), against our offline store (``DuckDBAsofOfflineStore``) and each of our
online stores (``SQLiteOnlineStore``, ``RedisOnlineStore``), and prints pass/fail counts per
store and every failing test, marking the ones ``docs/conformance.md`` lists as differences we
keep on purpose.

How it plugs in (Feast's documented way for out-of-tree stores): Feast's test configuration
imports the module named by ``FULL_REPO_CONFIGS_MODULE`` and takes its
``AVAILABLE_OFFLINE_STORES`` / ``AVAILABLE_ONLINE_STORES``. The script writes such a module in a
temporary folder (a ``FileDataSourceCreator`` whose offline store config is ours, and our online
store configs under the names ``sqlite`` and ``redis`` that Feast's markers select), beside a
symlink to the checkout's ``sdk/python/tests``, so the installed Feast is imported and not the
checkout's source tree.

Feast's tests pin their own pytest (< 8) and plugins, which cannot share our ``.venv``: they run
in a virtualenv of their own (``data/conformance/venv`` by default, git-ignored), built with uv
from our ``uv.lock`` (same Feast, DuckDB, Redis client...) plus the checkout's ``test`` extra and
the two client libraries the universal helpers import (botocore, google-cloud-bigquery),
constrained to the locked versions. It is rebuilt when uv.lock or those requirements change.

Usage::

    python conformance/feast_universal.py /work/feast-src            # all three stores
    FEAST_SRC=/work/feast-src python conformance/feast_universal.py --stores sqlite,redis
    python conformance/feast_universal.py /work/feast-src -- -k test_persist   # pytest args

Exit status: 0 when every failure is a documented difference, 1 otherwise, 2 on bad usage.
Needs uv, and Redis (``--redis-url`` / ``FEATURESTACK_TEST_REDIS_URL``) for the redis run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OFFLINE_STORE = "featurestack.stores.offline.DuckDBAsofOfflineStore"
SQLITE_STORE = "featurestack.stores.online.SQLiteOnlineStore"
REDIS_STORE = "featurestack.stores.redis_online.RedisOnlineStore"

#: Feast's universal offline tests (parametrized over ``AVAILABLE_OFFLINE_STORES``). Left out:
#: test_dqm_validation.py (written for Great Expectations 0.x, ``great_expectations.dataset``,
#: which Feast's own DuckDB job ignores too) and test_s3_custom_endpoint.py (needs a MinIO
#: container and an S3 source).
OFFLINE_TESTS = [
    "integration/offline_store/test_universal_historical_retrieval.py",
    "integration/offline_store/test_universal_materialization.py",
    "integration/offline_store/test_universal_types.py",
    "integration/offline_store/test_feature_logging.py",
    "integration/offline_store/test_offline_write.py",
    "integration/offline_store/test_persist.py",
    "integration/offline_store/test_push_features_to_offline_store.py",
    "integration/offline_store/test_non_entity_mode.py",
]
#: Feast's universal online tests (parametrized over ``AVAILABLE_ONLINE_STORES``, or run on the
#: default online store, ours, like the on-demand materialization tests). Left out: the
#: tests of one particular store (DynamoDB, MongoDB, MySQL, PostgreSQL, ScyllaDB, hybrid, Feast's
#: own Redis store's versioning) and test_remote_online_store.py (Feast's remote client against
#: a feature server on Feast's stock SQLite store).
ONLINE_TESTS = [
    "integration/online_store/test_universal_online.py",
    "integration/online_store/test_universal_online_types.py",
    "integration/online_store/test_universal_e2e.py",
    "integration/online_store/test_push_features_to_online_store.py",
    "integration/materialization/test_universal_materialization.py",
]
#: Feast's type tests are marked for the store named ``sqlite`` only; the redis run runs them a
#: second time with our Redis store under that name (our Redis store has its own value codec).
TYPE_TESTS = ["integration/online_store/test_universal_online_types.py"]
#: Deselected as Feast's own CI does (``-m 'not ray_offline_stores_only'``): tests for Ray only.
MARKERS = "not ray_offline_stores_only"
#: Deselected: tests of DynamoDB (a local DynamoDB environment of their own, not our stores).
KEYWORDS = "not dynamo"
#: Imported by the universal tests and their helpers though no test here uses those clouds.
EXTRA_TEST_REQUIREMENTS = ["assertpy==1.1", "botocore", "google-cloud-bigquery"]

#: Failures we keep on purpose, per store, by test name (parameters stripped); the reasons are
#: in docs/conformance.md. Anything failing outside this list makes the script exit 1.
_TTL_ON_READ = (
    "the view's TTL applies on read: price_revenue_fv (ttl 1 day) holds rows of 2024-01-01, "
    "so online they are OUTSIDE_MAX_AGE and the on-read view computes null; Feast's stock "
    "stores return the expired value (feast-dev/feast#6821)"
)
DOCUMENTED: dict[str, dict[str, str]] = {
    "offline": {
        "test_writing_consecutively_to_offline_store": (
            "rows written to the offline store are staged for the gate and are not readable "
            "offline until a gate run has validated and published them"
        ),
    },
    "sqlite": {"test_odfv_write_methods": _TTL_ON_READ},
    "redis": {"test_odfv_write_methods": _TTL_ON_READ},
}

CONFIG_MODULE = '''"""Generated by featurestack's conformance/feast_universal.py; do not edit."""
import os
import sys

from tests.universal.feature_repos.universal.data_sources.file import FileDataSourceCreator

from featurestack.stores.offline import DuckDBAsofOfflineStoreConfig


class FeaturestackDataSourceCreator(FileDataSourceCreator):
    """Feast's Parquet file sources, read by featurestack's DuckDB ASOF offline store."""

    def create_offline_store_config(self):
        return DuckDBAsofOfflineStoreConfig()


_ONLINE = {online}
_STORE = os.environ["FEATURESTACK_CONFORMANCE_ONLINE"]
# The name Feast's markers select it by (``only=["sqlite"]``...): the store's own by default.
_NAME = os.environ.get("FEATURESTACK_CONFORMANCE_ONLINE_AS") or _STORE

AVAILABLE_OFFLINE_STORES = [("local", FeaturestackDataSourceCreator)]
AVAILABLE_ONLINE_STORES = {{_NAME: (_ONLINE[_STORE], None)}}

# Tests marked ``universal_offline_stores(only=["file"])`` are for file-based offline stores:
# ours is one (Parquet FileSources), so "file" names it too. Feast's repo_configuration, which
# is importing this module, has defined the mapping already.
_repo_configuration = sys.modules["tests.universal.feature_repos.repo_configuration"]
_repo_configuration.OFFLINE_STORE_TO_PROVIDER_CONFIG["file"] = (
    "local",
    FeaturestackDataSourceCreator,
)
'''


@dataclass
class Outcome:
    """One store's run: counts and the failing test ids with their first message line."""

    store: str
    passed: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def documented(self) -> dict[str, str]:
        known = DOCUMENTED.get(self.store, {})
        return {t: known[_bare(t)] for t in self.failed if _bare(t) in known}

    def unexpected(self) -> list[str]:
        known = DOCUMENTED.get(self.store, {})
        return [t for t in self.failed if _bare(t) not in known]


def pretty(test_id: str) -> str:
    """Feast's test ids without the ``ParameterSet(values=(...), marks=[], id=None)`` noise."""
    return re.sub(r"ParameterSet\(values=\((.*?),\), marks=\[\], id=None\)", r"\1", test_id)


def _bare(test_id: str) -> str:
    """``path::test_name[params]`` → ``test_name``."""
    return test_id.rsplit("::", 1)[-1].split("[", 1)[0]


def _run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def feast_commit(src: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(src), "log", "-1", "--format=%H %cs %s"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "(not a git checkout)"


def test_requirements(src: Path) -> list[str]:
    """The checkout's ``test`` extra (pytest < 8 and its plugins) and the helpers' clients."""
    project = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    return [*project["optional-dependencies"]["test"], *EXTRA_TEST_REQUIREMENTS]


def ensure_venv(venv: Path, src: Path) -> Path:
    """The test virtualenv, (re)built when uv.lock or the test requirements changed."""
    uv = shutil.which("uv")
    if uv is None:
        sys.exit("uv is needed to build the conformance virtualenv (https://docs.astral.sh/uv/)")
    requirements = test_requirements(src)
    lock = (REPO / "uv.lock").read_bytes()
    stamp = hashlib.sha256(lock + json.dumps(requirements).encode()).hexdigest()
    python = venv / "bin" / "python"
    stamp_file = venv / ".featurestack-stamp"
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return python
    print(f"building the conformance virtualenv in {venv}", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    _run([uv, "venv", "--quiet", "--clear", "--python", "3.11", str(venv)])
    locked = venv / "locked-requirements.txt"
    _run(
        [
            uv,
            "export",
            "--quiet",
            "--frozen",
            "--no-hashes",
            "--no-dev",
            "--no-emit-project",
            "--output-file",
            str(locked),
        ],
        cwd=REPO,
    )
    pip = [uv, "pip", "install", "--quiet", "--python", str(python)]
    _run([*pip, "-r", str(locked)])
    _run([*pip, "--no-deps", "--editable", str(REPO)])
    # Constrained to the lock: the test tools must not move Feast, DuckDB or the Redis client.
    _run([*pip, "--constraint", str(locked), *requirements])
    stamp_file.write_text(stamp)
    return python


def redis_reachable(python: Path, url: str) -> str | None:
    """None when Redis answers PING at ``url``, else why not."""
    probe = subprocess.run(
        [str(python), "-c", "import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()", url],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["?"])[-1]


def drop_redis_keys(python: Path, url: str, prefix: str) -> None:
    """Remove whatever the run left under its own key prefix."""
    code = (
        "import redis, sys\n"
        "c = redis.Redis.from_url(sys.argv[1])\n"
        "keys = list(c.scan_iter(match=sys.argv[2] + ':*', count=1000))\n"
        "for i in range(0, len(keys), 1000): c.unlink(*keys[i:i + 1000])\n"
    )
    subprocess.run([str(python), "-c", code, url, prefix], check=False)


def parse_junit(path: Path, store: str) -> Outcome:
    outcome = Outcome(store)
    if not path.exists():
        outcome.failed["(pytest produced no report)"] = "see the output above"
        return outcome
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        test_id = f"{module}.py::{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            outcome.failed[test_id] = (message[0] if message else "")[:300]
        elif case.find("skipped") is not None:
            outcome.skipped += 1
        else:
            outcome.passed += 1
    return outcome


def _pytest(
    python: Path,
    workdir: Path,
    store: str,
    tests: list[str],
    report: Path,
    workers: int,
    extra: list[str],
    alias: str = "",
) -> Outcome:
    """One pytest pass of ``tests`` with ``store`` as the online store (named ``alias`` for
    Feast's markers, when given); its outcome from the JUnit report."""
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(workdir),
        "FULL_REPO_CONFIGS_MODULE": "featurestack_conformance_configs",
        "FEATURESTACK_CONFORMANCE_ONLINE": store,
        "FEATURESTACK_CONFORMANCE_ONLINE_AS": alias,
        "FEAST_IS_LOCAL_TEST": "True",
        "FEAST_USAGE": "False",
        # Our offline store stages pushed rows under the data folder: a throwaway one.
        "FEATURESTACK_DATA_DIR": str(workdir / "data"),
    }
    cmd = [str(python), "-m", "pytest", "-c", str(workdir / "pytest.ini")]
    cmd += ["--rootdir", str(workdir), "-p", "no:cacheprovider", "--integration"]
    cmd += ["-m", MARKERS, "-k", KEYWORDS, f"--junitxml={report}", "-q", "--tb=line"]
    if workers > 1:
        cmd += ["-n", str(workers), "--dist", "loadgroup"]
    cmd += [f"tests/{t}" for t in tests] + extra
    print(f"\n=== {store}{f' as {alias}' if alias else ''}: {' '.join(cmd[3:])}", flush=True)
    subprocess.run(cmd, cwd=workdir, env=env, check=False)
    return parse_junit(report, store)


def run_store(
    python: Path, workdir: Path, store: str, out_dir: Path, workers: int, extra: list[str]
) -> Outcome:
    """``offline``: Feast's offline tests on our offline store (online: our SQLite store);
    ``sqlite``/``redis``: Feast's online tests on that store of ours (offline: ours where a
    test is parametrized over offline stores, Feast's file store elsewhere)."""
    started = time.monotonic()
    if store == "offline":
        outcome = _pytest(
            python, workdir, "sqlite", OFFLINE_TESTS, out_dir / "offline.xml", workers, extra
        )
    else:
        # On Redis the type tests run in the pass below, under the name they are marked for.
        tests = [t for t in ONLINE_TESTS if store != "redis" or t not in TYPE_TESTS]
        outcome = _pytest(python, workdir, store, tests, out_dir / f"{store}.xml", workers, extra)
    if store == "redis":
        types = _pytest(
            python,
            workdir,
            store,
            TYPE_TESTS,
            out_dir / "redis-types.xml",
            workers,
            extra,
            alias="sqlite",
        )
        outcome.passed += types.passed
        outcome.skipped += types.skipped
        outcome.failed.update(types.failed)
    outcome.store = store
    outcome.seconds = time.monotonic() - started
    return outcome


def write_workdir(workdir: Path, src: Path, redis_url: str, prefix: str) -> None:
    """The repo-configs module, Feast's pytest.ini, and a symlink to the checkout's tests."""
    online = {
        "sqlite": {"type": SQLITE_STORE},
        "redis": {"type": REDIS_STORE, "url": redis_url, "key_prefix": prefix},
    }
    (workdir / "featurestack_conformance_configs.py").write_text(
        CONFIG_MODULE.format(online=repr(online))
    )
    shutil.copy(src / "sdk" / "python" / "pytest.ini", workdir / "pytest.ini")
    (workdir / "tests").symlink_to(src / "sdk" / "python" / "tests", target_is_directory=True)


def summarize(outcomes: list[Outcome], commit: str) -> int:
    print(f"\nFeast checkout: {commit}")
    print(f"{'store':<8} {'passed':>6} {'failed':>6} {'skipped':>7} {'documented':>10} {'s':>6}")
    for o in outcomes:
        print(
            f"{o.store:<8} {o.passed:>6} {len(o.failed):>6} {o.skipped:>7} "
            f"{len(o.documented()):>10} {o.seconds:>6.0f}"
        )
    status = 0
    for o in outcomes:
        for test_id, reason in sorted(o.documented().items()):
            print(f"  [{o.store}] documented  {pretty(test_id)}: {reason}")
        for test_id in sorted(o.unexpected()):
            print(f"  [{o.store}] FAILED      {pretty(test_id)}: {o.failed[test_id]}")
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python conformance/feast_universal.py /work/feast-src --stores redis",
    )
    parser.add_argument(
        "feast_src",
        nargs="?",
        default=os.environ.get("FEAST_SRC"),
        help="checkout of feast-dev/feast (or FEAST_SRC)",
    )
    parser.add_argument("--stores", default="offline,sqlite,redis", help="offline,sqlite,redis")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("FEATURESTACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument("--venv", type=Path, default=REPO / "data" / "conformance" / "venv")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "conformance")
    parser.add_argument("-n", "--workers", type=int, default=2, help="pytest-xdist workers")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed on to pytest")
    args = parser.parse_args(argv)

    if not args.feast_src:
        parser.error("give the Feast checkout as an argument or in FEAST_SRC")
    src = Path(args.feast_src).resolve()
    if not (src / "sdk/python/tests/universal/feature_repos/repo_configuration.py").exists():
        parser.error(f"{src} is not a checkout of feast-dev/feast (no sdk/python/tests/universal)")
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = sorted(set(stores) - {"offline", "sqlite", "redis"})
    if unknown:
        parser.error(f"unknown store(s) {unknown}: choose among offline, sqlite, redis")

    commit = feast_commit(src)
    python = ensure_venv(args.venv, src)
    if "redis" in stores:
        why = redis_reachable(python, args.redis_url)
        if why:
            print(
                f"Redis is not reachable at {args.redis_url} ({why}): start it or pass "
                "--redis-url / FEATURESTACK_TEST_REDIS_URL",
                file=sys.stderr,
            )
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    prefix = f"fsconf{uuid.uuid4().hex[:8]}"
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="featurestack-conformance-") as tmp:
        workdir = Path(tmp)
        write_workdir(workdir, src, args.redis_url, prefix)
        try:
            for store in stores:
                outcomes.append(
                    run_store(python, workdir, store, args.out, args.workers, args.pytest_args)
                )
        finally:
            if "redis" in stores:
                drop_redis_keys(python, args.redis_url, prefix)
    return summarize(outcomes, commit)


if __name__ == "__main__":
    sys.exit(main())
