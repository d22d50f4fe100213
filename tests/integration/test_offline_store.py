"""The DuckDB ASOF offline store against the brute-force reference, through a real Feast repo."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource
from feast.infra.offline_stores.file_source import SavedDatasetFileStorage
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from featurestack.infra.feast_ops import scratch_repo_config
from featurestack.stores.offline import EntityDataFrameError
from tests.pit_reference import RefView, assert_matches, reference_join

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
STORE = "featurestack.stores.offline.DuckDBAsofOfflineStore"


@dataclass
class ViewDef:
    name: str
    rows: pd.DataFrame
    # Most cases need one Int64 key and one Float64 feature; those are the defaults.
    keys: list[tuple[str, Any]] = field(default_factory=lambda: [("id", Int64)])
    features: list[tuple[str, Any]] = field(default_factory=lambda: [("x", Float64)])
    ttl: timedelta | None = None
    created: str | None = None
    #: Extra FileSource arguments (field_mapping, timestamp_field, …).
    extra: dict = field(default_factory=dict)

    def ref(self) -> RefView:
        return RefView(
            rows=self.rows,
            keys=[(k, k) for k, _ in self.keys],
            features=[(f, f) for f, _ in self.features],
            ttl=self.ttl,
            created=self.created,
        )


def make_store(
    tmp: Path, views: list[ViewDef], offline: str = STORE, odfv: bool = False
) -> FeatureStore:
    """A real Feast repo in ``tmp``: Parquet sources, entities, views, applied to a registry."""
    config = scratch_repo_config(tmp, "pit", offline)
    objects: list[Any] = []
    entities: dict[str, Entity] = {}
    for v in views:
        path = tmp / f"{v.name}.parquet"
        v.rows.to_parquet(path, index=False)
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
        source = FileSource(name=f"{v.name}_source", path=str(path), **source_args)
        schema = [Field(name=k, dtype=t) for k, t in v.keys] + [
            Field(name=f, dtype=t) for f, t in v.features
        ]
        objects.append(
            FeatureView(
                name=v.name, entities=ents, ttl=v.ttl or timedelta(0), schema=schema, source=source
            )
        )
    objects += list(entities.values())
    if odfv:
        first = objects[0]

        @on_demand_feature_view(sources=[first], schema=[Field(name="x_doubled", dtype=Float64)])
        def doubled(inputs: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame({"x_doubled": inputs["x"] * 2})

        objects.append(doubled)
    store = FeatureStore(config=config)
    store.apply(objects)
    return store


def refs(views: list[ViewDef]) -> list[str]:
    return [f"{v.name}:{f}" for v in views for f, _ in v.features]


def rows(**cols: list) -> pd.DataFrame:
    return pd.DataFrame(cols)


def check(
    store: FeatureStore, views: list[ViewDef], entity_df: pd.DataFrame, **kw: Any
) -> pd.DataFrame:
    result = store.get_historical_features(entity_df=entity_df, features=refs(views), **kw).to_df()
    expected = reference_join(
        entity_df,
        [v.ref() for v in views],
        filter_by_created=kw.get("filter_by_created_timestamp", False),
    )
    assert_matches(result, expected)
    return result


# ------------------------------------------------------------------ hand-written edge cases


def test_ttl_boundaries_future_rows_and_exact_timestamps(tmp_path: Path) -> None:
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
    store = make_store(tmp_path, [view])
    entity = rows(id=[1, 2, 3, 4], event_timestamp=[T0] * 4)
    out = check(store, [view], entity)
    # exactly at the TTL edge: in; 1 µs older: out; at the entity time: in; 1 µs later: out
    assert out["x"].tolist()[:1] == [1.0] and np.isnan(out["x"][1])
    assert out["x"].tolist()[2:] == [3.0, 4.0]


def test_ties_are_broken_by_created_timestamp_not_file_order(tmp_path: Path) -> None:
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
    store = make_store(tmp_path, [view])
    out = check(store, [view], rows(id=[1, 2], event_timestamp=[T0, T0]))
    assert out["x"].tolist() == [10.0, 21.0]


def test_filter_by_created_timestamp_excludes_rows_written_later(tmp_path: Path) -> None:
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
    store = make_store(tmp_path, [view])
    entity = rows(id=[1, 2], event_timestamp=[T0, T0])
    out = check(store, [view], entity, filter_by_created_timestamp=True)
    assert out["x"].iloc[0] == 1.0 and np.isnan(out["x"].iloc[1])
    plain = check(store, [view], entity)
    assert plain["x"].tolist() == [2.0, 3.0]


def test_null_in_the_winning_row_stays_null(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(
            id=[1, 1],
            event_timestamp=[T0 - timedelta(hours=2), T0 - timedelta(hours=1)],
            x=[1.0, None],
        ),
    )
    store = make_store(tmp_path, [view])
    out = check(store, [view], rows(id=[1], event_timestamp=[T0]))
    assert np.isnan(out["x"].iloc[0])


def test_every_entity_row_once_in_input_order_with_extra_columns(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(id=[1, 2], event_timestamp=[T0 - timedelta(hours=1)] * 2, x=[1.0, 2.0]),
    )
    store = make_store(tmp_path, [view])
    entity = rows(
        id=[2, 1, 2, 9, 1],
        event_timestamp=[T0, T0, T0, T0, T0 - timedelta(days=1)],
        label=["a", "b", "c", "d", "e"],
    )
    out = check(store, [view], entity)
    assert out["label"].tolist() == ["a", "b", "c", "d", "e"]
    assert out["id"].tolist() == [2, 1, 2, 9, 1]
    assert out["x"].tolist()[:3] == [2.0, 1.0, 2.0] and out["x"].iloc[3:].isna().all()


def test_composite_and_mixed_type_keys_match_exactly(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(
            a=[1, 12, 1],
            b=["23", "3", None],
            event_timestamp=[T0 - timedelta(hours=1)] * 3,
            x=[123.0, 1203.0, 999.0],
        ),
        keys=[("a", Int64), ("b", String)],
    )
    store = make_store(tmp_path, [view])
    entity = rows(a=[1, 12, 12, 1, None], b=["23", "3", "23", None, "23"], event_timestamp=[T0] * 5)
    entity["a"] = entity["a"].astype("Int64")
    out = check(store, [view], entity)
    assert out["x"].iloc[:2].tolist() == [123.0, 1203.0]
    assert out["x"].iloc[2:].isna().all()  # (12, "23") does not exist; null keys match nothing


def test_key_of_another_kind_is_rejected(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(id=[1], event_timestamp=[T0], x=[1.0]),
    )
    store = make_store(tmp_path, [view])
    with pytest.raises(EntityDataFrameError, match="join key 'id' is VARCHAR"):
        store.get_historical_features(
            entity_df=rows(id=["1"], event_timestamp=[T0]), features=refs([view])
        ).to_df()


def test_time_zones_same_instants_same_results_and_mixed_rejected(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(id=[1, 1], event_timestamp=[T0 - timedelta(hours=3), T0], x=[1.0, 2.0]),
    )
    store = make_store(tmp_path, [view])
    instants = [T0 - US, T0]
    utc_naive = rows(id=[1, 1], event_timestamp=[t.replace(tzinfo=None) for t in instants])
    tokyo = rows(id=[1, 1], event_timestamp=pd.DatetimeIndex(instants).tz_convert("Asia/Tokyo"))
    ny = rows(
        id=[1, 1],
        event_timestamp=[pd.Timestamp(t).tz_convert("America/New_York") for t in instants],
    )
    ny["event_timestamp"] = ny["event_timestamp"].astype(object)
    results = [check(store, [view], e)["x"].tolist() for e in (utc_naive, tokyo, ny)]
    assert results == [[1.0, 2.0]] * 3
    mixed = rows(id=[1, 1], event_timestamp=pd.Series([T0.replace(tzinfo=None), T0], dtype=object))
    with pytest.raises(EntityDataFrameError, match="mixes naive and timezone-aware"):
        store.get_historical_features(entity_df=mixed, features=refs([view]))


def test_several_views_with_different_ttls_and_an_empty_source(tmp_path: Path) -> None:
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
    empty = ViewDef(
        "empty",
        pd.DataFrame(
            {
                "id": pd.Series([], dtype="int64"),
                "event_timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
                "e": pd.Series([], dtype="float64"),
            }
        ),
        features=[("e", Float64)],
    )
    views = [short, long, empty]
    store = make_store(tmp_path, views)
    out = check(store, views, rows(id=[1, 2], event_timestamp=[T0, T0]))
    assert np.isnan(out["s"][0]) and out["s"][1] == 2.0
    assert out["l"][0] == 10.0 and np.isnan(out["l"][1])
    assert out["e"].isna().all()


def test_duplicate_rows_without_created_timestamp(tmp_path: Path) -> None:
    """Rows equal in keys and time are duplicates: whichever is returned, it is one of them."""
    view = ViewDef(
        "v",
        rows(id=[1, 1, 2, 2], event_timestamp=[T0] * 4, x=[5.0, 5.0, 6.0, 7.0]),
    )
    store = make_store(tmp_path, [view])
    check(store, [view], rows(id=[1, 2, 2], event_timestamp=[T0, T0, T0 + US]))


def test_all_null_key_column_returns_nulls(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(id=[1], event_timestamp=[T0], x=[1.0]),
    )
    store = make_store(tmp_path, [view])
    out = check(store, [view], rows(id=[None, None], event_timestamp=[T0, T0]))
    assert out["x"].isna().all() and len(out) == 2


def test_integer_keys_never_match_float_keys_through_a_lossy_cast(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(id=[float(2**53)], event_timestamp=[T0], x=[1.0]),
        keys=[("id", Float64)],
    )
    store = make_store(tmp_path, [view])
    with pytest.raises(EntityDataFrameError, match="join key 'id' is BIGINT"):
        store.get_historical_features(
            entity_df=rows(id=[2**53, 2**53 + 1], event_timestamp=[T0, T0]), features=refs([view])
        )


def test_numpy_datetimes_are_naive_utc(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(id=[1, 1], event_timestamp=[T0 - timedelta(hours=3), T0], x=[1.0, 2.0]),
    )
    store = make_store(tmp_path, [view])
    naive = pd.Series(
        [np.datetime64("2024-03-01T10:30"), np.datetime64("2024-03-01T12:00")], dtype=object
    )
    out = store.get_historical_features(
        entity_df=pd.DataFrame({"id": [1, 1], "event_timestamp": naive}), features=refs([view])
    ).to_df()
    assert out["x"].tolist() == [1.0, 2.0]
    mixed = pd.Series([np.datetime64("2024-03-01T10:30"), T0], dtype=object)
    with pytest.raises(EntityDataFrameError, match="mixes naive and timezone-aware"):
        store.get_historical_features(
            entity_df=pd.DataFrame({"id": [1, 1], "event_timestamp": mixed}), features=refs([view])
        )


def test_nanoseconds_are_floored_alike_on_both_sides(tmp_path: Path) -> None:
    """A feature 50 ns after the entity time is in the future, not 'the same microsecond'."""
    t = pd.Timestamp(T0)
    view = ViewDef(
        "v",
        pd.DataFrame(
            {
                "id": [1, 2],
                "event_timestamp": pd.DatetimeIndex(
                    [t + pd.Timedelta(1450, "ns"), t + pd.Timedelta(600, "ns")]
                ),
                "x": [1.0, 2.0],
            }
        ),
    )
    store = make_store(tmp_path, [view])
    entity = pd.DataFrame(
        {
            "id": [1, 2],
            "event_timestamp": pd.DatetimeIndex(
                [t + pd.Timedelta(1400, "ns"), t + pd.Timedelta(900, "ns")]
            ),
        }
    )
    out = check(store, [view], entity)
    # At microsecond resolution, rounded down: 1.450 µs → 1 µs and 1.400 µs → 1 µs (same
    # microsecond: eligible); 0.600 µs → 0 and 0.900 µs → 0 (eligible).
    assert out["x"].tolist() == [1.0, 2.0]
    late = entity.assign(event_timestamp=pd.DatetimeIndex([t + pd.Timedelta(999, "ns"), t]))
    out = check(store, [view], late)
    assert np.isnan(out["x"][0]) and out["x"][1] == 2.0  # 1.450 µs is after 0.999 µs


def test_field_mapping_applies_to_keys_features_and_both_timestamps(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {
            "raw_id": [1, 1, 1],
            "ts_src": [T0 - timedelta(hours=2), T0 - timedelta(hours=1), T0 - timedelta(hours=1)],
            "c_src": [T0 - timedelta(hours=2), T0 - timedelta(hours=1), T0 - timedelta(minutes=1)],
            "raw_x": [1.0, 2.0, 3.0],
        }
    )
    view = ViewDef(
        "v",
        raw,
        extra={
            "field_mapping": {"raw_id": "id", "raw_x": "x", "ts_src": "ts", "c_src": "created"},
            "timestamp_field": "ts",
            "created_timestamp_column": "created",
        },
    )
    store = make_store(tmp_path, [view])
    out = store.get_historical_features(
        entity_df=rows(id=[1, 1], event_timestamp=[T0, T0 - timedelta(minutes=90)]),
        features=refs([view]),
    ).to_df()
    assert out["x"].tolist() == [3.0, 1.0]


def test_null_created_timestamp_loses_ties_and_is_always_known(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(
            id=[1, 1, 2],
            event_timestamp=[T0, T0, T0 - timedelta(hours=1)],
            created=[None, T0 - timedelta(hours=5), None],
            x=[1.0, 2.0, 3.0],
        ),
        created="created",
    )
    store = make_store(tmp_path, [view])
    entity = rows(id=[1, 2], event_timestamp=[T0, T0])
    assert check(store, [view], entity)["x"].tolist() == [2.0, 3.0]
    assert check(store, [view], entity, filter_by_created_timestamp=True)["x"].tolist() == [
        2.0,
        3.0,
    ]


def test_created_exactly_at_the_entity_time_is_known(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(
            id=[1, 1],
            event_timestamp=[T0 - timedelta(hours=2), T0 - timedelta(hours=1)],
            created=[T0 - timedelta(hours=2), T0],
            x=[1.0, 2.0],
        ),
        created="created",
    )
    store = make_store(tmp_path, [view])
    out = check(store, [view], rows(id=[1], event_timestamp=[T0]), filter_by_created_timestamp=True)
    assert out["x"].tolist() == [2.0]


def test_extra_columns_of_any_type_are_kept_and_typed_features_survive(tmp_path: Path) -> None:
    view = ViewDef(
        "v",
        rows(
            id=[1, 2], event_timestamp=[T0, T0], n=pd.array([5, None], dtype="Int64"), s=["a", None]
        ),
        features=[("n", Int64), ("s", String)],
    )
    store = make_store(tmp_path, [view])
    extra = np.array([1.5, 2.5], dtype=np.float16)  # DuckDB cannot read float16
    entity = pd.DataFrame(
        {"id": [2, 1], "event_timestamp": [T0, T0], "half": extra, "tag": ["p", "q"]}
    )
    out = store.get_historical_features(entity_df=entity, features=refs([view])).to_arrow()
    assert out.column("half").type == pa.float16() and out.column("tag").to_pylist() == ["p", "q"]
    assert out.column("n").to_pylist() == [None, 5] and out.column("s").to_pylist() == [None, "a"]


def test_arrow_and_empty_entity_inputs(tmp_path: Path) -> None:
    view = _demo_view()
    store = make_store(tmp_path, [view])
    table = pa.table(
        {"id": [3, 1], "event_timestamp": pa.array([T0, T0], pa.timestamp("us", tz="UTC"))}
    )
    job = store._get_provider().offline_store.get_historical_features(
        store.config, [store.get_feature_view("v")], ["v:x"], table, store.registry, "pit"
    )
    assert job.to_df()["x"].tolist() == [4.0, 2.0]
    empty = rows(
        id=pd.Series([], dtype="int64"), event_timestamp=pd.Series([], dtype="datetime64[us, UTC]")
    )
    out = store.get_historical_features(entity_df=empty, features=refs([view])).to_df()
    assert list(out.columns) == ["id", "event_timestamp", "x"] and len(out) == 0


# ------------------------------------------------------------------ the rest of the API


def _demo_view() -> ViewDef:
    return ViewDef(
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


def test_entity_df_as_sql_over_published_tables(tmp_path: Path) -> None:
    view = _demo_view()
    store = make_store(tmp_path, [view])
    pd.DataFrame({"id": [3, 1], "event_timestamp": [T0, T0 - timedelta(days=1)]}).to_parquet(
        tmp_path / "labels.parquet"
    )
    sql = "SELECT id, event_timestamp FROM labels ORDER BY id"
    out = store.get_historical_features(entity_df=sql, features=refs([view])).to_df()
    assert out["id"].tolist() == [1, 3] and out["x"].tolist() == [2.0, 4.0]
    by_source = store.get_historical_features(
        entity_df="SELECT DISTINCT id, event_timestamp FROM v_source WHERE id = 2",
        features=refs([view]),
    ).to_df()
    assert by_source["x"].tolist() == [3.0]
    with pytest.raises(EntityDataFrameError, match="entity_df SQL failed"):
        store.get_historical_features(entity_df="SELECT * FROM nowhere", features=refs([view]))


def test_retrieval_by_time_range_without_entity_df(tmp_path: Path) -> None:
    view = _demo_view()
    store = make_store(tmp_path, [view])
    out = store.get_historical_features(
        features=refs([view]), start_date=T0 - timedelta(days=1), end_date=T0
    ).to_df()
    assert list(zip(out["id"], out["x"], strict=True)) == [(1, 2.0), (2, 3.0), (3, 4.0)]
    assert (out["event_timestamp"] >= T0 - timedelta(days=1)).all()


def test_to_arrow_and_persisting_a_saved_dataset(tmp_path: Path) -> None:
    view = _demo_view()
    store = make_store(tmp_path, [view])
    entity = rows(id=[1, 2], event_timestamp=[T0, T0])
    job = store.get_historical_features(entity_df=entity, features=refs([view]))
    table = job.to_arrow()
    assert table.column_names == ["id", "event_timestamp", "x"] and table.num_rows == 2
    dest = tmp_path / "saved" / "train.parquet"
    saved = store.create_saved_dataset(
        from_=job, name="train", storage=SavedDatasetFileStorage(str(dest))
    )
    assert saved.name == "train"
    assert pd.read_parquet(dest)["x"].tolist() == [2.0, 3.0]
    with pytest.raises(Exception, match="already exists"):
        job.persist(SavedDatasetFileStorage(str(dest)))


def test_pull_latest_and_all_for_materialization(tmp_path: Path) -> None:
    view = _demo_view()
    store = make_store(tmp_path, [view])
    store.materialize(start_date=T0 - timedelta(days=10), end_date=T0 + timedelta(seconds=1))
    online = store.get_online_features(
        features=refs([view]), entity_rows=[{"id": i} for i in (1, 2, 3, 4)]
    )
    assert online.to_dict()["x"] == [2.0, 3.0, 4.0, None]
    offline = store._get_provider().offline_store
    fv = store.get_feature_view("v")
    all_rows = offline.pull_all_from_table_or_query(
        store.config, fv.batch_source, ["id"], ["x"], "event_timestamp", None,
        T0 - timedelta(days=1), T0,
    ).to_df()  # fmt: skip
    assert sorted(all_rows["x"]) == [2.0, 3.0, 4.0]


def test_on_demand_feature_views_are_applied_after_the_join(tmp_path: Path) -> None:
    view = _demo_view()
    store = make_store(tmp_path, [view], odfv=True)
    out = store.get_historical_features(
        entity_df=rows(id=[1, 3], event_timestamp=[T0, T0]), features=["v:x", "doubled:x_doubled"]
    ).to_df()
    assert out["x_doubled"].tolist() == [4.0, 8.0]


def test_feature_service_and_full_feature_names(tmp_path: Path) -> None:
    view = _demo_view()
    store = make_store(tmp_path, [view])
    fv = store.get_feature_view("v")
    store.apply([FeatureService(name="svc", features=[fv])])
    out = store.get_historical_features(
        entity_df=rows(id=[1], event_timestamp=[T0]),
        features=store.get_feature_service("svc"),
        full_feature_names=True,
    ).to_df()
    assert out["v__x"].tolist() == [2.0]


# ------------------------------------------------------------------ randomized


def random_case(seed: int, with_created: bool) -> tuple[ViewDef, ViewDef, pd.DataFrame]:
    """Few keys and coarse times, so ties, duplicates and TTL edges are everywhere."""
    rng = np.random.default_rng(seed)
    n = 300
    hours = rng.integers(0, 48, n)
    a = ViewDef(
        "a",
        pd.DataFrame(
            {
                "id": rng.integers(0, 6, n),
                "event_timestamp": [T0 + timedelta(hours=int(h)) for h in hours],
                "created": [
                    T0 + timedelta(hours=int(h + c))
                    for h, c in zip(hours, rng.integers(0, 4, n), strict=True)
                ],
                "x": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 1000, n).astype(float)),
            }
        ),
        ttl=timedelta(hours=int(rng.integers(1, 12))),
        created="created" if with_created else None,
    )
    if not with_created:
        # Without a created time, rows tied on (key, time) must be true duplicates.
        a.rows = a.rows.drop(columns=["created"])
        a.rows["x"] = a.rows.groupby(["id", "event_timestamp"])["x"].transform("first")
    m = 120
    b = ViewDef(
        "b",
        pd.DataFrame(
            {
                "id": rng.integers(0, 6, m),
                "event_timestamp": [T0 + timedelta(hours=int(h)) for h in rng.integers(0, 48, m)],
                "y": rng.normal(size=m),
            }
        ).drop_duplicates(["id", "event_timestamp"]),
        features=[("y", Float64)],
    )
    e = 200
    entity = pd.DataFrame(
        {
            "id": rng.integers(0, 8, e),
            "event_timestamp": [
                T0 + timedelta(hours=int(h), microseconds=int(u))
                for h, u in zip(
                    rng.integers(-2, 52, e), rng.choice([0, 0, 0, 1, -1], e), strict=True
                )
            ],
            "row": np.arange(e),
        }
    )
    return a, b, pd.concat([entity, entity.sample(20, random_state=seed)], ignore_index=True)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_created", [True, False])
def test_randomized_against_the_reference(tmp_path: Path, seed: int, with_created: bool) -> None:
    a, b, entity = random_case(seed, with_created)
    store = make_store(tmp_path, [a, b])
    check(store, [a, b], entity)
    if with_created:
        check(store, [a, b], entity, filter_by_created_timestamp=True)


def test_agrees_with_feasts_stock_duckdb_store_where_it_is_correct(tmp_path: Path) -> None:
    """Unique (key, time) rows and entity rows that all have a feature: stock is correct there."""
    rng = np.random.default_rng(1)
    n = 2000
    frame = pd.DataFrame(
        {
            "id": rng.integers(0, 50, n),
            "event_timestamp": [T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 10_000, n)],
            "x": rng.normal(size=n),
        }
    ).drop_duplicates(["id", "event_timestamp"])
    view = ViewDef("v", frame, ttl=timedelta(days=30))
    entity = frame.sample(500, random_state=2)[["id", "event_timestamp"]].reset_index(drop=True)
    entity["event_timestamp"] += timedelta(seconds=30)
    (tmp_path / "ours").mkdir()
    (tmp_path / "stock").mkdir()
    ours = make_store(tmp_path / "ours", [view])
    stock = make_store(tmp_path / "stock", [view], offline="duckdb")
    a = ours.get_historical_features(entity_df=entity, features=refs([view])).to_df()
    b = stock.get_historical_features(entity_df=entity, features=refs([view])).to_df()
    key = ["id", "event_timestamp"]
    b = b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_series_equal(
        a.sort_values(key).reset_index(drop=True)["x"], b["x"], check_names=False
    )


@pytest.mark.parametrize("batch_rows", [100_000, 7, 1])
def test_streamed_pull_latest_gives_the_newest_row_of_each_key_once(
    tmp_path: Path, batch_rows: int
) -> None:
    """Materialization streams pull_latest as key-sorted batches, deduplicated across batch
    boundaries: each key once, with its newest (event, created) row; a null created time loses."""
    rng = np.random.default_rng(5)
    n = 600
    created = [T0 + timedelta(minutes=int(m)) for m in rng.permutation(n)]
    frame = pd.DataFrame(
        {
            "sym": rng.choice(["a", "b", "c", "d", "é"], n),
            "id": rng.integers(0, 40, n),
            "event_timestamp": [T0 + timedelta(hours=int(h)) for h in rng.integers(0, 30, n)],
            "created": [None if rng.random() < 0.2 else c for c in created],
            "x": rng.normal(size=n),
        }
    )
    # A null created time ties only with non-null ones (two nulls would be ambiguous).
    frame = frame[~(frame.created.isna() & frame.duplicated(["sym", "id", "event_timestamp"]))]
    view = ViewDef(
        "v", frame, keys=[("sym", String), ("id", Int64)], created="created", ttl=timedelta(0)
    )
    store = make_store(tmp_path, [view])
    start, end = T0 + timedelta(hours=3), T0 + timedelta(hours=25)
    job = store._get_provider().offline_store.pull_latest_from_table_or_query(
        store.config, store.get_feature_view("v").batch_source, ["sym", "id"], ["x"],
        "event_timestamp", "created", start, end,
    )  # fmt: skip
    batches = list(job.iter_batches(batch_rows))
    assert all(b.num_rows <= batch_rows for b in batches)
    got = pa.Table.from_batches(batches).to_pandas()
    window = frame[(frame.event_timestamp >= start) & (frame.event_timestamp <= end)]
    lowest = pd.Timestamp.min.tz_localize("UTC")
    expected = (
        window.assign(rank=window.created.fillna(lowest))
        .sort_values(["event_timestamp", "rank"], ascending=False)
        .drop_duplicates(["sym", "id"])
        .set_index(["sym", "id"])["x"]
        .sort_index()
    )
    assert not got.duplicated(["sym", "id"]).any()
    assert got.set_index(["sym", "id"])["x"].sort_index().equals(expected)
    # The same rows as the one-query path Feast's own materialize uses.
    whole = job.to_arrow().to_pandas().set_index(["sym", "id"])["x"].sort_index()
    assert whole.equals(expected)
