"""The five defects Feast's own universal tests found in our stores (issue 19), each reproduced
here through a real Feast repo on our offline store and both online stores.

Feast's suite itself runs with ``python conformance/feast_universal.py <feast checkout>``
(docs/conformance.md); these tests keep the defects from coming back without that checkout.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, ValueType
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.infra.offline_stores.file_source import SavedDatasetFileStorage
from feast.on_demand_feature_view import on_demand_feature_view
from feast.stream_feature_view import StreamFeatureView
from feast.types import Float64, Int64

from featurestack.infra.online_materialize import materialize_view
from featurestack.stores.offline import EntityDataFrameError
from tests.store_repo import Online, feature_store, online_store

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(hours=6)
ITEM = Entity(name="item", join_keys=["id"], value_type=ValueType.INT64)


@pytest.fixture(params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Online]:
    with online_store(request.param, tmp_path, request) as store:
        yield store


def items_view(folder: Path, rows: pd.DataFrame, name: str = "items") -> FeatureView:
    """A view of ``id`` → ``x`` over a Parquet file of ``rows`` (id, x, event_timestamp)."""
    path = folder / f"{name}.parquet"
    rows.to_parquet(path, index=False)
    return FeatureView(
        name=name,
        entities=[ITEM],
        ttl=timedelta(days=1),
        schema=[Field(name="id", dtype=Int64), Field(name="x", dtype=Float64)],
        source=FileSource(name=f"{name}_source", path=str(path), timestamp_field="event_timestamp"),
    )


def item_rows(ids: list[int], xs: list[float], at: datetime) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "x": xs, "event_timestamp": [at] * len(ids)})


def read(store: FeatureStore, refs: list[str], ids: list[int]) -> dict[str, list]:
    return store.get_online_features(features=refs, entity_rows=[{"id": i} for i in ids]).to_dict()


# ------------------------------------------------------------------------- offline store


def test_an_entity_timestamp_column_of_another_name_is_inferred_as_feast_does(
    tmp_path: Path,
) -> None:
    """Feast takes the only datetime column as the entity timestamp whatever its name; an
    integer key column beside it used to crash the inference (numpy dtype has no ``.id``)."""
    store = feature_store(tmp_path)
    rows = pd.concat([item_rows([1, 2], [1.0, 2.0], T0), item_rows([1], [10.0], T0 + timedelta(2))])
    store.apply([ITEM, items_view(tmp_path, rows)])
    entity = pd.DataFrame(
        {"id": [1, 1, 2], "ts": [T0 + timedelta(hours=1), T0 + timedelta(hours=3), T0]}
    )
    assert entity["id"].dtype == "int64"
    got = store.get_historical_features(entity_df=entity, features=["items:x"]).to_df()
    assert list(got.columns) == ["id", "ts", "x"]
    assert got["x"].tolist() == [1.0, 1.0, 2.0]

    two = entity.assign(other=entity["ts"])
    with pytest.raises(EntityDataFrameError, match="event_timestamp"):
        store.get_historical_features(entity_df=two, features=["items:x"]).to_df()


def test_a_saved_dataset_is_written_into_a_folder_and_overwritten_whole(tmp_path: Path) -> None:
    """Feast's stores write a saved dataset whose path is not a ``.parquet`` file into that
    folder; ours raised IsADirectoryError. Overwriting replaces the folder's data (Feast's file
    store appends a part beside the old one, doubling the rows), and a relative path is taken
    from the repo folder, where reading the dataset back looks for it."""
    store = feature_store(tmp_path)
    store.apply([ITEM, items_view(tmp_path, item_rows([1, 2], [1.0, 2.0], T0))])
    entity = pd.DataFrame({"id": [1, 2, 3], "event_timestamp": [NOW] * 3})
    job = store.get_historical_features(entity_df=entity, features=["items:x"])

    folder = tmp_path / "saved"
    folder.mkdir()  # Feast's tests hand over an existing, empty folder
    storage = SavedDatasetFileStorage(path=str(folder))
    saved = store.create_saved_dataset(
        from_=job, name="train", storage=storage, allow_overwrite=True
    )
    assert saved.to_df().sort_values("id")["x"].tolist()[:2] == [1.0, 2.0]
    job.persist(storage, allow_overwrite=True)
    again = store.get_saved_dataset("train").to_df()
    assert len(again) == 3, "an overwrite must replace the rows, not add to them"
    assert [p.suffix for p in folder.iterdir()] == [".parquet"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".saved")], "temp left over"
    with pytest.raises(SavedDatasetLocationAlreadyExists):
        job.persist(storage)

    relative = SavedDatasetFileStorage(path="relative_saved")
    store.create_saved_dataset(from_=job, name="rel", storage=relative)
    assert len(list((tmp_path / "relative_saved").glob("*.parquet"))) == 1
    assert len(store.get_saved_dataset("rel").to_df()) == 3

    (folder / "notes.txt").write_text("not ours")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        job.persist(storage, allow_overwrite=True)
    assert (folder / "notes.txt").exists()


# ------------------------------------------------------------------------- online stores


def test_an_on_demand_view_written_online_is_materialized_and_read(
    online: Online, tmp_path: Path
) -> None:
    """An on-demand view with ``write_to_online_store=True`` is stored like a feature view but
    has no ``ttl``: reading it online raised AttributeError on both stores."""
    store = feature_store(tmp_path, online)
    items = items_view(tmp_path, item_rows([1, 2], [1.0, 2.0], T0))

    @on_demand_feature_view(
        entities=[ITEM],
        sources=[items],
        schema=[Field(name="x2", dtype=Float64)],
        write_to_online_store=True,
    )
    def doubled(inputs: pd.DataFrame) -> pd.DataFrame:
        inputs["x2"] = inputs["x"] * 2
        return inputs

    store.apply([ITEM, items, doubled])
    store.materialize(NOW - timedelta(days=1), NOW)
    got = read(store, ["doubled:x2", "items:x"], [1, 2, 9])
    assert got["x2"] == [2.0, 4.0, None]
    assert got["x"] == [1.0, 2.0, None]


def test_a_stream_view_takes_pushed_and_materialized_rows_after_a_registry_round_trip(
    online: Online, tmp_path: Path
) -> None:
    """After the registry round trip Feast lists a StreamFeatureView's join key among its
    features; the SQLite store refused the view's rows for a column it did not expect."""
    store = feature_store(tmp_path, online)
    batch = items_view(tmp_path, item_rows([1, 2], [1.0, 2.0], T0), name="stream_batch")
    push = PushSource(name="items_push", batch_source=batch.batch_source)
    stream = StreamFeatureView(
        name="stream_items",
        entities=[ITEM],
        ttl=timedelta(days=1),
        schema=[Field(name="id", dtype=Int64), Field(name="x", dtype=Float64)],
        source=push,
    )
    store.apply([ITEM, push, stream])
    assert "id" in [f.name for f in store.get_stream_feature_view("stream_items").features]

    registered = store.get_stream_feature_view("stream_items")
    assert materialize_view(store, registered, NOW - timedelta(days=1), NOW) == 2  # ours
    store.materialize(NOW - timedelta(days=1), NOW)  # and Feast's
    store.push("items_push", item_rows([2, 3], [20.0, 30.0], NOW - timedelta(minutes=5)))
    # A second process: the views come from the registry only.
    later = FeatureStore(config=store.config)
    later.push("items_push", item_rows([3], [31.0], NOW - timedelta(minutes=1)))
    later.push("items_push", item_rows([3], [0.0], NOW - timedelta(hours=1)))  # older: ignored

    got = read(later, ["stream_items:x", "stream_items:id"], [1, 2, 3, 4])
    assert got["x"] == [1.0, 20.0, 31.0, None]
    assert got["id"] == [1, 2, 3, None]  # the join key, read as a feature: as Feast stores it


