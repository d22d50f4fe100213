"""Composite keys through the stages below the pipeline: a Feast view keyed by two entities
(one string, one integer key column) is materialized into each of our online stores (SQLite,
Redis), read back through Feast and through our OnlineReader in any key order, and agrees with
the offline store in the consistency check."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

from featurestack.infra.consistency import check_view
from featurestack.infra.feast_ops import (
    ONLINE_STORE,
    REDIS_ONLINE_STORE,
    materialize_store,
    scratch_repo_config,
)
from featurestack.infra.online_reader import OnlineReader

OFFLINE = "featurestack.stores.offline.DuckDBAsofOfflineStore"
NOW = datetime.now(UTC).replace(microsecond=0)
DAY1, DAY2 = NOW - timedelta(days=2), NOW - timedelta(days=1)


@pytest.fixture(params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest) -> Iterator[tuple[str | dict[str, Any], str]]:
    """One of our online stores and a project name of this test's own."""
    project = "ck" + uuid.uuid4().hex[:12]
    if request.param == "sqlite":
        yield ONLINE_STORE, project
        return
    import redis

    url = request.getfixturevalue("redis_url")
    yield {"type": REDIS_ONLINE_STORE, "url": url}, project
    client = redis.Redis.from_url(url)
    stale = list(client.scan_iter(match=f"fs:{project}*", count=1000))
    if stale:
        client.unlink(*stale)


def composite_store(tmp: Path, online: str | dict[str, Any], project: str) -> FeatureStore:
    """A view keyed by (store_id: string, product_id: int64). The pairs ("S1", 12) and
    ("S11", 2) would collide under a key encoding that only concatenated the values."""
    rows = pd.DataFrame(
        {
            "store_id": ["S1", "S1", "S1", "S11", "S2", "S2"],
            "product_id": [12, 12, 2, 2, 12, 2],
            "event_timestamp": [DAY1, DAY2, DAY1, DAY2, DAY2, DAY1],
            "units": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    tmp.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(tmp / "sales.parquet", index=False)
    store_entity = Entity(name="store", join_keys=["store_id"], value_type=ValueType.STRING)
    product = Entity(name="product", join_keys=["product_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="store_product",
        entities=[store_entity, product],
        ttl=timedelta(days=7),
        schema=[Field(name="units", dtype=Float64)],
        source=FileSource(
            name="sales", path=str(tmp / "sales.parquet"), timestamp_field="event_timestamp"
        ),
    )
    store = FeatureStore(config=scratch_repo_config(tmp, project, OFFLINE, online))
    store.apply([store_entity, product, view])
    return store


# (store_id, product_id) → the newest units
EXPECTED = {("S1", 12): 2.0, ("S1", 2): 3.0, ("S11", 2): 4.0, ("S2", 12): 5.0, ("S2", 2): 6.0}


def test_composite_keys_materialize_read_and_agree_offline(
    online: tuple[str | dict[str, Any], str], tmp_path: Path
) -> None:
    store = composite_store(tmp_path, *online)
    done = materialize_store(store, NOW)
    assert done["store_product"].endswith(": 5 rows"), done  # one row per key pair

    # entity rows name the keys in either order; an unknown pair is not found, not an error
    pairs = [*EXPECTED, ("S1", 99)]
    rows = [
        {"product_id": p, "store_id": s} if i % 2 else {"store_id": s, "product_id": p}
        for i, (s, p) in enumerate(pairs)
    ]
    wanted = [*EXPECTED.values(), None]
    feast_read = store.get_online_features(features=["store_product:units"], entity_rows=rows)
    assert feast_read.to_dict()["units"] == wanted
    ours = OnlineReader(store, ["store_product:units"]).read(rows)
    assert ours["units"] == wanted
    assert ours["store_product__status"] == ["PRESENT"] * 5 + ["NOT_FOUND"]
    assert ours["store_id"] == [s for s, _ in pairs]

    # offline at now: the same newest values per pair; the consistency check agrees
    entity_df = pd.DataFrame(rows).assign(event_timestamp=NOW)
    offline = store.get_historical_features(entity_df=entity_df, features=["store_product:units"])
    frame = offline.to_df()
    by_pair = {(r.store_id, r.product_id): r.units for r in frame.itertuples()}
    assert {k: by_pair[k] for k in EXPECTED} == EXPECTED and pd.isna(by_pair[("S1", 99)])
    checked = check_view(store, store.get_feature_view("store_product"), 10, 0, NOW)
    assert (checked.sampled, checked.mismatch_count) == (5, 0), checked.mismatches
