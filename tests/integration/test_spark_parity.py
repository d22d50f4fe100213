"""The spark profile gives what the local profile gives, on the session's demo pipeline:

- the gate, reading the built tables as Spark lays them out (Parquet folders written by Spark,
  incremental ones in month partitions: validation/spark_tables.py), publishes the same month
  files as it does from the DuckDB warehouse (test_spark_dbt.py proves the Spark build's tables
  equal DuckDB's);
- the Spark offline store gives the same training set for ``next_day_up`` as the DuckDB store;
- materializing through the Spark store gives the same online values.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from featurestack.core.settings import Settings
from featurestack.infra import feast_ops
from featurestack.stores.spark_offline import STORE_TYPE
from tests.conftest import PipelineRun

if TYPE_CHECKING:
    from feast import FeatureStore
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.slow

RTOL = 1e-12


def _write_as_spark(spark: SparkSession, warehouse: Path, folder: Path) -> list[str]:
    """Every table of the DuckDB warehouse written by Spark in dbt-spark's layout: a folder of
    Parquet per table, tables with an event time partitioned by its month (``partition_date``)."""
    from pyspark.sql import functions as F

    names = []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        for name in tables:
            frame = spark.createDataFrame(con.sql(f'SELECT * FROM "{name}"').to_arrow_table())
            writer = frame.write.mode("overwrite")
            if "event_timestamp" in frame.columns:
                frame = frame.withColumn(
                    "partition_date", F.trunc(F.to_date("event_timestamp"), "month")
                )
                writer = frame.write.mode("overwrite").partitionBy("partition_date")
            writer.parquet(str(folder / name))
            names.append(name)
    return names


def _published(settings: Settings) -> dict[str, Path]:
    return {
        f"{p.parent.name}/{p.name}": p
        for p in sorted((settings.published_dir / "current").glob("*/*.parquet"))
    }


def _spark_store(local: FeatureStore, settings: Settings, folder: Path) -> FeatureStore:
    """The local store's definitions (a copy of its registry) on the Spark offline store, with
    an online store of its own."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    folder.mkdir(parents=True, exist_ok=True)
    raw = feast_ops.resolved_config(settings)
    shutil.copy(settings.feast_dir / "registry.db", folder / "registry.db")
    raw["registry"]["path"] = str(folder / "registry.db")
    raw["offline_store"] = {"type": STORE_TYPE}
    raw["online_store"]["path"] = str(folder / "online.db")
    config = RepoConfig(**raw)
    config.repo_path = settings.project.feature_repo_dir
    return FeatureStore(repo_path=str(config.repo_path), config=config)


def _assert_frames_close(ours: pd.DataFrame, theirs: pd.DataFrame, what: str) -> None:
    assert list(ours.columns) == list(theirs.columns), what
    assert len(ours) == len(theirs) > 0, what
    for column in ours.columns:
        a, b = ours[column], theirs[column]
        if pd.api.types.is_float_dtype(a) and pd.api.types.is_float_dtype(b):
            close = np.isclose(a.to_numpy(), b.to_numpy(), rtol=RTOL, atol=0.0, equal_nan=True)
            assert close.all(), f"{what}.{column}: {int((~close).sum())} values differ"
        else:
            left = a.astype(object).where(a.notna(), None).tolist()
            right = b.astype(object).where(b.notna(), None).tolist()
            assert left == right, f"{what}.{column} differs"


def test_spark_profile_publishes_trains_and_serves_what_local_does(
    spark: SparkSession, pipeline: PipelineRun, tmp_path: Path
) -> None:
    from models_py.dataset import read_labels, service_info, training_frame
    from models_py.spec import load_spec
    from validation.gate import run_gate
    from validation.spark_tables import schema_folder

    local = pipeline.settings
    # 1. The gate on Spark's output publishes the same month files.
    on_spark = Settings(tmp_path / "data", local.raw_dir, local.mlflow_tracking_uri, "spark")
    names = _write_as_spark(spark, local.warehouse, schema_folder(on_spark.spark_warehouse))
    assert "lbl_next_day_up" in names
    gate = run_gate(on_spark, warn_only=True)
    assert gate.success, gate.summary()
    ours, theirs = _published(on_spark), _published(local)
    tables = sorted(n for n in ours if not n.startswith("_"))  # month files, not the gate's books
    assert tables == sorted(n for n in theirs if not n.startswith("_")) and tables
    for name in tables:
        assert pq.read_table(ours[name]).equals(pq.read_table(theirs[name])), name
    for name in (n for n in ours if n.startswith("_fingerprints/")):
        # The gate's per-day fingerprints agree on every day both record.
        a, b = pq.read_table(ours[name]).to_pandas(), pq.read_table(theirs[name]).to_pandas()
        both = a.merge(b, on="d", suffixes=("", "_local"))
        assert len(both) > 0 and (both["h"] == both["h_local"]).all(), name

    # 2. The same training set for next_day_up from the Spark store.
    duck_store = feast_ops.load_store(local)
    spark_store = _spark_store(duck_store, local, tmp_path / "spark_repo")
    spec = load_spec("next_day_up", local.project.specs_dir)
    info = service_info(duck_store, spec.feature_service)
    labels = read_labels(local, spec)
    target = spec.label.target
    expected = training_frame(duck_store, info, labels, target)
    got = training_frame(spark_store, info, labels, target)
    _assert_frames_close(got, expected, "training set")
    assert got[info.feature_columns[0]].notna().any()

    # 3. The same online values after materializing through the Spark store.
    feast_ops.materialize_store(spark_store, datetime.now(UTC))
    keys = labels[info.join_keys].drop_duplicates().head(20).to_dict("records")
    service = duck_store.get_feature_service(spec.feature_service)
    a = duck_store.get_online_features(features=service, entity_rows=keys).to_df()
    b = spark_store.get_online_features(
        features=spark_store.get_feature_service(spec.feature_service), entity_rows=keys
    ).to_df()
    _assert_frames_close(b, a, "online values")
