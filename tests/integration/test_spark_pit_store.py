"""Our Spark offline store (featurestack/stores/spark_offline.py) against the brute-force
reference: the very test functions the DuckDB store passes (test_offline_store.py), each run
with its Feast repo on the Spark store, plus what only Spark has (entity_df as a Spark
DataFrame or Spark SQL, a Spark key type of another kind).

The cases Feast's contrib Spark store fails (test_spark_offline_store.py: composite keys, ties)
are among them and pass here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

import tests.integration.test_offline_store as duck
from featurestack.stores.offline import EntityDataFrameError
from featurestack.stores.spark_offline import STORE_TYPE
from tests.pit_reference import assert_matches, reference_join

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.slow

#: The DuckDB store's cases that hold for any correct store (the others test DuckDB itself:
#: its type names in a message, Feast's stock DuckDB store, its key-sorted streaming).
SHARED_CASES: list[Callable[..., None]] = [
    duck.test_ttl_boundaries_future_rows_and_exact_timestamps,
    duck.test_ties_are_broken_by_created_timestamp_not_file_order,
    duck.test_filter_by_created_timestamp_excludes_rows_written_later,
    duck.test_null_in_the_winning_row_stays_null,
    duck.test_every_entity_row_once_in_input_order_with_extra_columns,
    duck.test_composite_and_mixed_type_keys_match_exactly,
    duck.test_time_zones_same_instants_same_results_and_mixed_rejected,
    duck.test_several_views_with_different_ttls_and_an_empty_source,
    duck.test_duplicate_rows_without_created_timestamp,
    duck.test_all_null_key_column_returns_nulls,
    duck.test_integer_keys_never_match_float_keys_through_a_lossy_cast,
    duck.test_numpy_datetimes_are_naive_utc,
    duck.test_nanoseconds_are_floored_alike_on_both_sides,
    duck.test_field_mapping_applies_to_keys_features_and_both_timestamps,
    duck.test_null_created_timestamp_loses_ties_and_is_always_known,
    duck.test_created_exactly_at_the_entity_time_is_known,
    duck.test_extra_columns_of_any_type_are_kept_and_typed_features_survive,
    duck.test_arrow_and_empty_entity_inputs,
    duck.test_entity_df_as_sql_over_published_tables,
    duck.test_retrieval_by_time_range_without_entity_df,
    duck.test_to_arrow_and_persisting_a_saved_dataset,
    duck.test_pull_latest_and_all_for_materialization,
    duck.test_on_demand_feature_views_are_applied_after_the_join,
    duck.test_feature_service_and_full_feature_names,
]


@pytest.fixture
def on_spark(spark: SparkSession, monkeypatch: pytest.MonkeyPatch) -> SparkSession:
    """The DuckDB test module's repos built on the Spark store instead."""
    original = duck.make_store

    def make_store(tmp: Path, views: list[duck.ViewDef], offline: str = STORE_TYPE, **kw: Any):
        return original(tmp, views, STORE_TYPE, **kw)

    monkeypatch.setattr(duck, "make_store", make_store)
    return spark


@pytest.mark.parametrize("case", SHARED_CASES, ids=lambda f: f.__name__.removeprefix("test_"))
def test_the_duckdb_stores_cases_pass_on_spark(
    on_spark: SparkSession, tmp_path: Path, case: Callable[[Path], None]
) -> None:
    case(tmp_path)


@pytest.mark.parametrize("seed", range(2))
def test_randomized_against_the_reference(
    on_spark: SparkSession, tmp_path: Path, seed: int
) -> None:
    """Ties on (event, created), TTL edges and duplicate entity rows everywhere: N rows in,
    N out, in order, each value one the reference allows (Feast's Spark store fails this).
    As a Spark DataFrame the entity rows keep their order too."""
    a, b, entity = duck.random_case(seed, with_created=seed == 0)
    store = duck.make_store(tmp_path, [a, b])
    duck.check(store, [a, b], entity)
    if seed == 0:
        duck.check(store, [a, b], entity, filter_by_created_timestamp=True)
        return
    frame = on_spark.createDataFrame(entity)
    job = store.get_historical_features(entity_df=frame, features=duck.refs([a, b]))
    out = job.to_df()
    assert out["row"].tolist() == entity["row"].tolist()
    assert_matches(out, reference_join(entity, [a.ref(), b.ref()]))


def test_entity_df_as_spark_sql_over_a_parquet_file(on_spark: SparkSession, tmp_path: Path) -> None:
    view = duck._demo_view()
    store = duck.make_store(tmp_path, [view])
    labels = tmp_path / "elsewhere.parquet"
    pd.DataFrame(
        {"id": [3, 1], "event_timestamp": [duck.T0, duck.T0 - timedelta(days=1)]}
    ).to_parquet(labels, coerce_timestamps="us")  # Spark reads nanoseconds only as int64
    sql = f"SELECT id, event_timestamp FROM parquet.`{labels}` ORDER BY id DESC"
    out = store.get_historical_features(entity_df=sql, features=duck.refs([view])).to_df()
    assert out["id"].tolist() == [3, 1] and out["x"].tolist() == [4.0, 2.0]


def test_a_key_of_another_kind_is_rejected_naming_both_types(
    on_spark: SparkSession, tmp_path: Path
) -> None:
    view = duck.ViewDef("v", duck.rows(id=[1], event_timestamp=[duck.T0], x=[1.0]))
    store = duck.make_store(tmp_path, [view])
    with pytest.raises(EntityDataFrameError, match=r"join key 'id' is STRING .* but BIGINT"):
        store.get_historical_features(
            entity_df=duck.rows(id=["1"], event_timestamp=[duck.T0]), features=duck.refs([view])
        ).to_df()


def test_materialization_from_spark_into_redis_keeps_the_newest_event(
    on_spark: SparkSession,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """featurestack's materialization through the Spark store's streamed pull into our Redis
    store: the newest row per key, the watermark set, and an older window written afterwards
    changes nothing (newest event wins)."""
    from featurestack.infra.feast_ops import materialize_store, scratch_repo_config
    from featurestack.infra.online_materialize import materialize_view
    from tests.store_repo import online_store

    view = duck._demo_view()
    view.ttl = None  # the online read applies a TTL from now: these rows are from 2024
    with online_store("redis", tmp_path, request) as online:
        monkeypatch.setattr(
            duck,
            "scratch_repo_config",
            lambda folder, project, offline: scratch_repo_config(
                folder, project, offline, online.config
            ),
        )
        store = duck.make_store(tmp_path, [view])
        materialize_store(store, duck.T0 + timedelta(seconds=1))
        features = duck.refs([view])
        keys = [{"id": i} for i in (1, 2, 3, 4)]
        assert store.get_online_features(features=features, entity_rows=keys).to_dict()["x"] == [
            2.0, 3.0, 4.0, None,
        ]  # fmt: skip
        assert store.get_feature_view("v").materialization_intervals
        fv = store.get_feature_view("v")
        older = materialize_view(
            store, fv, duck.T0 - timedelta(days=3), duck.T0 - timedelta(hours=36)
        )
        assert older == 1  # id 1's row of two days before, pulled and offered to Redis...
        again = store.get_online_features(features=features, entity_rows=keys).to_dict()["x"]
        assert again == [2.0, 3.0, 4.0, None]  # ...which kept the newer one
