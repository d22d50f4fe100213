"""Jobs the fault tests run as processes of their own (``python -m tests.fault_jobs …``) and
kill at a fault point: materializing a small Feast repo on our SQLite or Redis store, written
in batches of ``BATCH`` rows."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

ROWS, BATCH = 60, 10
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def repo(folder: Path, online: dict):  # type: ignore[no-untyped-def]
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    from featurestack.infra.feast_ops import scratch_repo_config

    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "items.parquet"
    if not source.exists():  # two events per item: day 1 (old) and day 2 (new)
        ids = list(range(ROWS))
        pd.DataFrame(
            {
                "id": ids * 2,
                "x": [float(i) for i in ids] + [1000.0 + i for i in ids],
                "event_timestamp": [T0] * ROWS + [T0 + timedelta(days=1)] * ROWS,
            }
        ).to_parquet(source, index=False)
    entity = Entity(name="item", join_keys=["id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="items",
        entities=[entity],
        ttl=timedelta(days=3650),
        schema=[Field(name="id", dtype=Int64), Field(name="x", dtype=Float64)],
        source=FileSource(name="items_src", path=str(source), timestamp_field="event_timestamp"),
    )
    config = scratch_repo_config(
        folder, "faults", "featurestack.stores.offline.DuckDBAsofOfflineStore", online
    )
    store = FeatureStore(config=config)
    store.apply([entity, view])
    return store, store.get_feature_view("items")


def materialize(folder: Path, online: dict, end: datetime) -> None:
    from featurestack.infra.online_materialize import materialize_view

    store, view = repo(folder, online)
    materialize_view(store, view, T0 - timedelta(days=1), end, batch_rows=BATCH)


if __name__ == "__main__":
    _, job, folder, online, end = sys.argv
    assert job == "materialize"
    materialize(Path(folder), json.loads(online), datetime.fromisoformat(end))
