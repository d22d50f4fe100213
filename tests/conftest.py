"""Shared fixtures: small demo markets and a whole pipeline run on real tools.

Every test that touches dbt, Great Expectations, Feast or MLflow runs them for real, in a
temporary data folder, so nothing here depends on (or changes) the user's ./data.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from typer.testing import CliRunner

from featurestack.core.settings import Settings
from featurestack.demo_data import DemoSpec, write_demo_data

# Property-based tests judge properties, never speed: no deadline per example and no health
# check that fails because the machine is busy (another job on both cores made
# tests/unit/test_row_codec.py fail `too_slow`). The number of examples stays Hypothesis's.
hypothesis_settings.register_profile(
    "featurestack",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
hypothesis_settings.load_profile("featurestack")

# Parallel workers (pytest-xdist, `make test`) build the same dbt projects: each writes its own
# target/ (manifest, run results: featurestack reads them through DBT_TARGET_PATH) and logs/.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    os.environ.setdefault("DBT_TARGET_PATH", f"target-{_WORKER}")
    os.environ.setdefault(
        "DBT_LOG_PATH", os.path.join(tempfile.gettempdir(), f"featurestack-dbt-logs-{_WORKER}")
    )

SMALL = DemoSpec(symbols=8, accounts=20, days=260, seed=7)
#: this repository is the market demo's project (dbt_project/, feature_repo/, specs/, gate.yml)
DEMO = Path(__file__).resolve().parents[1]
_ENV_KEYS = (
    "FEATURESTACK_DATA_DIR",
    "FEATURESTACK_RAW_DIR",
    "MLFLOW_TRACKING_URI",
    "FEATURESTACK_PROFILE",
    "FEATURESTACK_PG_URL",
    "FEATURESTACK_FEAST_REGISTRY_URL",
    "FEATURESTACK_REDIS_URL",
    "FEATURESTACK_REDIS_PREFIX",
    "FEATURESTACK_TIMEOUT_S",
    "FEATURESTACK_ARTIFACTS_URI",
    "FEATURESTACK_OPTUNA_STORAGE",
    "FEATURESTACK_PROJECT_DIR",
)
REDIS_URL = os.environ.get("FEATURESTACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis the scale-profile tests use (FEATURESTACK_TEST_REDIS_URL, default local)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as err:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({err}). Start it (`redis-server "
            "--daemonize yes`) or point FEATURESTACK_TEST_REDIS_URL at one.",
            pytrace=False,
        )
    return REDIS_URL


PG_SERVER_URL = os.environ.get(
    "FEATURESTACK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server the scale-profile tests create their own databases on
    (FEATURESTACK_TEST_PG_URL: any database there; the user needs CREATEDB)."""
    import psycopg

    try:
        psycopg.connect(PG_SERVER_URL.replace("+psycopg", ""), connect_timeout=3).close()
    except psycopg.Error as err:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_SERVER_URL} ({err}). Start it or point "
            "FEATURESTACK_TEST_PG_URL at a server where this user may create databases.",
            pytrace=False,
        )
    return PG_SERVER_URL.rpartition("/")[0]


@dataclass
class ScaleEnv:
    """A scale profile of a test's own: its database and Redis prefix, dropped afterwards."""

    env: dict[str, str]
    database: str
    prefix: str

    def settings(self) -> Settings:
        from featurestack.core.settings import load_settings

        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            return load_settings()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture
