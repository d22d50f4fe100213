"""The dbt project on Spark (target `spark`, dbt-spark's session method, local[2]) gives the
tables DuckDB gives, and an incremental Spark build (+1 day) the tables a full one gives."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pytest

from featurestack.core.project import dbt_target_dir
from featurestack.core.settings import Settings
from featurestack.demo_data import DemoSpec, write_demo_data, write_raw_as_of
from featurestack.infra.dbt_ops import run_dbt
from tests.conftest import DEMO
from tests.integration.test_incremental import TABLES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.slow

SPEC = DemoSpec(symbols=5, accounts=20, days=120, seed=7)
# Every feature and label model, and the incremental intermediates under them.
MODELS = {**TABLES, "int_account_tiers_versioned": ["account_id", "valid_from"]}
RTOL = 1e-12
GENERIC_TESTS = ("unique_key", "unique", "not_null", "accepted_values")


@dataclass
class Built:
    settings: Settings
    schema: str


def _settings(data: Path, raw: Path) -> Settings:
    return Settings(data, raw, f"sqlite:///{data / 'mlflow.db'}")


def _build_on_spark(
    settings: Settings, schema: str, monkeypatch: pytest.MonkeyPatch, command: str = "build"
) -> Built:
    monkeypatch.setenv("FEATURESTACK_SPARK_SCHEMA", schema)
    # The generic key and null tests are plain SQL that the DuckDB build already runs on the
    # same rows (the parity test proves them equal); each costs a Spark job, so they are left
    # out here. Unit tests and the tests with Spark-specific SQL (raw_contract) run.
    exclude = ["--exclude", *(f"test_name:{name}" for name in GENERIC_TESTS)]
    outcome = run_dbt(settings, command, extra=["--target", "spark", *exclude])
    assert outcome.success, outcome.summary()
    return Built(settings, schema)


def _normalized(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sorted by key, instants as naive UTC (DuckDB gives them zoned, Spark naive in UTC)."""
    frame = frame.drop(columns=["partition_date"], errors="ignore").copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].astype("datetime64[us]")
    return frame.sort_values(keys).reset_index(drop=True)


def _duckdb_tables(warehouse: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {t: _normalized(con.sql(f"select * from {t}").df(), k) for t, k in MODELS.items()}


def _spark_tables(spark: SparkSession, schema: str) -> dict[str, pd.DataFrame]:
    return {t: _normalized(spark.table(f"{schema}.{t}").toPandas(), k) for t, k in MODELS.items()}


def _assert_same(table: str, keys: list[str], ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Same columns, keys exactly equal, numbers within RTOL relative, the rest exact."""
    assert list(ours.columns) == list(theirs.columns), table
    pd.testing.assert_frame_equal(ours[keys], theirs[keys], check_dtype=False, obj=table)
    for column in ours.columns.difference(keys):
        a, b = ours[column], theirs[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
            close = np.isclose(x, y, rtol=RTOL, atol=0.0, equal_nan=True)
            assert close.all(), (
                f"{table}.{column}: {int((~close).sum())} values differ beyond {RTOL} relative, "
                f"e.g. {x[~close][:3]} vs {y[~close][:3]}"
            )
        else:
            left = a.astype(object).where(a.notna(), None).tolist()
            right = b.astype(object).where(b.notna(), None).tolist()
            assert left == right, f"{table}.{column} differs"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo market as it stood an hour after its last close (nothing dated later)."""
    generated = tmp_path_factory.mktemp("spark_demo") / "raw"
    write_demo_data(generated, SPEC)
    last_close = pd.read_parquet(generated / "prices.parquet")["ts"].max()
    folder = tmp_path_factory.mktemp("spark_raw") / "raw"
    write_raw_as_of(generated, folder, last_close + pd.Timedelta("1h"))
    return folder


@pytest.fixture(scope="module")
def spark_full(spark: SparkSession, raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """`dbt build --target spark` (models, unit and data tests) on the whole demo market."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        data = tmp_path_factory.mktemp("spark_full") / "data"
        return _build_on_spark(_settings(data, raw), "spark_full", monkeypatch)


def test_spark_builds_the_tables_duckdb_builds(
    spark: SparkSession, spark_full: Built, raw: Path, tmp_path: Path
) -> None:
    local = _settings(tmp_path / "duckdb", raw)
    outcome = run_dbt(local)
    assert outcome.success, outcome.summary()
    on_duckdb = _duckdb_tables(local.warehouse)
    on_spark = _spark_tables(spark, spark_full.schema)
    for table, keys in MODELS.items():
        assert len(on_duckdb[table]) > 0, f"{table} is empty: the comparison would prove nothing"
        _assert_same(table, keys, on_spark[table], on_duckdb[table])
    # The windows are really filled: a 60-day correlation exists once 60 days have passed.
    assert on_spark["feat_market__daily"]["correlation_60d"].notna().sum() > 0
    assert on_spark["int_trades_costed"]["realized_profit"].abs().sum() > 0


def test_spark_incremental_build_equals_a_full_build(
    spark: SparkSession,
    spark_full: Built,
    raw: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All but the last trading day first, then the whole market incrementally: the tables
    equal those the full build made from the whole market, bit for bit."""
    days = sorted(pd.read_parquet(raw / "prices.parquet")["ts"].unique())
    inc = _settings(tmp_path / "data", tmp_path / "raw")
    write_raw_as_of(raw, inc.raw_dir, days[-2])
    _build_on_spark(inc, "spark_inc", monkeypatch, "run")
    before = spark.table("spark_inc.feat_symbol__daily").count()

    for path in raw.glob("*.parquet"):
        shutil.copy2(path, inc.raw_dir / path.name)
    _build_on_spark(inc, "spark_inc", monkeypatch, "run")
    ran = (
        dbt_target_dir(DEMO / "dbt_project")
        / "run/featurestack/models/features/feat_symbol__daily.sql"
    )
    assert "insert overwrite table" in ran.read_text(), "not built incrementally"

    incremental = _spark_tables(spark, "spark_inc")
    full = _spark_tables(spark, spark_full.schema)
    for table, frame in full.items():
        pd.testing.assert_frame_equal(incremental[table], frame, check_exact=True, obj=table)
    assert len(incremental["feat_symbol__daily"]) == before + SPEC.symbols
