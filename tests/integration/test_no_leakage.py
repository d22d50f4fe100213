"""No feature depends on data after its own event time: a build from raw data cut at T gives
exactly the rows of the full build for every timestamp ≤ T, for every published model."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from featurestack.core.settings import Settings
from featurestack.demo_data import write_raw_as_of
from featurestack.infra.dbt_ops import run_dbt
from tests.conftest import PipelineRun

FEATURES = {
    "feat_symbol__daily": ["symbol", "event_timestamp"],
    "feat_market__daily": ["symbol", "event_timestamp"],
    "feat_account__daily": ["account_id", "event_timestamp"],
}
LABELS = {
    "lbl_next_day_up": ["symbol", "event_timestamp"],
    "lbl_account_next_day_profit": ["account_id", "event_timestamp"],
    "lbl_upper_circuit_on_earnings": ["symbol", "event_timestamp"],
}


def read(warehouse: Path, table: str, keys: list[str]) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        frame = con.sql(f"select * from {table}").df()
    return frame.sort_values(keys).reset_index(drop=True)


# (trading day index, UTC hour): at a close, at noon (before it), mid-afternoon of the next day.
CUTS = [(50, 21), (190, 12), (191, 14)]


def test_rows_at_or_before_a_cut_equal_the_full_build(small_raw: Path, tmp_path: Path) -> None:
    """`featurestack check-leakage` (featurestack/leakage.py, which works from any project's
    manifest) on the demo: every published table, rebuilt as of each cut, equals the full build
    at or before it (labels: those known by then). (Incremental = full: test_incremental.py,
    with a late correction; the generic check runs on the minimal example in
    test_time_model.py.)"""
    from featurestack.leakage import check_leakage

    closes = pd.read_parquet(small_raw / "prices.parquet", columns=["ts"])["ts"]
    days = sorted(closes.unique())
    cuts = [(days[d].normalize() + pd.Timedelta(hours=h)).to_pydatetime() for d, h in CUTS]
    settings = Settings(tmp_path / "data", small_raw, f"sqlite:///{tmp_path / 'mlflow.db'}")
    report = check_leakage(settings, cuts, incremental=False, work=tmp_path / "work")
    assert report.ok, "\n".join(report.lines())
    compared = {c.table for c in report.checks}
    assert set(FEATURES) | set(LABELS) <= compared
    assert all(c.rows > 0 for c in report.checks)
    assert len(report.checks) == len(cuts) * len(compared)


def test_a_build_as_of_an_instant_is_the_build_from_the_raw_files_known_then(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    """`featurestack run --as-of T` builds with dbt's var as_of over the whole raw folder; the
    staging models keep what was known at T, so every table equals the build of the raw files
    cut at T (the demo's rule, featurestack.demo_data.write_raw_as_of)."""
    import json

    closes = pd.read_parquet(pipeline.settings.raw_dir / "prices.parquet", columns=["ts"])["ts"]
    at = sorted(closes.unique())[150].normalize() + pd.Timedelta(hours=22)
    cut = tmp_path / "cut"
    write_raw_as_of(pipeline.settings.raw_dir, cut / "raw", at)
    by_files = Settings(cut, cut / "raw", f"sqlite:///{cut / 'mlflow.db'}")
    assert run_dbt(by_files).success
    whole = tmp_path / "whole"
    by_var = Settings(whole, pipeline.settings.raw_dir, f"sqlite:///{whole / 'mlflow.db'}")
    outcome = run_dbt(by_var, extra=["--vars", json.dumps({"as_of": at.isoformat()})])
    assert outcome.success, outcome.summary()
    for table, keys in {**FEATURES, **LABELS}.items():
        expected = read(by_files.warehouse, table, keys)
        got = read(by_var.warehouse, table, keys)
        assert len(got) == len(expected) > 0, table
        pd.testing.assert_frame_equal(got, expected, check_exact=True, obj=table)
