"""Feast's own Spark offline store (contrib `spark`) against the point-in-time rules of
docs/offline_store.md, with the brute-force reference of tests/pit_reference.py and the cases
of test_offline_store.py, through a real Feast repo on a real local Spark.

Where Feast's store breaks a rule the test is an `xfail(strict=True)` naming the rule: it
documents the failing case (docs/spark.md) and fails the day Feast's store starts to pass,
so the record cannot go stale.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

from featurestack.infra.feast_ops import scratch_repo_config
from tests.integration.test_offline_store import T0, US, ViewDef, random_case, refs, rows
from tests.pit_reference import assert_matches, reference_join

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.slow


def make_spark_store(spark: SparkSession, tmp: Path, views: list[ViewDef]) -> FeatureStore:
    """A real Feast repo on Feast's Spark offline store: Parquet files read as SparkSources."""
    config = scratch_repo_config(tmp, "pit", "spark")
    objects: list[Any] = []
    entities: dict[str, Entity] = {}
    for v in views:
        path = tmp / f"{v.name}.parquet"
        # Spark reads Parquet timestamps in microseconds (pandas writes nanoseconds).
        v.rows.to_parquet(path, index=False, coerce_timestamps="us")
        ents = []
        for key, _ in v.keys:
            if key not in entities:
                entities[key] = Entity(name=key, join_keys=[key])
            ents.append(entities[key])
        source_args = {
            "timestamp_field": "event_timestamp",
            "created_timestamp_column": v.created or "",
            **v.extra,
        }
        source = SparkSource(
            name=f"{v.name}_source", path=str(path), file_format="parquet", **source_args
        )
        schema = [Field(name=k, dtype=t) for k, t in v.keys] + [
            Field(name=f, dtype=t) for f, t in v.features
        ]
        objects.append(
            FeatureView(
                name=v.name, entities=ents, ttl=v.ttl or timedelta(0), schema=schema, source=source
            )
        )
    objects += list(entities.values())
    store = FeatureStore(config=config)
    store.apply(objects)
    return store


def check(
    store: FeatureStore, views: list[ViewDef], entity_df: pd.DataFrame, **kw: Any
) -> pd.DataFrame:
    """The store's answer, row by row against the reference (N rows in, N out, in order)."""
    result = store.get_historical_features(entity_df=entity_df, features=refs(views), **kw).to_df()
    expected = reference_join(
        entity_df,
        [v.ref() for v in views],
        filter_by_created=kw.get("filter_by_created_timestamp", False),
    )
    assert_matches(result, expected)
    return result


def check_ignoring_order(
    store: FeatureStore, views: list[ViewDef], entity_df: pd.DataFrame, **kw: Any
) -> pd.DataFrame:
    """The same, with the output put back in input order by a row number carried along: the
    values are checked even where the store does not keep the order."""
    numbered = entity_df.assign(input_row=np.arange(len(entity_df)))
    result = store.get_historical_features(entity_df=numbered, features=refs(views), **kw).to_df()
    result = result.sort_values("input_row").reset_index(drop=True)
    expected = reference_join(
        numbered,
        [v.ref() for v in views],
        filter_by_created=kw.get("filter_by_created_timestamp", False),
    )
    assert_matches(result, expected)
    return result


# ------------------------------------------------------------------ rules Feast's store keeps


def test_ttl_boundaries_future_rows_and_exact_timestamps(
    spark: SparkSession, tmp_path: Path
) -> None:
    ttl = timedelta(days=1)
    view = ViewDef(
        "v",
        rows(
            id=[1, 2, 3, 4, 4],
            event_timestamp=[T0 - ttl, T0 - ttl - US, T0, T0 - timedelta(hours=1), T0 + US],
            x=[1.0, 2.0, 3.0, 4.0, 5.0],
        ),
        ttl=ttl,
    )
    store = make_spark_store(spark, tmp_path, [view])
    out = check_ignoring_order(store, [view], rows(id=[1, 2, 3, 4], event_timestamp=[T0] * 4))
    assert out["x"].tolist()[:1] == [1.0] and np.isnan(out["x"][1])
    assert out["x"].tolist()[2:] == [3.0, 4.0]


def test_ties_are_broken_by_created_timestamp(spark: SparkSession, tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(
            id=[1, 1, 1, 2, 2],
            event_timestamp=[T0, T0, T0 - timedelta(hours=1), T0, T0],
            created=[
                T0 + timedelta(hours=2),
                T0 + timedelta(hours=1),
                T0 + timedelta(hours=9),
                T0,
                T0 + US,
            ],
            x=[10.0, 11.0, 12.0, 20.0, 21.0],
        ),
        created="created",
    )
    store = make_spark_store(spark, tmp_path, [view])
    out = check_ignoring_order(store, [view], rows(id=[1, 2], event_timestamp=[T0, T0]))
    assert out["x"].tolist() == [10.0, 21.0]


def test_filter_by_created_timestamp_excludes_rows_written_later(
    spark: SparkSession, tmp_path: Path
) -> None:
    view = ViewDef(
        "v",
        rows(
            id=[1, 1, 2],
            event_timestamp=[
                T0 - timedelta(hours=2),
                T0 - timedelta(hours=1),
                T0 - timedelta(hours=1),
            ],
            created=[T0 - timedelta(hours=2), T0 + timedelta(hours=1), T0 + US],
            x=[1.0, 2.0, 3.0],
        ),
        created="created",
    )
    store = make_spark_store(spark, tmp_path, [view])
    entity = rows(id=[1, 2], event_timestamp=[T0, T0])
    out = check_ignoring_order(store, [view], entity, filter_by_created_timestamp=True)
    assert out["x"].iloc[0] == 1.0 and np.isnan(out["x"].iloc[1])


