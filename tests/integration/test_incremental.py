"""An incremental build after new raw data gives exactly the tables a full rebuild gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd

from featurestack.core.project import dbt_target_dir
from featurestack.core.settings import Settings
from featurestack.demo_data import append_price_correction, write_raw_as_of
from featurestack.infra.dbt_ops import run_dbt
from tests.conftest import DEMO

TABLES = {
    "int_prices_with_returns": ["symbol", "event_timestamp"],
    "int_market_returns_averaged": ["event_timestamp"],
    "int_trades_costed": ["trade_id"],
    "int_account_days_aggregated": ["account_id", "event_timestamp"],
    "feat_symbol__daily": ["symbol", "event_timestamp"],
    "feat_market__daily": ["symbol", "event_timestamp"],
    "feat_account__daily": ["account_id", "event_timestamp"],
    "lbl_next_day_up": ["symbol", "event_timestamp"],
    "lbl_account_next_day_profit": ["account_id", "event_timestamp"],
    "lbl_upper_circuit_on_earnings": ["symbol", "event_timestamp"],
}


def _settings(data: Path) -> Settings:
    return Settings(data, data / "raw", f"sqlite:///{data / 'mlflow.db'}")


def _tables(warehouse: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            t: con.sql(f"select * from {t}").df().sort_values(keys).reset_index(drop=True)
            for t, keys in TABLES.items()
        }


def _build(settings: Settings, *extra: str) -> None:
    outcome = run_dbt(settings, extra=list(extra))
    assert outcome.success, outcome.summary()


def test_incremental_builds_equal_a_full_rebuild(small_raw: Path, tmp_path: Path) -> None:
    days = sorted(pd.read_parquet(small_raw / "prices.parquet")["ts"].unique())
    inc = _settings(tmp_path / "inc")
    write_raw_as_of(small_raw, inc.raw_dir, days[-3])
    _build(inc)
    before = _tables(inc.warehouse)["feat_symbol__daily"]

    # One more day arrives, then a late correction of a close 10 trading days back.
    write_raw_as_of(small_raw, inc.raw_dir, days[-2])
    _build(inc)
    append_price_correction(inc.raw_dir, "AAA", days[-12], 1.03, days[-2] + pd.Timedelta("1h"))
    write_raw_as_of(inc.raw_dir, inc.raw_dir, days[-2] + pd.Timedelta("2h"))
    _build(inc)
    incremental = _tables(inc.warehouse)
    for model in ("feat_symbol__daily", "feat_market__daily", "feat_account__daily"):
        ran = (
            dbt_target_dir(DEMO / "dbt_project")
            / "run/featurestack/models/features"
            / f"{model}.sql"
        )
        assert "delete from" in ran.read_text(), f"{model} was not built incrementally"

    full = _settings(tmp_path / "full")
    shutil.copytree(inc.raw_dir, full.raw_dir)
    _build(full, "--full-refresh")
    rebuilt = _tables(full.warehouse)

    for table, frame in rebuilt.items():
        pd.testing.assert_frame_equal(incremental[table], frame, check_exact=True, obj=table)
    # The correction changed the corrected day and the windows after it, not what came before.
    after = incremental["feat_symbol__daily"]
    key = ["symbol", "event_timestamp"]
    merged = before.merge(after, on=key, suffixes=("_old", "_new"))
    changed = merged[merged["close_old"] != merged["close_new"]]
    assert list(changed["symbol"]) == ["AAA"]
    assert list(changed["event_timestamp"]) == [pd.Timestamp(days[-12])]
    vol = merged[(merged["symbol"] == "AAA") & (merged["event_timestamp"] > days[-12])]
    assert (vol["volatility_20d_old"] != vol["volatility_20d_new"]).all()
    assert len(after) == len(before) + after["symbol"].nunique()
