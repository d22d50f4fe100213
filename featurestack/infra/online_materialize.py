"""Materialization from our offline store into our online store, Arrow batch by Arrow batch.

Feast's materialize turns every value of every row into a protobuf object before the online
store sees it (≈ 3,500 rows/s into SQLite on this machine, against ≈ 140,000 rows/s that SQLite
itself accepts). Here the newest row per entity is streamed from DuckDB as Arrow record batches
of bounded size, keys are encoded and values taken column by column straight from Arrow, and
each batch is written newest-event-wins by our store's ``write_rows`` (one SQLite transaction,
or atomic Lua calls on Redis).
The registry's watermark (``apply_materialization``) is advanced only after every batch of the
view is written, so a crash leaves the watermark where it was and a re-run converges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from featurestack.core.faults import fault_point
from featurestack.stores.online import NO_CREATED, NewestWinsOnlineStore, encode_key_part

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

BATCH_ROWS = 50_000


def _micros(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Timestamps (any unit or zone) as int64 microseconds since the epoch."""
    return pc.cast(pc.cast(column, pa.timestamp("us", "UTC")), pa.int64())


def _keys(columns: list[pa.Array]) -> list[bytes | None]:
    """Encoded entity keys (join keys in sorted name order); None where a key value is null."""
    lists = [c.to_pylist() for c in columns]
    if len(lists) == 1:
        return [encode_key_part(v) if v is not None else None for v in lists[0]]
    return [
        None if any(v is None for v in parts) else b"".join(encode_key_part(v) for v in parts)
        for parts in zip(*lists, strict=True)
    ]


def _values(column: pa.Array, dtype: Any) -> list[Any]:
    from feast.types import UnixTimestamp

    if dtype == UnixTimestamp:
        return pc.divide(_micros(column), 1_000_000).to_pylist()
    return column.to_pylist()


def arrow_rows(
    batch: pa.RecordBatch,
    key_columns: list[str],
    ts_column: str,
    created_column: str | None,
    features: list[tuple[str, Any]],
) -> Iterator[tuple[Any, ...]]:
    """``(key, event_us, created_us, *values)`` for each row of ``batch`` with a full key."""
    keys = _keys([batch.column(batch.schema.get_field_index(k)) for k in key_columns])
    events = _micros(batch.column(batch.schema.get_field_index(ts_column))).to_pylist()
    if created_column:
        created = pc.fill_null(
            _micros(batch.column(batch.schema.get_field_index(created_column))), NO_CREATED
        ).to_pylist()
    else:
        created = [NO_CREATED] * batch.num_rows
    values = [_values(batch.column(batch.schema.get_field_index(n)), t) for n, t in features]
    for row in zip(keys, events, created, *values, strict=True):
        if row[0] is not None:
            yield row


def materialize_view(
    store: FeatureStore,
    view: FeatureView,
    start: datetime,
    end: datetime,
    progress: Callable[[int], Any] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """The newest row per entity with ``start <= event time <= end`` into the online store.

    Returns the number of rows written; advances the view's watermark only at the end.
    """
    from feast.feature_view import DUMMY_ENTITY_ID
    from feast.utils import _get_column_names

    provider = store._get_provider()
    online = provider.online_store
    if not isinstance(online, NewestWinsOnlineStore):
        raise TypeError(f"{type(online).__name__} is not one of featurestack's online stores")
    source = view.batch_source
    if source is None:
        raise ValueError(f"feature view {view.name} has no batch source to materialize from")
    entities = [store.get_entity(name) for name in view.entities]
    join_keys, feature_cols, ts_col, created_col = _get_column_names(view, entities)
    job = provider.offline_store.pull_latest_from_table_or_query(
        config=store.config,
        data_source=source,
        join_key_columns=join_keys,
        feature_name_columns=feature_cols,
        timestamp_field=ts_col,
        created_timestamp_column=created_col,
        start_date=start,
        end_date=end,
    )
    mapping = source.field_mapping or {}
    source_name = {v: k for k, v in mapping.items()}
    # Keys in the order of their (mapped) join-key names: the order Feast's entity keys use.
    target_keys = sorted(mapping.get(k, k) for k in join_keys)
    # A view without entities is keyed by Feast's dummy entity, whose column the pull adds.
    key_columns = [source_name.get(k, k) for k in target_keys] or [DUMMY_ENTITY_ID]
    features = [(source_name.get(f.name, f.name), f.dtype) for f in view.features]
    names = [f.name for f in view.features]

    batches = job.iter_batches(batch_rows) if hasattr(job, "iter_batches") else None
    if batches is None:
        batches = iter(job.to_arrow().to_batches(batch_rows))
    written = 0
    for batch in batches:
        rows = list(arrow_rows(batch, key_columns, ts_col, created_col, features))
        online.write_rows(store.config, view, names, rows)
        written += len(rows)
        fault_point("materialize.batch_written")  # the fault tests stop here (N-th batch)
        if progress:
            progress(len(rows))
    store.registry.apply_materialization(view, store.project, start, end)
    return written
