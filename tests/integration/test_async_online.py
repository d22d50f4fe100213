"""Async online reads on our online stores, through ``FeatureStore.get_online_features_async``:
the same values and statuses as the sync path, the event loop free while a store reads, and
Redis being down a typed StoreUnavailable, as on the sync path."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.types import Float64, Int64, String

from featurestack.core.errors import StoreUnavailable
from tests.proxy import Proxy
from tests.store_repo import Online, feature_store, online_store

NOW = datetime.now(UTC).replace(microsecond=0)
ITEM = Entity(name="item", join_keys=["id"], value_type=ValueType.INT64)
REFS = ["items:x", "items:label", "fresh:y"]


@pytest.fixture(params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Online]:
    with online_store(request.param, tmp_path, request) as store:
        yield store


def two_views(folder: Path, online: Online) -> FeatureStore:
    """``items`` (1-day TTL; id 3 expired, id 2 with null values) and ``fresh`` (no TTL),
    materialized: two views, so the async path reads them concurrently."""
    items = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "x": [1.5, None, 3.5],
            "label": ["a", None, "c"],
            "event_timestamp": [NOW - timedelta(hours=1)] * 2 + [NOW - timedelta(days=3)],
        }
    )
    fresh = pd.DataFrame({"id": [1, 3], "y": [10, 30], "event_timestamp": [NOW] * 2})
    items.to_parquet(folder / "items.parquet", index=False)
    fresh.to_parquet(folder / "fresh.parquet", index=False)

    def view(name: str, ttl: timedelta, fields: list[Field]) -> FeatureView:
        source = FileSource(
            name=f"{name}_src",
            path=str(folder / f"{name}.parquet"),
            timestamp_field="event_timestamp",
        )
        return FeatureView(
            name=name,
            entities=[ITEM],
            ttl=ttl,
            schema=[Field(name="id", dtype=Int64), *fields],
            source=source,
        )

    store = feature_store(folder, online)
    store.apply(
        [
            ITEM,
            view(
                "items",
                timedelta(days=1),
                [Field(name="x", dtype=Float64), Field(name="label", dtype=String)],
            ),
            view("fresh", timedelta(0), [Field(name="y", dtype=Int64)]),
        ]
    )
    store.materialize(NOW - timedelta(days=5), NOW)
    return store


def answer(response: Any) -> tuple[dict[str, list], list[list[str]]]:
    """Values with event timestamps, and every feature's statuses, of an OnlineResponse."""
    statuses = [[FieldStatus.Name(s) for s in r.statuses] for r in response.proto.results]
    return response.to_dict(include_event_timestamps=True), statuses


def test_async_reads_answer_what_sync_reads_answer(online: Online, tmp_path: Path) -> None:
    store = two_views(tmp_path, online)
    rows = [{"id": i} for i in (1, 2, 3, 4, 1)]
    sync = answer(store.get_online_features(features=REFS, entity_rows=rows))
    got = answer(asyncio.run(store.get_online_features_async(features=REFS, entity_rows=rows)))
    assert got == sync
    values, statuses = got
    assert values["x"] == [1.5, None, None, None, 1.5]
    assert values["y"] == [10, None, 30, None, 10]
    assert statuses[1] == ["PRESENT", "PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND", "PRESENT"]

    view = store.get_feature_view("items")
    provider = store._get_provider()
    keys = [entity_key(i) for i in (1, 3, 4)]
    sync_rows = provider.online_store.online_read(store.config, view, keys, ["x"])
    async_rows = asyncio.run(
        provider.online_store.online_read_async(store.config, view, keys, ["x"])
    )
    assert async_rows == sync_rows
    assert [r[1]["x"].double_val if r[1] else None for r in async_rows] == [1.5, None, None]


def entity_key(i: int) -> Any:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=["id"], entity_values=[Value(int64_val=i)])


def test_the_event_loop_runs_while_a_store_reads(online: Online, tmp_path: Path) -> None:
    """A read that blocked the loop would finish before any other task got a turn: another
    task must see the store's read still pending (no timing involved, only the order of turns).
    Asked of the store itself: Feast's get_online_features_async yields to the loop on its own
    (it gathers the views' reads as tasks), which would hide a blocking store."""
    store = two_views(tmp_path, online)
    online_store = store._get_provider().online_store
    view = store.get_feature_view("items")
    seen_pending: list[bool] = []

    async def main() -> None:
        read = asyncio.ensure_future(
            online_store.online_read_async(store.config, view, [entity_key(1)], ["x"])
        )
        await asyncio.sleep(0)  # the read has started and is waiting on its store
        seen_pending.append(not read.done())
        rows = await read
        assert rows[0][1] is not None and rows[0][1]["x"].double_val == 1.5

    asyncio.run(main())
    assert seen_pending == [True]


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
def test_async_reads_raise_store_unavailable_when_redis_is_down(
    outage: str, redis_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target = urlsplit(redis_url)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    try:
        with online_store("redis", tmp_path, request) as online:
            online.config |= {"url": proxy.url("redis", "/0"), "timeout_s": 1.0}
            store = two_views(tmp_path, online)

            async def read() -> dict[str, list]:
                response = await store.get_online_features_async(
                    features=REFS, entity_rows=[{"id": 1}]
                )
                return response.to_dict()

            assert asyncio.run(read())["x"] == [1.5]
            proxy.stop() if outage == "stopped" else proxy.freeze()
            with pytest.raises(StoreUnavailable) as caught:
                asyncio.run(read())
            assert "Redis (online store)" in str(caught.value)
            assert f"127.0.0.1:{proxy.port}" in str(caught.value)
            proxy.stop()
            proxy.start()  # back on the same address: the next read works again
            assert asyncio.run(read())["x"] == [1.5]
    finally:
        proxy.stop()


def test_the_online_readers_async_read_answers_what_its_read_answers(
    online: Online, tmp_path: Path
) -> None:
    """featurestack's own reader (the server's path): ``read_async`` gathers the views over the
    store's async client on Redis, reads inline on SQLite, and answers what ``read`` does; the
    store's async clients close when the caller's loop is done with them."""
    from featurestack.infra.online_reader import OnlineReader

    store = two_views(tmp_path, online)
    reader = OnlineReader(store, REFS)
    rows = [{"id": i} for i in (1, 2, 3, 4, 1)]
    sync = reader.read(rows, NOW)
    assert reader.native_async == (online.kind == "redis")

    async def read_then_close() -> dict[str, list[Any]]:
        got = await reader.read_async(rows, NOW)
        await store.close()
        return got

    got = asyncio.run(read_then_close())
    assert got == sync
    assert got["x"] == [1.5, None, None, None, 1.5] and got["y"] == [10, None, 30, None, 10]
    assert got["items__status"] == ["PRESENT", "PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND", "PRESENT"]
    online_store = store._get_provider().online_store
    assert not any(getattr(online_store, "_async_clients", {}).values()), "clients left open"
