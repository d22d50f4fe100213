"""Offline pushes through the gate: rows Feast writes to the offline store (``store.push(...,
to=PushMode.OFFLINE)``, ``offline_write_batch``) are validated with their table's suites at the
next gate run, published with its snapshot and removed from staging; rows that fail are
quarantined with the report; nothing a push wrote is readable offline before it passed."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from feast import FeatureView, PushSource
from feast.data_source import PushMode

from featurestack.core.settings import Settings
from featurestack.infra import feast_ops
from featurestack.stores.offline_writes import stage_push, staged_pushes
from tests.conftest import PipelineRun, copy_of_pipeline, published_state
from validation.gate import run_gate

TABLE = "feat_account__daily"


@pytest.fixture
def repo(pipeline: PipelineRun, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A copy of the pipeline's data, its Feast sources pointed at the copy's published
    tables, with a push source into ``account_daily``'s batch source."""
    settings = copy_of_pipeline(pipeline, tmp_path)
    settings.export()
    feast_ops.apply(settings)
    store = feast_ops.load_store(settings)
    view = store.get_feature_view("account_daily")
    push = PushSource(name="account_daily_push", batch_source=view.batch_source)
    pushed = FeatureView(
        name="account_daily_pushed",
        entities=[store.get_entity("account")],
        ttl=view.ttl,
        schema=[*view.entity_columns, *view.features],
        source=push,
    )
    store.apply([push, pushed])
    return settings, store


def new_rows(settings: Settings, **change: float) -> pd.DataFrame:
    """Each of two accounts' newest published row, one day later, with ``change`` applied."""
    table = pd.read_parquet(settings.published_table(TABLE))
    newest = table.sort_values("event_timestamp").groupby("account_id").tail(1)
    rows = newest.sort_values("account_id").head(2).copy()
    rows["event_timestamp"] = rows["event_timestamp"] + timedelta(days=1)
    rows["trade_count"] = 3
    for column, value in change.items():
        rows[column] = value
    return rows.reset_index(drop=True)


def offline(store, rows: pd.DataFrame) -> list[float | None]:  # type: ignore[no-untyped-def]
    entity = rows[["account_id", "event_timestamp"]]
    got = store.get_historical_features(entity_df=entity, features=["account_daily:fees"])
    frame = got.to_df().set_index("account_id").loc[rows["account_id"]]
    return [None if pd.isna(v) else float(v) for v in frame["fees"]]


def test_pushed_rows_are_validated_published_with_the_next_snapshot_and_kept(repo) -> None:  # type: ignore[no-untyped-def]
    settings, store = repo
    rows = new_rows(settings, fees=123.25)
    before = offline(store, rows)
    assert 123.25 not in before

    store.push("account_daily_push", rows, to=PushMode.OFFLINE)
    staged = staged_pushes(settings.data_dir)
    assert [s.view for s in staged] == ["account_daily_pushed"]
    foreign = pa.table({"id": [1], "x": [1.0]})  # for a file the gate does not publish
    stage_push(settings.data_dir, "other", "elsewhere", "/elsewhere/x", foreign, foreign.schema)
    assert offline(store, rows) == before, "a push is not readable before the gate passed it"

    result = run_gate(settings)
    assert result.success, result.summary()
    outcomes = sorted((p.status, p.rows, p.table) for p in result.pushes)
    assert outcomes == [("published", 2, TABLE), ("quarantined", 1, None)]
    assert "not a table the gate publishes" in str([p.reason for p in result.pushes])
    assert staged_pushes(settings.data_dir) == [], "published pushes leave staging"
    assert offline(store, rows) == [123.25, 123.25]
    published = pd.read_parquet(settings.published_table(TABLE))
    keys = published.set_index(["account_id", "event_timestamp"]).index
    assert keys.is_unique
    kept = list((settings.published_dir / "current" / "_pushed" / TABLE).glob("*.parquet"))
    assert [p.name for p in kept] == [staged[0].path.name]
    report = json.loads((settings.reports_dir / "gate" / "latest.json").read_text())
    assert {p["status"] for p in report["pushes"]} == {"published", "quarantined"}

    # The next publication (dbt never saw the pushed rows) keeps them, once.
    again = run_gate(settings)
    assert again.success, again.summary()
    republished = pd.read_parquet(settings.published_table(TABLE))
    assert len(republished) == len(published)
    assert offline(store, rows) == [123.25, 123.25]


def test_pushed_rows_that_fail_are_quarantined_and_never_readable(repo) -> None:  # type: ignore[no-untyped-def]
    settings, store = repo
    before = published_state(settings.published_dir)
    rows = new_rows(settings, fees=-7.5)  # fees: min 0 (gate.yml)
    old = offline(store, rows)
    offline_store = store._get_provider().offline_store
    view = store.get_feature_view("account_daily_pushed")
    source = pd.read_parquet(settings.published_table(TABLE)).columns
    offline_store.offline_write_batch(
        store.config, view, pa.Table.from_pandas(rows[list(source)], preserve_index=False), None
    )
    (staged,) = staged_pushes(settings.data_dir)

    result = run_gate(settings)
    assert not result.success
    failing = [t for t in result.tables if not t.success]
    assert [t.table for t in failing] == [TABLE]
    assert any(f.column == "fees" for f in failing[0].failures)
    assert published_state(settings.published_dir) == before, "nothing was published"
    assert offline(store, rows) == old
    assert staged_pushes(settings.data_dir) == [], "a failed push does not poison the next run"
    assert result.quarantine_dir is not None
    moved = result.quarantine_dir / "offline_push" / "featurestack" / view.name / staged.path.name
    assert moved.exists() and (result.quarantine_dir / "report.json").exists()
    assert [(p.status, p.file) for p in result.pushes] == [("quarantined", str(moved))]

    retry = run_gate(settings)  # the bad rows are gone from staging: the gate passes again
    assert retry.success, retry.summary()
    assert offline(store, rows) == old