def test_a_view_without_entities_materializes_under_feasts_dummy_key(
    online: Online, tmp_path: Path
) -> None:
    """Feast keys an entity-less view by ``__dummy_id`` = '' and expects the offline pull to
    supply that column, as its own stores do; ours did not (``Column __dummy_id not found``)."""
    store = feature_store(tmp_path, online)
    path = tmp_path / "global.parquet"
    pd.DataFrame(
        {"rides": [5, 7, 9], "event_timestamp": [T0, T0 + timedelta(hours=1), NOW + timedelta(1)]}
    ).to_parquet(path, index=False)
    overall = FeatureView(
        name="global_stats",
        entities=[],
        ttl=timedelta(days=1),
        schema=[Field(name="rides", dtype=Int64)],
        source=FileSource(name="global_source", path=str(path), timestamp_field="event_timestamp"),
    )
    items = items_view(tmp_path, item_rows([1, 2], [1.0, 2.0], T0))
    store.apply([ITEM, items, overall])

    pulled = (
        store._get_provider()
        .offline_store.pull_latest_from_table_or_query(
            config=store.config,
            data_source=overall.batch_source,
            join_key_columns=[],
            feature_name_columns=["rides"],
            timestamp_field="event_timestamp",
            created_timestamp_column=None,
            start_date=T0,
            end_date=NOW,
        )
        .to_df()
    )
    assert pulled["__dummy_id"].tolist() == [""] and pulled["rides"].tolist() == [7]

    # featurestack's own Arrow materialization, then Feast's over a later window.
    written = materialize_view(store, overall, T0 - timedelta(hours=1), T0 + timedelta(minutes=30))
    assert written == 1
    assert read(store, ["global_stats:rides"], [1])["rides"] == [5]
    store.materialize(NOW - timedelta(days=1), NOW)
    got = read(store, ["global_stats:rides", "items:x"], [1, 2])
    assert got["rides"] == [7, 7]
    assert got["x"] == [1.0, 2.0]
