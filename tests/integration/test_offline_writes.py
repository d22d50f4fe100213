"""Writes into the offline store: pushed rows wait in a staging area for the gate (never
readable offline before it), and feature-service logs go to a Parquet log of their own,
one folder per day, read back through Feast's feature-service logging path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_source import PushMode
from feast.feature_logging import (
    LOG_DATE_FIELD,
    LOG_TIMESTAMP_FIELD,
    REQUEST_ID_FIELD,
    FeatureServiceLoggingSource,
    LoggingConfig,
)
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.types import Float64, Int64

from featurestack.stores.offline_writes import StagedPush, feature_log_destination, staged_pushes
from tests.store_repo import feature_store

NOW = datetime.now(UTC).replace(microsecond=0)
ITEM = Entity(name="item", join_keys=["id"], value_type=ValueType.INT64)


def items_repo(folder: Path, data_dir: Path):  # type: ignore[no-untyped-def]
    """A repo on our stores with ``items`` (id → x) over a published Parquet file and a push
    source into it; the offline store's data folder is ``data_dir``."""
    folder.mkdir(parents=True)
    source_path = folder / "items.parquet"
    pd.DataFrame(
        {"id": [1, 2], "x": [1.0, 2.0], "event_timestamp": [NOW - timedelta(hours=2)] * 2}
    ).to_parquet(source_path, index=False)
    batch = FileSource(name="items_src", path=str(source_path), timestamp_field="event_timestamp")
    push = PushSource(name="items_push", batch_source=batch)
    view = FeatureView(
        name="items",
        entities=[ITEM],
        ttl=timedelta(days=1),
        schema=[Field(name="id", dtype=Int64), Field(name="x", dtype=Float64)],
        source=push,
    )
    store = feature_store(
        folder,
        offline_store={
            "type": "featurestack.stores.offline.DuckDBAsofOfflineStore",
            "data_path": str(data_dir),
        },
    )
    store.apply([ITEM, push, view])
    return store, source_path


def offline_x(store, ids: list[int]) -> list:  # type: ignore[no-untyped-def]
    entity = pd.DataFrame({"id": ids, "event_timestamp": [NOW] * len(ids)})
    x = store.get_historical_features(entity_df=entity, features=["items:x"]).to_df()["x"]
    return [None if pd.isna(v) else v for v in x]


def test_pushed_rows_wait_in_staging_and_are_not_readable_offline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store, source_path = items_repo(tmp_path / "repo", data)
    published = source_path.read_bytes()
    assert offline_x(store, [1, 3]) == [1.0, None]

    rows = pd.DataFrame(
        {"id": [1, 3], "x": [10.0, 30.0], "event_timestamp": [NOW - timedelta(minutes=5)] * 2}
    )
    store.push("items_push", rows, to=PushMode.OFFLINE)
    store.write_to_offline_store(
        "items", rows.assign(x=[11.0, 31.0])[["x", "id", "event_timestamp"]]
    )

    # Not visible offline, the published file untouched: only a gate run publishes them.
    assert offline_x(store, [1, 3]) == [1.0, None]
    assert source_path.read_bytes() == published

    staged = staged_pushes(data, store.config.project)
    assert [s.view for s in staged] == ["items", "items"]
    assert all(isinstance(s, StagedPush) and s.path.suffix == ".parquet" for s in staged)
    folder = data / "staging" / "offline_push" / store.config.project / "items"
    assert {s.path.parent for s in staged} == {folder}
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temp file left over"
    first, second = (pq.read_table(s.path) for s in staged)  # in push order
    assert first.column_names == ["id", "x", "event_timestamp"]  # the source's order
    assert first.column("x").to_pylist() == [10.0, 30.0]
    assert second.column("x").to_pylist() == [11.0, 31.0]
    meta = first.schema.metadata
    assert meta[b"featurestack.feature_view"] == b"items"
    assert meta[b"featurestack.source_path"] == str(source_path).encode()


def test_a_push_whose_columns_do_not_match_the_source_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store, _ = items_repo(tmp_path / "repo", data)
    provider = store._get_provider()
    wrong = pa.table({"id": [1], "y": [1.0], "event_timestamp": [NOW]})
    with pytest.raises(ValueError, match="y"):
        provider.offline_store.offline_write_batch(
            store.config, store.get_feature_view("items"), wrong, None
        )
    assert staged_pushes(data, store.config.project) == []


def test_feature_service_logs_go_to_a_parquet_log_of_their_own_by_day(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store, _ = items_repo(tmp_path / "repo", data)
    destination = feature_log_destination(data, "items_v1")  # featurestack's place for it
    log_dir = data / "feature_logs" / "items_v1"
    assert isinstance(destination, FileLoggingDestination) and destination.path == str(log_dir)
    service = FeatureService(
        name="items_v1",
        features=[store.get_feature_view("items")],
        logging_config=LoggingConfig(destination=destination),
    )
    store.apply([service])
    schema = FeatureServiceLoggingSource(service, store.project).get_schema(store.registry)
    day1, day2 = NOW - timedelta(days=1), NOW

    def logs(ids: list[int], at: datetime) -> pa.Table:
        n = len(ids)
        columns = {
            "id": ids,
            "items__x": [float(i) for i in ids],
            "items__x__timestamp": [at] * n,
            "items__x__status": [1] * n,
            LOG_TIMESTAMP_FIELD: [at] * n,
            LOG_DATE_FIELD: [at.date()] * n,
            REQUEST_ID_FIELD: [f"r{i}-{at:%d}" for i in ids],
        }
        return pa.Table.from_pydict({f.name: columns[f.name] for f in schema}, schema=schema)

    store.write_logged_features(
        source=service, logs=pa.concat_tables([logs([1, 2], day1), logs([3], day2)])
    )
    store.write_logged_features(source=service, logs=logs([4], day2))

    days = sorted(p.name for p in log_dir.iterdir())
    assert days == [f"{day1:%Y-%m-%d}", f"{day2:%Y-%m-%d}"]
    assert len(list((log_dir / days[1]).glob("*.parquet"))) == 2  # one file per write
    assert not [p for p in log_dir.rglob(".*")], "temp file left over"

    job = store._get_provider().retrieve_feature_service_logs(
        feature_service=service,
        start_date=day1 - timedelta(hours=1),
        end_date=day2 + timedelta(hours=1),
        config=store.config,
        registry=store.registry,
    )
    back = job.to_df().sort_values(REQUEST_ID_FIELD)
    assert back["id"].tolist() == [1, 2, 3, 4]
    assert back["items__x"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert back[REQUEST_ID_FIELD].tolist()[0] == f"r1-{day1:%d}"
