"""History first, daily runs after: data that ends months ago is built, gated, trained and
scored as of its end (`run --as-of`), the days after are replayed one gated build each
(`backfill`), and a data folder never moves backwards in time."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from typer.testing import CliRunner

from featurestack.cli import app
from featurestack.demo_data import DemoSpec, write_demo_data
from tests.conftest import copy_demo_project


def test_history_is_run_as_of_its_end_then_replayed_day_by_day(tmp_path: Path) -> None:
    end = date.today() - timedelta(days=120)
    while end.weekday() >= 5:
        end -= timedelta(days=1)
    raw = tmp_path / "data" / "raw"
    write_demo_data(raw, DemoSpec(symbols=6, accounts=15, days=260, seed=5, end=end))
    project = copy_demo_project(tmp_path / "project")
    env = {"FEATURESTACK_DATA_DIR": str(tmp_path / "data"), "MLFLOW_TRACKING_URI": None}
    runner = CliRunner()

    def invoke(*args: str) -> object:
        return runner.invoke(app, ["--project-dir", str(project), *args], env=env)

    days = sorted(pd.read_parquet(raw / "prices.parquet", columns=["ts"])["ts"].dt.date.unique())
    # Live, the newest data is four months old: the gate says what to do instead.
    live = invoke("run", "--model", "next_day_up")
    assert live.exit_code == 1, live.output[-3000:]
    assert "featurestack run --as-of" in live.output and "featurestack backfill" in live.output

    # Nothing was published: the same folder goes back to the data's own time (from scratch).
    as_of = days[-4]
    ran = invoke("run", "--model", "next_day_up", "--as-of", as_of.isoformat())
    assert ran.exit_code == 0, ran.output[-3000:]
    summary = json.loads((tmp_path / "data" / "reports" / "run_summary.json").read_text())
    assert summary["as_of"].startswith(as_of.isoformat())
    published = tmp_path / "data" / "published" / "current" / "feat_symbol__daily"
    newest = pq.read_table(published, columns=["event_timestamp"]).column(0).to_pandas().max()
    assert newest.date() == as_of  # nothing after the instant was built
    preds = pd.read_parquet(summary["batch_predictions"])
    assert preds["as_of"].iloc[0].date() == as_of and preds["score"].notna().all()
    # online reads at the run's instant: four-month-old values are inside the TTL then
    assert "NaN" not in ran.output.split("online predictions")[-1].split("featurestack run")[0]

    replay = invoke("backfill", "--from", days[-3].isoformat(), "--to", days[-1].isoformat())
    assert replay.exit_code == 0, replay.output[-3000:]
    report = json.loads(
        sorted((tmp_path / "data" / "reports" / "backfill").glob("*.json"))[-1].read_text()
    )
    assert report["days"][0]["day"] == days[-3].isoformat()
    assert all(d["gate"] == "passed" for d in report["days"])
    changed = [sum(d["changed_rows"].values()) for d in report["days"]]
    assert all(n > 0 for n in changed[:1]) and report["days"][-1]["trained"]
    newest = pq.read_table(published, columns=["event_timestamp"]).column(0).to_pandas().max()
    assert newest.date() == days[-1]

    back = invoke("run", "--model", "next_day_up", "--as-of", days[-10].isoformat())
    assert back.exit_code == 2 and "moves forward in time" in back.output
