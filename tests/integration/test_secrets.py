"""Nobody in where they do not belong: `serve` beyond loopback needs an API key, and no URL
password, key or token ends up in an output, a file, an MLflow tag or an error.

The whole flow runs on the scale profile with a password in every URL: PostgreSQL (the test
server trusts local connections, so the password is carried but not needed) and a Redis of
the test's own started with ``--requirepass``; an API key and an MLflow token are set too.
Then every line printed, every file in the data folder (text or binary) and every MLflow tag
and parameter is searched for each secret.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurestack.cli import app
from tests.conftest import ScaleEnv

#: the console script, as a user runs it
FEATURESTACK = str(Path(sys.executable).with_name("featurestack"))
SECRETS = {
    "pg": "pgPw-7f3a9c",
    "redis": "rdPw-51be0d",
    "api": "apiKey-c0ffee42",
    "token": "mlTok-9d8e7f",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own (a real redis-server) that requires a password."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            SECRETS["redis"],
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        url = f"redis://:{SECRETS['redis']}@127.0.0.1:{port}/0"
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()


def test_serve_beyond_loopback_needs_an_api_key_or_insecure(tmp_path: Path) -> None:
    env = {"FEATURESTACK_DATA_DIR": str(tmp_path / "data"), "FEATURESTACK_API_KEY": ""}
    runner = CliRunner()
    open_ = runner.invoke(app, ["serve", "--host", "0.0.0.0"], env=env)
    assert open_.exit_code == 2, open_.output
    assert "FEATURESTACK_API_KEY is not set" in open_.output and "--insecure" in open_.output
    # Past the check, each stops at the next one: no model is registered in this data folder.
    for extra, key in ((["--insecure"], ""), ([], SECRETS["api"])):
        passed = runner.invoke(
            app, ["serve", "--host", "0.0.0.0", *extra], env={**env, "FEATURESTACK_API_KEY": key}
        )
        assert passed.exit_code == 1 and "no registered model" in passed.output, passed.output
    local = runner.invoke(app, ["serve", "--host", "127.0.0.1"], env=env)
    assert local.exit_code == 1 and "no registered model" in local.output


def found_secrets(text: bytes) -> list[str]:
    return [name for name, value in SECRETS.items() if value.encode() in text]


def test_no_secret_appears_in_any_output_file_tag_or_error(
    scale_env: ScaleEnv, small_raw: Path, redis_with_password: str, tmp_path: Path
) -> None:
    import mlflow

    pg_url = scale_env.env["FEATURESTACK_PG_URL"].replace(
        "postgres@", f"postgres:{SECRETS['pg']}@", 1
    )
    assert SECRETS["pg"] in pg_url
    env = {
        **os.environ,
        **scale_env.env,
        "FEATURESTACK_PG_URL": pg_url,
        "FEATURESTACK_REDIS_URL": redis_with_password,
        "FEATURESTACK_RAW_DIR": str(small_raw),
        "FEATURESTACK_API_KEY": SECRETS["api"],
        "MLFLOW_TRACKING_TOKEN": SECRETS["token"],
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    # The demo spec without tuning: every stage runs, in a fraction of the time.
    import yaml

    from tests.conftest import DEMO

    spec = yaml.safe_load((DEMO / "specs" / "next_day_up.yaml").read_text())
    spec.update(tuning=None, params={"n_estimators": 20, "num_leaves": 7})
    (tmp_path / "next_day_up.yaml").write_text(yaml.safe_dump(spec))
    run = subprocess.run(
        [FEATURESTACK, "run", "--model", str(tmp_path / "next_day_up.yaml")],
        env=env,
        capture_output=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout.decode()[-3000:] + run.stderr.decode()[-3000:]
    outputs = {"run stdout": run.stdout, "run stderr": run.stderr}

    # Errors: a wrong Redis password and an unreachable PostgreSQL, each named without secrets.
    wrong = redis_with_password.replace(SECRETS["redis"], SECRETS["redis"] + "-wrong")
    for name, change in (
        ("materialize, wrong Redis password", {"FEATURESTACK_REDIS_URL": wrong}),
        ("doctor, PostgreSQL down", {"FEATURESTACK_PG_URL": pg_url.replace(":5432", ":1")}),
    ):
        command = ["materialize"] if name.startswith("materialize") else ["doctor"]
        failed = subprocess.run(
            [FEATURESTACK, *command],
            env={**env, **change},
            capture_output=True,
            timeout=300,
        )
        assert failed.returncode != 0, failed.stdout
        outputs[name] = failed.stdout + failed.stderr

    data = Path(scale_env.env["FEATURESTACK_DATA_DIR"])
    leaks = {name: found_secrets(text) for name, text in outputs.items()}
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        leaks[str(path.relative_to(data))] = found_secrets(path.read_bytes())

    settings = scale_env.settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert runs, "the flow logged no run"
    for r in runs:
        recorded = repr((r.data.tags, r.data.params, r.info.artifact_uri)).encode()
        leaks[f"run {r.info.run_id}"] = found_secrets(recorded)
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name = '{model.name}'"):
            leaks[f"{model.name} v{version.version}"] = found_secrets(repr(version.tags).encode())
    assert {k: v for k, v in leaks.items() if v} == {}
