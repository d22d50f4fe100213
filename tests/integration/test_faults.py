"""Faults at every stage: a real process (the CLI a user runs, or a job of tests/fault_jobs.py)
is killed with SIGKILL at a fault point in the middle of its work (featurestack/core/
faults.py: it writes a marker file and waits; the test kills it), then the stage is re-run.
After the kill, published data, online values, the registry and the prediction log are the
old state or the new one, never a mix; after the re-run, the new one, nothing lost, nothing
twice, no orphan left (docs/faults.md is the matrix)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from featurestack.core.faults import DIR_ENV, ENV
from featurestack.core.settings import Settings
from featurestack.stores.offline_writes import stage_push, staged_pushes
from tests.conftest import PipelineRun, copy_of_pipeline, published_state

FEATURESTACK = str(Path(sys.executable).with_name("featurestack"))
ROOT = Path(__file__).resolve().parents[2]


def environ(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEATURESTACK_", "MLFLOW_"))}
    return {**env, **settings.environ()}


def kill_at(command: list[str], env: dict[str, str], point: str, folder: Path) -> None:
    """Run ``command`` until it reaches fault point ``point`` (``name`` or ``name:N``), then
    SIGKILL the process that reached it (and the command, if that is another)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{point.split(':')[0]}.reached"
    marker.unlink(missing_ok=True)
    out = folder / "output.txt"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            command, env={**env, ENV: point, DIR_ENV: str(folder)}, stdout=fh, stderr=fh, cwd=ROOT
        )
    deadline = time.monotonic() + 600
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{command} never reached {point}:\n{out.read_text()[-3000:]}")
        time.sleep(0.05)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait(60)


