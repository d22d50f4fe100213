"""No feature depends on data after its own event time: a build from raw data cut at T gives
exactly the rows of the full build for every timestamp ≤ T."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from featurestack.dbt_ops import run_dbt
from featurestack.settings import Settings
from tests.conftest import PipelineRun

TIME_COLUMNS = {
    "prices": "ts",
    "trades": "ts",
    "earnings": "announced_at",
    "accounts": "updated_at",
}


def cut_raw(raw: Path, out: Path, cutoff: pd.Timestamp) -> None:
    out.mkdir(parents=True)
    for name, col in TIME_COLUMNS.items():
        frame = pd.read_parquet(raw / f"{name}.parquet")
        frame[frame[col] <= cutoff].to_parquet(out / f"{name}.parquet", index=False)


def read(warehouse: Path, table: str) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        frame = con.sql(f"select * from {table}").df()
    return frame.sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)


@pytest.mark.parametrize("cutoff", ["2022-03-15 21:00", "2022-09-30 12:00"])
def test_features_at_or_before_a_cut_equal_the_full_build(
    pipeline: PipelineRun, tmp_path: Path, cutoff: str
) -> None:
    at = pd.Timestamp(cutoff, tz="UTC")
    data = tmp_path / "data"
    cut_raw(pipeline.settings.raw_dir, data / "raw", at)
    settings = Settings(data, data / "raw", f"sqlite:///{data / 'mlflow.db'}")
    outcome = run_dbt(settings)
    assert outcome.success, outcome.summary()

    full = read(pipeline.settings.warehouse, "feat_symbol__daily")
    cut = read(settings.warehouse, "feat_symbol__daily")
    expected = full[full["event_timestamp"] <= at].reset_index(drop=True)
    assert len(cut) == len(expected) > 0
    pd.testing.assert_frame_equal(cut, expected, check_exact=True)

    # A label is known once its next close is; those known by T must not change either.
    full_lbl = read(pipeline.settings.warehouse, "lbl_next_day_up")
    cut_lbl = read(settings.warehouse, "lbl_next_day_up")
    known = full_lbl[full_lbl["label_timestamp"] <= at].reset_index(drop=True)
    pd.testing.assert_frame_equal(cut_lbl, known, check_exact=True)