def scale_env(pg_server: str, redis_url: str, tmp_path: Path) -> Iterator[ScaleEnv]:
    """Environment variables selecting the scale profile on a fresh database
    ``featurestack_test_<random>`` and Redis prefix ``fst_test_<random>``; both removed after."""
    import fcntl
    import uuid

    from featurestack.infra import services

    # One scale-profile test at a time across xdist workers: two scale flows at once exhausted
    # PostgreSQL's 100 connections (each flow holds MLflow's, Feast's and Optuna's pools).
    lock = open(os.path.join(tempfile.gettempdir(), "featurestack-tests-postgresql.lock"), "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    tag = uuid.uuid4().hex[:10]
    env = {
        "FEATURESTACK_PROFILE": "scale",
        "FEATURESTACK_DATA_DIR": str(tmp_path / "data"),
        "FEATURESTACK_PG_URL": f"{pg_server}/featurestack_test_{tag}",
        "FEATURESTACK_REDIS_URL": redis_url,
        "FEATURESTACK_REDIS_PREFIX": f"fst_test_{tag}",
        "FEATURESTACK_TIMEOUT_S": "2",
    }
    scale = ScaleEnv(env, f"featurestack_test_{tag}", f"fst_test_{tag}")
    try:
        yield scale
        services.reset(scale.settings())
    finally:
        lock.close()  # releases the lock


@pytest.fixture(autouse=True)
def _isolated_env() -> Iterator[None]:
    """Each test sees only the featurestack variables it sets itself."""
    saved = {k: os.environ.pop(k, None) for k in _ENV_KEYS}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo market (8 symbols, 260 days), written once per session."""
    raw = tmp_path_factory.mktemp("small") / "raw"
    write_demo_data(raw, SMALL)
    return raw


@dataclass
class PipelineRun:
    settings: Settings
    exit_code: int
    output: str
    summary: dict


@pytest.fixture(scope="session")
def pipeline(small_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """`featurestack run` once, through the real CLI, on the small market."""
    from featurestack.cli import app

    data = tmp_path_factory.mktemp("pipeline") / "data"
    env = {
        "FEATURESTACK_DATA_DIR": str(data),
        "FEATURESTACK_RAW_DIR": str(small_raw),
        "MLFLOW_TRACKING_URI": None,
    }
    result = CliRunner().invoke(app, ["run"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    settings = Settings(data, small_raw, f"sqlite:///{data / 'mlflow' / 'mlflow.db'}")
    summary = json.loads((settings.reports_dir / "run_summary.json").read_text())
    return PipelineRun(settings, result.exit_code, result.output, summary)


def copy_of_pipeline(pipeline: PipelineRun, tmp_path: Path) -> Settings:
    """The session pipeline's whole data folder (warehouse, published files, Feast registry and
    online store, MLflow), copied where a test may change it; raw files are shared read-only."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(pipeline.settings.data_dir, data, symlinks=True)
    return Settings(data, pipeline.settings.raw_dir, f"sqlite:///{data / 'mlflow' / 'mlflow.db'}")


def published_state(published_dir: Path) -> dict[str, str]:
    """What a reader of the published tables sees: the snapshot ``current`` names, and the
    sha256 of each table's files (``table/YYYY-MM.parquet``)."""
    from models_py.tracking import file_sha256

    current = published_dir / "current"
    state = {"current": os.readlink(current) if current.is_symlink() else "missing"}
    for path in sorted(current.glob("*/*.parquet")):
        state[f"{path.parent.name}/{path.name}"] = file_sha256(path)
    return state


def published_tables(published_dir: Path) -> list[str]:
    current = published_dir / "current"
    return sorted(p.name for p in current.iterdir() if p.is_dir() and p.name[0] not in "._")


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration and tests/model runs real tools end to end: slow.
    (`make test-fast` runs the rest: `-m "not slow" tests/unit tests/data`.) Tests of the
    Spark session or of the PostgreSQL server run on one worker of `make test`'s xdist pool
    (Spark allows one session per process; PostgreSQL has a connection limit)."""
    for item in items:
        if {"integration", "model"} & set(item.path.parts[-3:-1]):
            item.add_marker(pytest.mark.slow)
        # One xdist worker runs every test of a Spark session (one JVM) or of the PostgreSQL
        # server (its 100 connections: two workers' scale flows at once exhausted them).
        if {"spark", "pg_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("services"))


def copy_demo_project(target: Path, tuned: bool = False) -> Path:
    """The demo project's own files (no build output, no data), as a user copies a project;
    without ``tuned``, next_day_up's spec trains without its Optuna study (a quick fit)."""
    import shutil

    import yaml

    for name in ("dbt_project", "feature_repo", "specs"):
        shutil.copytree(
            DEMO / name,
            target / name,
            ignore=shutil.ignore_patterns("target", "logs", "__pycache__", "dbt_packages"),
        )
    for name in ("gate.yml", "featurestack.yml"):
        shutil.copy(DEMO / name, target / name)
    if not tuned:
        spec_path = target / "specs" / "next_day_up.yaml"
        spec = yaml.safe_load(spec_path.read_text())
        spec.pop("tuning"), spec.pop("cv")
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return target