def run_ok(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


def leftovers(published: Path) -> list[str]:
    """What a killed publication may leave: staging, stray links, snapshots never swapped in."""
    snapshots = published / "snapshots"
    current = (published / "current").resolve()
    newer = [
        p.name
        for p in snapshots.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.stat().st_mtime > current.stat().st_mtime
    ]
    return [p.name for p in [*snapshots.glob(".staging-*"), *published.glob(".current-*")]] + newer


TABLE = "feat_account__daily"


@pytest.mark.parametrize("point", ["gate.before_swap", "gate.after_swap"])
def test_gate_killed_around_the_swap(pipeline: PipelineRun, tmp_path: Path, point: str) -> None:
    settings = copy_of_pipeline(pipeline, tmp_path)
    env = environ(settings)
    before = published_state(settings.published_dir)
    with duckdb.connect(str(settings.warehouse)) as con:  # a change for the gate to publish
        con.execute(
            f"update {TABLE} set fees = fees + 0.5 where event_timestamp = "
            f"(select max(event_timestamp) from {TABLE})"
        )
    table = pd.read_parquet(settings.published_table(TABLE))
    row = (
        table.sort_values("event_timestamp")
        .tail(1)
        .assign(event_timestamp=lambda f: f["event_timestamp"] + timedelta(days=1))
    )
    import pyarrow as pa

    pushed = pa.Table.from_pandas(row, preserve_index=False)
    stage_push(
        settings.data_dir,
        "featurestack",
        "account_daily",
        str(settings.published_table(TABLE)),
        pushed,
        pushed.schema,
    )

    kill_at([FEATURESTACK, "validate"], env, point, tmp_path / "faults")
    after_kill = published_state(settings.published_dir)
    if point == "gate.before_swap":
        assert after_kill == before, "a gate killed before its swap publishes nothing"
    else:
        assert after_kill != before and after_kill["current"] != before["current"]
    assert len(staged_pushes(settings.data_dir)) == 1  # not removed before the kill

    out = run_ok([FEATURESTACK, "validate"], env)
    status = "already published" if point == "gate.after_swap" else "published"
    assert f"offline pushes {status}: 1 file(s), 1 row(s)" in out, out
    assert staged_pushes(settings.data_dir) == []
    assert leftovers(settings.published_dir) == []
    final = pd.read_parquet(settings.published_table(TABLE))
    key = ["account_id", "event_timestamp"]
    assert not final.duplicated(key).any(), "a pushed row published twice"
    assert len(final) == len(table) + 1
    newest = table["event_timestamp"].max()
    old_fees = table.loc[table["event_timestamp"] == newest, "fees"].sort_values().to_numpy()
    new_fees = final.loc[final["event_timestamp"] == newest, "fees"].sort_values().to_numpy()
    assert (new_fees == old_fees + 0.5).all(), "the warehouse's change is published whole"


def test_dbt_build_killed_half_way_then_rebuilt_and_published(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    from featurestack.demo_data import append_price_correction

    settings = copy_of_pipeline(pipeline, tmp_path)
    raw = tmp_path / "raw"
    shutil.copytree(pipeline.settings.raw_dir, raw)
    settings = Settings(settings.data_dir, raw, settings.mlflow_tracking_uri)
    prices = pd.read_parquet(raw / "prices.parquet")
    day = sorted(prices["ts"].unique())[-3]
    symbol = sorted(prices["symbol"].unique())[0]
    append_price_correction(raw, symbol, day, 1.02, pd.Timestamp.now(tz="UTC"))
    env = environ(settings)
    before = published_state(settings.published_dir)
    old_close = pd.read_parquet(settings.published_table("feat_symbol__daily")).set_index(
        ["symbol", "event_timestamp"]
    )["close"]

    kill_at([FEATURESTACK, "build"], env, "dbt.node_finished:6", tmp_path / "faults")
    assert published_state(settings.published_dir) == before, "dbt never publishes"

    run_ok([FEATURESTACK, "build"], env)
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        names = [r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()]
    assert not [n for n in names if "__dbt" in n], names
    run_ok([FEATURESTACK, "validate"], env)
    new_close = pd.read_parquet(settings.published_table("feat_symbol__daily")).set_index(
        ["symbol", "event_timestamp"]
    )["close"]
    changed = new_close[new_close != old_close.reindex(new_close.index)]
    assert list(changed.index.get_level_values("symbol").unique()) == [symbol]
    assert changed.loc[(symbol, day)] == pytest.approx(old_close.loc[(symbol, day)] * 1.02)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_materialization_killed_after_a_batch_then_rerun(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from featurestack.infra.online_reader import OnlineReader
    from tests.fault_jobs import ROWS, T0
    from tests.fault_jobs import repo as fault_repo
    from tests.store_repo import online_store

    with online_store(kind, tmp_path, request) as online:
        folder = tmp_path / "repo"
        job = [sys.executable, "-m", "tests.fault_jobs", "materialize", str(folder)]
        config = json.dumps(online.config)
        run_ok([*job, config, (T0 + timedelta(hours=12)).isoformat()], dict(os.environ))
        end = (T0 + timedelta(days=2)).isoformat()
        kill_at(
            [*job, config, end], dict(os.environ), "materialize.batch_written:2", tmp_path / "f"
        )

        store, view = fault_repo(folder, online.config)
        rows = [{"id": i} for i in range(ROWS)]
        x = OnlineReader(store, ["items:x"]).read(rows, T0 + timedelta(days=2))["x"]
        old, new = [float(i) for i in range(ROWS)], [1000.0 + i for i in range(ROWS)]
        assert all(v in (o, n) for v, o, n in zip(x, old, new, strict=True)), x
        assert 0 < sum(v >= 1000 for v in x) < ROWS  # killed in the middle
        intervals = view.materialization_intervals
        assert [e for _, e in intervals] == [T0 + timedelta(hours=12)], "watermark unmoved"

        run_ok([*job, config, end], dict(os.environ))
        store, view = fault_repo(folder, online.config)
        assert OnlineReader(store, ["items:x"]).read(rows, T0 + timedelta(days=2))["x"] == new


def test_training_killed_before_registration_then_retrained(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    import mlflow
    import yaml

    from models_py.run_owner import REASON_TAG
    from tests.conftest import DEMO

    settings = copy_of_pipeline(pipeline, tmp_path)
    env = environ(settings)
    spec = yaml.safe_load((DEMO / "specs" / "next_day_up.yaml").read_text())
    spec.update(tuning=None, params={"n_estimators": 5, "num_leaves": 3, "learning_rate": 0.05})
    path = tmp_path / "next_day_up.yaml"
    path.write_text(yaml.safe_dump(spec))
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()

    def registry() -> list[tuple[str, list[str]]]:
        return sorted(
            (v.version, sorted(client.get_model_version("next_day_up", v.version).aliases))
            for v in client.search_model_versions("name = 'next_day_up'")
        )

    before = registry()
    train = [FEATURESTACK, "train", "--spec", str(path)]
    kill_at(train, env, "train.before_register", tmp_path / "f")
    assert registry() == before, "nothing registered by a training killed before its end"

    def running() -> list:  # type: ignore[type-arg]
        return mlflow.search_runs(
            search_all_experiments=True,
            filter_string="attributes.status = 'RUNNING'",
            output_format="list",
        )

    (orphan,) = running()

    run_ok(train, env)
    after = registry()
    assert len(after) == len(before) + 1
    _, aliases = after[-1]
    assert aliases in (["champion"], ["challenger"])
    killed = client.get_run(orphan.info.run_id)
    assert killed.info.status == "KILLED" and "died" in killed.data.tags[REASON_TAG]
    assert running() == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def predict(port: int, symbol: str) -> str:
    body = json.dumps({"entities": [{"symbol": symbol}]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict/next_day_up", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())["request_id"]


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [FEATURESTACK, "serve", "--port", str(port)], env=env, stdout=fh, stderr=fh, cwd=ROOT
        )
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)


def test_server_killed_while_flushing_its_log_loses_no_answered_prediction(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    from models_py.prediction_log import read_log

    data = tmp_path / "data"
    data.mkdir()
    for name in ("feast", "mlflow", "published"):
        (data / name).symlink_to(pipeline.settings.data_dir / name)
    settings = Settings(data, pipeline.settings.raw_dir, pipeline.settings.mlflow_tracking_uri)
    env = {**environ(settings), ENV: "prediction_log.flush", DIR_ENV: str(tmp_path / "f")}
    marker = tmp_path / "f" / "prediction_log.flush.reached"
    port = free_port()
    server = start_server(env, port, tmp_path / "server.txt")
    answered = []
    try:
        while not marker.exists():  # requests until a flush is under way
            answered.append(predict(port, "AAA"))
            assert len(answered) < 5000 and server.poll() is None
        answered.append(predict(port, "AAA"))  # answered during the flush: journaled too
        os.kill(int(marker.read_text()), signal.SIGKILL)
    finally:
        server.kill()
        server.wait(30)
    staged = list(settings.prediction_log_dir.glob("date=*/.part-*"))
    assert staged, "the kill landed between the staged file and its rename"

    env.pop(ENV)
    port = free_port()
    server = start_server(env, port, tmp_path / "server.txt")
    try:
        answered += [predict(port, "AAA") for _ in range(3)]
    finally:
        server.send_signal(signal.SIGINT)  # a clean stop flushes
        server.wait(60)
    log = read_log(settings.prediction_log_dir)
    assert sorted(log["request_id"]) == sorted(answered), "every answered request logged once"
    assert list(settings.prediction_log_dir.glob("date=*/.*")) == []
    assert list((settings.prediction_log_dir / "_journal").iterdir()) == []