@pytest.mark.xfail(
    strict=True,
    reason="rule 6: Feast's Spark store identifies entity rows by their keys and time "
    "concatenated as text, so (1, '23') and (12, '3') are one row: wrong values, extra rows",
)
def test_composite_keys_match_exactly(spark: SparkSession, tmp_path: Path) -> None:
    from feast.types import Int64, String

    view = ViewDef(
        "v",
        rows(
            a=[1, 12, 1],
            b=["23", "3", "x"],
            event_timestamp=[T0 - timedelta(hours=1)] * 3,
            x=[123.0, 1203.0, 999.0],
        ),
        keys=[("a", Int64), ("b", String)],
    )
    store = make_spark_store(spark, tmp_path, [view])
    entity = rows(a=[1, 12, 12], b=["23", "3", "23"], event_timestamp=[T0] * 3)
    out = check_ignoring_order(store, [view], entity)
    assert out["x"].iloc[:2].tolist() == [123.0, 1203.0] and np.isnan(out["x"].iloc[2])


def test_time_zones_are_compared_as_instants(spark: SparkSession, tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(id=[1, 1], event_timestamp=[T0 - timedelta(hours=3), T0], x=[1.0, 2.0]),
    )
    store = make_spark_store(spark, tmp_path, [view])
    instants = [T0 - US, T0]
    utc = rows(id=[1, 1], event_timestamp=pd.DatetimeIndex(instants))
    tokyo = rows(id=[1, 1], event_timestamp=pd.DatetimeIndex(instants).tz_convert("Asia/Tokyo"))
    results = [check_ignoring_order(store, [view], e)["x"].tolist() for e in (utc, tokyo)]
    assert results == [[1.0, 2.0]] * 2


def test_several_views_with_different_ttls(spark: SparkSession, tmp_path: Path) -> None:
    from feast.types import Float64

    short = ViewDef(
        "short",
        rows(
            id=[1, 2],
            event_timestamp=[T0 - timedelta(hours=2), T0 - timedelta(minutes=30)],
            s=[1.0, 2.0],
        ),
        features=[("s", Float64)],
        ttl=timedelta(hours=1),
    )
    long = ViewDef(
        "long",
        rows(
            id=[1, 2],
            event_timestamp=[T0 - timedelta(days=20), T0 - timedelta(days=40)],
            l=[10.0, 20.0],
        ),
        features=[("l", Float64)],
        ttl=timedelta(days=30),
    )
    store = make_spark_store(spark, tmp_path, [short, long])
    out = check_ignoring_order(store, [short, long], rows(id=[1, 2], event_timestamp=[T0, T0]))
    assert np.isnan(out["s"][0]) and out["s"][1] == 2.0
    assert out["l"][0] == 10.0 and np.isnan(out["l"][1])


def test_entity_df_as_spark_sql(spark: SparkSession, tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(
            id=[1, 1, 2, 3],
            event_timestamp=[
                T0 - timedelta(days=2),
                T0 - timedelta(days=1),
                T0 - timedelta(days=1),
                T0,
            ],
            x=[1.0, 2.0, 3.0, 4.0],
        ),
        ttl=timedelta(days=7),
    )
    store = make_spark_store(spark, tmp_path, [view])
    labels = tmp_path / "labels.parquet"
    pd.DataFrame({"id": [3, 1], "event_timestamp": [T0, T0 - timedelta(days=1)]}).to_parquet(
        labels, coerce_timestamps="us"
    )
    sql = f"SELECT id, event_timestamp FROM parquet.`{labels}`"
    out = store.get_historical_features(entity_df=sql, features=refs([view])).to_df()
    got = dict(zip(out["id"], out["x"], strict=True))
    assert got == {1: 2.0, 3: 4.0}


# ------------------------------------------------------------------ rules it breaks


def test_every_entity_row_once_in_input_order(spark: SparkSession, tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(id=[1, 2], event_timestamp=[T0 - timedelta(hours=1)] * 2, x=[1.0, 2.0]),
    )
    store = make_spark_store(spark, tmp_path, [view])
    entity = rows(
        id=[2, 1, 2, 9, 1],
        event_timestamp=[T0, T0, T0, T0, T0 - timedelta(days=1)],
        label=["a", "b", "c", "d", "e"],
    )
    out = check(store, [view], entity)
    assert out["label"].tolist() == ["a", "b", "c", "d", "e"]


def test_duplicate_entity_rows_are_kept(spark: SparkSession, tmp_path: Path) -> None:
    view = ViewDef("v", rows(id=[1, 2], event_timestamp=[T0, T0], x=[5.0, 6.0]))
    store = make_spark_store(spark, tmp_path, [view])
    entity = rows(id=[1, 1, 2], event_timestamp=[T0, T0, T0])
    out = check_ignoring_order(store, [view], entity)
    assert len(out) == 3


@pytest.mark.xfail(
    strict=True,
    reason="rules 2 and 5: feature rows tied on event and created time each produce an "
    "output row, so an entity row comes out several times",
)
@pytest.mark.parametrize("seed", range(2))
def test_randomized_values_against_the_reference(
    spark: SparkSession, tmp_path: Path, seed: int
) -> None:
    """Ties, TTL edges and duplicates everywhere; the values are checked in input order."""
    a, b, entity = random_case(seed, with_created=True)
    store = make_spark_store(spark, tmp_path, [a, b])
    check_ignoring_order(store, [a, b], entity.drop(columns=["row"]))
    check_ignoring_order(
        store, [a, b], entity.drop(columns=["row"]), filter_by_created_timestamp=True
    )
