"""Feast online store on SQLite: newest event wins, TTL honoured on read, one wide row per entity.

Feast's stock SQLite store keeps one row per (entity, feature) with the last write winning, so
materializing an older window after a newer one (a backfill) puts old values back, and it does
not apply a feature view's TTL on reads (a value years past its TTL comes back PRESENT,
feast-dev/feast #6821). This store, plugged in through Feast's extension point
(``online_store: type: featurestack.stores.online.SQLiteOnlineStore``):

* keeps **one row per entity key per feature view**, each feature in its own typed column
  (REAL, INTEGER, TEXT, BLOB), with the row's event and created timestamps;
* writes with one ``INSERT … ON CONFLICT DO UPDATE … WHERE`` per row, batched in one
  transaction: a row is replaced only by one with a greater event timestamp, or an equal one and
  a greater created timestamp (a missing created timestamp counts as -infinity, as in the
  offline store), so materializations in any order converge to the same state;
* reads with the view's TTL against the current time: an expired row comes back as null values
  with status OUTSIDE_MAX_AGE (and its event timestamp, so staleness stays visible); an unknown
  key as NOT_FOUND;
* runs SQLite in WAL mode, so readers in other processes keep reading while one process writes.

Entity keys are encoded by us (type-tagged, length-prefixed values in join-key order) instead of
Feast's protobuf serialization, so a batch can be keyed straight from Arrow columns.
NaN cannot be stored in SQLite (it becomes NULL); published features never hold NaN (the gate
rejects it).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from feast import Entity, FeatureView, RepoConfig
from feast.infra.infra_object import InfraObject
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus, GetOnlineFeaturesResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel
from feast.types import (
    Bool,
    Bytes,
    FeastType,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import StrictInt, StrictStr

NO_CREATED = -(2**63)  # a missing created timestamp: older than any real one
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_READ_CHUNK = 900  # keys per SELECT … IN (…), under SQLite's bound-parameter limit


class SQLiteOnlineStoreConfig(FeastConfigBaseModel):
    """``online_store:`` in feature_store.yaml."""

    type: Literal["featurestack.stores.online.SQLiteOnlineStore"] = (
        "featurestack.stores.online.SQLiteOnlineStore"
    )
    path: StrictStr = "data/online_store.db"
    #: rows per transaction when writing
    batch_size: StrictInt = 10_000


# Per Feast type: SQLite column type, ValueProto field, and conversions both ways.
_SQL_TYPE: dict[FeastType, str] = {
    Float64: "REAL",
    Float32: "REAL",
    Int64: "INTEGER",
    Int32: "INTEGER",
    Bool: "INTEGER",
    String: "TEXT",
    Bytes: "BLOB",
    UnixTimestamp: "INTEGER",
}
_PROTO_FIELD: dict[FeastType, str] = {
    Float64: "double_val",
    Float32: "float_val",
    Int64: "int64_val",
    Int32: "int32_val",
    Bool: "bool_val",
    String: "string_val",
    Bytes: "bytes_val",
    UnixTimestamp: "unix_timestamp_val",
}


def micros(ts: datetime) -> int:
    """A datetime as integer microseconds since the epoch (naive means UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def encode_key_part(value: Any) -> bytes:
    """One join-key value, type-tagged and length-prefixed so the concatenation is injective."""
    if isinstance(value, str):
        raw = value.encode()
        return b"s" + len(raw).to_bytes(4, "big") + raw
    if isinstance(value, bool):
        return b"b" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"i" + value.to_bytes(8, "big", signed=True)
    if isinstance(value, bytes):
        return b"y" + len(value).to_bytes(4, "big") + value
    raise TypeError(f"unsupported entity key value {value!r} ({type(value).__name__})")


def encode_proto_key(key: EntityKeyProto) -> bytes:
    """The same encoding for a Feast EntityKey (join keys in sorted order, as Feast sorts them)."""
    parts = sorted(zip(key.join_keys, key.entity_values, strict=True), key=lambda kv: kv[0])
    out = []
    for _, value in parts:
        kind = value.WhichOneof("val")
        if kind is None:
            raise ValueError("an entity key value is null")
        out.append(encode_key_part(getattr(value, kind)))
    return b"".join(out)


def decode_key(encoded: bytes) -> list[Any]:
    """The join-key values of an encoded key (the inverse of :func:`encode_key_part`, in
    join-key name order)."""
    values: list[Any] = []
    i = 0
    while i < len(encoded):
        tag = encoded[i : i + 1]
        if tag in (b"s", b"y"):
            size = int.from_bytes(encoded[i + 1 : i + 5], "big")
            raw = encoded[i + 5 : i + 5 + size]
            values.append(raw.decode() if tag == b"s" else raw)
            i += 5 + size
        elif tag == b"b":
            values.append(encoded[i + 1] == 1)
            i += 2
        elif tag == b"i":
            values.append(int.from_bytes(encoded[i + 1 : i + 9], "big", signed=True))
            i += 9
        else:
            raise ValueError(f"not an encoded entity key: {encoded!r}")
    return values


def join_key_names(view: Any) -> frozenset[str]:
    """The names of a view's join-key columns (none for a view without entities)."""
    return frozenset(c.name for c in (getattr(view, "entity_columns", None) or []))


def stored_features(view: Any) -> list[Any]:
    """The features a store keeps values of: the view's features but its join keys.

    After a registry round trip Feast lists a StreamFeatureView's join key among its features
    (and a push or materialization brings its value): the key is already the row's key, so it
    is not stored twice; a read of it as a feature is answered from the key.
    """
    keys = join_key_names(view)
    return [f for f in view.features if f.name not in keys]


def table_name(config: RepoConfig, view: FeatureView) -> str:
    """``fs_<project>_<view>``: prefixed so a file once used by Feast's stock store, whose
    ``<project>_<view>`` tables have another layout, is never misread."""
    return f"fs_{config.project}_{view.name}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_type(dtype: FeastType) -> str:
    return _SQL_TYPE.get(dtype, "BLOB")


def _to_sql(dtype: FeastType) -> Callable[[ValueProto], Any]:
    """ValueProto → the value stored in the column (None for an unset value)."""
    field = _PROTO_FIELD.get(dtype)
    if field is None:
        return lambda v: v.SerializeToString() if v.WhichOneof("val") else None
    if dtype == UnixTimestamp:
        return lambda v: v.unix_timestamp_val if v.WhichOneof("val") == field else None
    return lambda v: getattr(v, field) if v.WhichOneof("val") == field else None


def _to_proto(dtype: FeastType) -> Callable[[Any], ValueProto]:
    """The stored value → ValueProto (an empty one for NULL)."""
    field = _PROTO_FIELD.get(dtype)
    if field is None:
        return lambda x: ValueProto.FromString(x) if x is not None else ValueProto()
    if dtype == Bool:
        return lambda x: ValueProto(bool_val=bool(x)) if x is not None else ValueProto()
    return lambda x: ValueProto(**{field: x}) if x is not None else ValueProto()


class NewestWinsOnlineStore(OnlineStore):
    """What our online stores share: Feast's write and read entry points on top of the
    store's primitives (``write_stored_rows``, ``read_stored_rows``, ``row_count``), one key
    encoding, one TTL rule, one answer to Feast's join-key-as-feature (:func:`stored_features`).

    Rows are ``(encoded key, event µs, created µs, *values)`` with values as
    :func:`_to_sql` gives them (float, int, bool, str, bytes, None), so the Arrow path
    (online_materialize.py) and Feast's protobuf path write the same thing.
    """

    def write_rows(
        self,
        config: RepoConfig,
        view: FeatureView,
        features: list[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """Write ``(key, event_us, created_us, *values)`` rows, newest event winning.

        Values of the view's join keys among ``features`` are dropped (see
        :func:`stored_features`); the rest goes to :meth:`write_stored_rows`."""
        keys = join_key_names(view)
        if keys.intersection(features):
            keep = [i for i, name in enumerate(features) if name not in keys]
            features = [features[i] for i in keep]
            rows = ((*row[:3], *(row[3 + i] for i in keep)) for row in rows)
        self.write_stored_rows(config, view, features, rows)

    def write_stored_rows(
        self,
        config: RepoConfig,
        view: FeatureView,
        features: list[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """The store's write of rows of stored features only."""
        raise NotImplementedError

    def read_rows(
        self, config: RepoConfig, view: FeatureView, keys: list[bytes], features: list[str]
    ) -> dict[bytes, tuple[Any, ...]]:
        """``key → (event_us, *values)`` for the keys present (missing keys are absent).

        A join key asked for as a feature is answered from the row's key."""
        key_names = join_key_names(view)
        stored = [f for f in features if f not in key_names]
        found = self.read_stored_rows(config, view, keys, stored)
        return self._with_key_values(view, features, found)

    @staticmethod
    def _with_key_values(
        view: FeatureView, features: list[str], found: dict[bytes, tuple[Any, ...]]
    ) -> dict[bytes, tuple[Any, ...]]:
        """Rows of stored values completed with the join keys asked for as features."""
        key_names = join_key_names(view)
        if not key_names.intersection(features):
            return found
        order = sorted(key_names)  # encoded keys hold their parts in join-key name order
        out: dict[bytes, tuple[Any, ...]] = {}
        for key, row in found.items():
            decoded = decode_key(key)
            parts = dict(zip(order, decoded, strict=True)) if len(decoded) == len(order) else {}
            stored = iter(row[1:])
            out[key] = (
                row[0],
                *(parts.get(f) if f in key_names else next(stored) for f in features),
            )
        return out

    def read_stored_rows(
        self, config: RepoConfig, view: FeatureView, keys: list[bytes], features: list[str]
    ) -> dict[bytes, tuple[Any, ...]]:
        """The store's read of stored features only."""
        raise NotImplementedError

    def row_count(self, config: RepoConfig, view: FeatureView) -> int:
        """Rows stored for a view (0 when nothing was written yet)."""
        raise NotImplementedError

    def newest_event_micros(self, config: RepoConfig, view: FeatureView) -> int | None:
        """The greatest event time stored for a view (None when empty): its staleness."""
        raise NotImplementedError

    def plan(self, config: RepoConfig, desired_registry_proto: Any) -> list[InfraObject]:
        return []

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        fields = stored_features(table)
        features = [f.name for f in fields]
        convert = [_to_sql(f.dtype) for f in fields]
        empty = ValueProto()

        def rows() -> Iterable[tuple[Any, ...]]:
            for key, values, event_ts, created_ts in data:
                yield (
                    encode_proto_key(key),
                    micros(event_ts),
                    micros(created_ts) if created_ts is not None else NO_CREATED,
                    *(c(values.get(n, empty)) for n, c in zip(features, convert, strict=True)),
                )

        self.write_rows(config, table, features, rows())
        if progress:
            progress(len(data))

    # -- reads ---------------------------------------------------------------------------------

    @staticmethod
    def ttl_floor_micros(view: Any, now: datetime | None = None) -> int | None:
        """Rows with an event time below this are past the view's TTL (None: no TTL, as for
        an on-demand view written online, which has no ``ttl`` at all)."""
        ttl = getattr(view, "ttl", None)
        if not ttl or ttl.total_seconds() <= 0:
            return None
        return micros((now or datetime.now(UTC)) - ttl)

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        names = requested_features or [f.name for f in table.features]
        keys = [encode_proto_key(k) for k in entity_keys]
        return self._as_feast_rows(table, names, keys, self.read_rows(config, table, keys, names))

    async def online_read_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """:meth:`online_read` without blocking the event loop."""
        names = requested_features or [f.name for f in table.features]
        keys = [encode_proto_key(k) for k in entity_keys]
        found = await self.read_rows_async(config, table, keys, names)
        return self._as_feast_rows(table, names, keys, found)

    def _as_feast_rows(
        self,
        table: FeatureView,
        names: list[str],
        keys: list[bytes],
        found: dict[bytes, tuple[Any, ...]],
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """Rows read as Feast's online_read returns them; an expired row as a missing one."""
        by_name = {f.name: f for f in table.features}
        convert = [_to_proto(by_name[n].dtype) for n in names]
        floor = self.ttl_floor_micros(table)
        out: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for key in keys:
            row = found.get(key)
            if row is None or (floor is not None and row[0] < floor):
                out.append((None, None))
                continue
            values = {n: c(v) for n, c, v in zip(names, convert, row[1:], strict=True)}
            out.append((from_micros(row[0]), values))
        return out

    async def read_rows_async(
        self, config: RepoConfig, view: FeatureView, keys: list[bytes], features: list[str]
    ) -> dict[bytes, tuple[Any, ...]]:
        """:meth:`read_rows` for an event loop."""
        key_names = join_key_names(view)
        stored = [f for f in features if f not in key_names]
        found = await self.read_stored_rows_async(config, view, keys, stored)
        return self._with_key_values(view, features, found)

    async def read_stored_rows_async(
        self, config: RepoConfig, view: FeatureView, keys: list[bytes], features: list[str]
    ) -> dict[bytes, tuple[Any, ...]]:
        """The store's read, off the event loop: by default the blocking read in a worker
        thread (a store with an async client overrides this)."""
        return await asyncio.to_thread(self.read_stored_rows, config, view, keys, features)

    # -- Feast's per-view reads, with statuses -----------------------------------------------

    def _read_features_per_fv(
        self,
        config: RepoConfig,
        grouped_refs: list,
        join_key_values: dict,
        entity_name_to_join_key_map: dict,
        online_features_response: GetOnlineFeaturesResponse,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """Feast's per-view read, with statuses: PRESENT, NOT_FOUND, or OUTSIDE_MAX_AGE."""
        for read in _view_reads(grouped_refs, join_key_values, entity_name_to_join_key_map):
            found = self.read_rows(config, read.table, read.keys, read.requested)
            self._add_to_response(read, found, online_features_response, full_feature_names)

    async def _read_features_per_fv_async(
        self,
        config: RepoConfig,
        grouped_refs: list,
        join_key_values: dict,
        entity_name_to_join_key_map: dict,
        online_features_response: GetOnlineFeaturesResponse,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """The same answer as :meth:`_read_features_per_fv`, the views read concurrently."""
        reads = _view_reads(grouped_refs, join_key_values, entity_name_to_join_key_map)
        founds = await asyncio.gather(
            *(self.read_rows_async(config, r.table, r.keys, r.requested) for r in reads)
        )
        for read, found in zip(reads, founds, strict=True):
            self._add_to_response(read, found, online_features_response, full_feature_names)

    def _add_to_response(
        self,
        read: _ViewRead,
        found: dict[bytes, tuple[Any, ...]],
        response: GetOnlineFeaturesResponse,
        full_feature_names: bool,
    ) -> None:
        """One view's values, statuses and event times, appended to Feast's response."""
        present, not_found, expired = (
            FieldStatus.PRESENT,
            FieldStatus.NOT_FOUND,
            FieldStatus.OUTSIDE_MAX_AGE,
        )
        table, requested, output_len = read.table, read.requested, read.output_len
        floor = self.ttl_floor_micros(table)
        by_name = {f.name: f for f in table.features}
        convert = [_to_proto(by_name[n].dtype) for n in requested]
        null, no_ts = ValueProto(), Timestamp()
        vals = [[null] * output_len for _ in requested]
        stats = [[not_found] * output_len for _ in requested]
        stamps = [no_ts] * output_len
        for key, dests in zip(read.keys, read.idxs, strict=True):
            row = found.get(key)
            if row is None:
                continue
            ts = Timestamp()
            ts.FromMicroseconds(row[0])
            fresh = floor is None or row[0] >= floor
            for f_idx, conv in enumerate(convert):
                # A row that exists but is past the TTL: null, OUTSIDE_MAX_AGE. A null value
                # in a fresh row is PRESENT (the row exists; the feature was null), as in Feast.
                value = conv(row[1 + f_idx]) if fresh else null
                status = present if fresh else expired
                for out in dests:
                    vals[f_idx][out] = value
                    stats[f_idx][out] = status
            for out in dests:
                stamps[out] = ts
        prefix = table.projection.name_to_use()
        names = [f"{prefix}__{n}" if full_feature_names else n for n in requested]
        response.metadata.feature_names.val.extend(names)
        for f_idx in range(len(requested)):
            response.results.append(
                GetOnlineFeaturesResponse.FeatureVector(
                    values=vals[f_idx], statuses=stats[f_idx], event_timestamps=stamps
                )
            )


@dataclass
class _ViewRead:
    """What one view's part of a Feast online read needs: its keys and where answers go."""

    table: FeatureView
    requested: list[str]
    keys: list[bytes]
    idxs: list[Any]
    output_len: int


def _view_reads(
    grouped_refs: list, join_key_values: dict, entity_name_to_join_key_map: dict
) -> list[_ViewRead]:
    from feast import utils

    reads = []
    for table, requested in grouped_refs:
        values, idxs, output_len = utils._get_unique_entities(
            table, join_key_values, entity_name_to_join_key_map
        )
        keys = [encode_proto_key(k) for k in utils._get_entity_key_protos(values)]
        reads.append(_ViewRead(table, list(requested), keys, list(idxs), output_len))
    return reads


class SQLiteOnlineStore(NewestWinsOnlineStore):
    """See the module docstring."""

    def __init__(self) -> None:
        self._local = threading.local()

    # -- connections ---------------------------------------------------------------------------

    @staticmethod
    def db_path(config: RepoConfig) -> Path:
        path = Path(config.online_store.path)
        if not path.is_absolute() and config.repo_path is not None:
            path = Path(config.repo_path) / path
        return path

    def _conn(self, config: RepoConfig) -> sqlite3.Connection:
        """One connection per thread and database file, in WAL mode."""
        path = self.db_path(config)
        cache = getattr(self._local, "conns", None)
        if cache is None:
            cache = self._local.conns = {}
        conn = cache.get(path)
        if conn is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            cache[path] = conn
        return conn

    # -- schema --------------------------------------------------------------------------------

    def _ensure_table(
        self, conn: sqlite3.Connection, config: RepoConfig, view: FeatureView, rebuild: bool
    ) -> None:
        """Create the view's table; one whose columns differ from the view is rebuilt empty
        (``rebuild``, on apply) or refused (on write): rows written before a feature was added
        would keep it null, since re-materializing them is not newer and never replaces them.
        An empty table makes the next ``featurestack materialize`` refill the view in full."""
        name = _quote(table_name(config, view))
        expected = {"entity_key": "BLOB", "event_ts": "INTEGER", "created_ts": "INTEGER"}
        expected |= {f.name: _sql_type(f.dtype) for f in stored_features(view)}
        have = {row[1]: row[2] for row in conn.execute(f"PRAGMA table_info({name})")}
        if have and have != expected:
            if not rebuild:
                raise ValueError(
                    f"online table {table_name(config, view)} has columns {sorted(have)}, "
                    f"feature view {view.name} needs {sorted(expected)}: run `featurestack "
                    "apply` (it rebuilds the table) and then `featurestack materialize`"
                )
            conn.execute(f"DROP TABLE {name}")
        cols = ", ".join(f"{_quote(f.name)} {_sql_type(f.dtype)}" for f in stored_features(view))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} (entity_key BLOB PRIMARY KEY, "
            f"event_ts INTEGER NOT NULL, created_ts INTEGER NOT NULL"
            f"{', ' + cols if cols else ''}) WITHOUT ROWID"
        )

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        conn = self._conn(config)
        for view in tables_to_keep:
            self._ensure_table(conn, config, view, rebuild=True)
        for view in tables_to_delete:
            conn.execute(f"DROP TABLE IF EXISTS {_quote(table_name(config, view))}")

    def teardown(
        self,
        config: RepoConfig,
        tables: Sequence[FeatureView],
        entities: Sequence[Entity],
    ) -> None:
        conn = self._conn(config)
        for view in tables:
            conn.execute(f"DROP TABLE IF EXISTS {_quote(table_name(config, view))}")

    # -- writes --------------------------------------------------------------------------------

    def _upsert_sql(self, config: RepoConfig, view: FeatureView, features: list[str]) -> str:
        name = _quote(table_name(config, view))
        cols = ["entity_key", "event_ts", "created_ts", *features]
        quoted = [_quote(c) for c in cols]
        sets = ", ".join(f"{q} = excluded.{q}" for q in quoted[1:])
        return (
            f"INSERT INTO {name} ({', '.join(quoted)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT(entity_key) DO UPDATE SET {sets} "
            f"WHERE excluded.event_ts > {name}.event_ts OR (excluded.event_ts = {name}.event_ts "
            f"AND excluded.created_ts > {name}.created_ts)"
        )

    def write_stored_rows(
        self,
        config: RepoConfig,
        view: FeatureView,
        features: list[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """Upsert ``(key, event_us, created_us, *values)`` rows, newest event winning.

        One transaction per ``batch_size`` rows; a crash leaves whole batches, and a re-run
        converges because the upsert is idempotent and order-independent.
        """
        conn = self._conn(config)
        self._ensure_table(conn, config, view, rebuild=False)
        sql = self._upsert_sql(config, view, features)
        batch_size = config.online_store.batch_size
        batch: list[Sequence[Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_size:
                self._commit(conn, sql, batch)
                batch = []
        if batch:
            self._commit(conn, sql, batch)

    @staticmethod
    def _commit(conn: sqlite3.Connection, sql: str, batch: list[Sequence[Any]]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, batch)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- reads ---------------------------------------------------------------------------------

    def read_stored_rows(
        self, config: RepoConfig, view: FeatureView, keys: list[bytes], features: list[str]
    ) -> dict[bytes, tuple[Any, ...]]:
        """``key → (event_us, *values)`` for the keys present (missing keys are absent)."""
        conn = self._conn(config)
        name = _quote(table_name(config, view))
        cols = ", ".join(["entity_key", "event_ts", *(_quote(f) for f in features)])
        found: dict[bytes, tuple[Any, ...]] = {}
        unique = list(dict.fromkeys(keys))
        try:
            for i in range(0, len(unique), _READ_CHUNK):
                chunk = unique[i : i + _READ_CHUNK]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(
                    f"SELECT {cols} FROM {name} WHERE entity_key IN ({marks})", chunk
                ):
                    found[row[0]] = row[1:]
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):
                return {}
            raise
        return found

    def row_count(self, config: RepoConfig, view: FeatureView) -> int:
        """Rows stored for a view (0 when its table does not exist yet)."""
        try:
            return int(
                self._conn(config)
                .execute(f"SELECT count(*) FROM {_quote(table_name(config, view))}")
                .fetchone()[0]
            )
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):
                return 0
            raise

    def newest_event_micros(self, config: RepoConfig, view: FeatureView) -> int | None:
        if self.row_count(config, view) == 0:
            return None
        sql = f"SELECT max(event_ts) FROM {_quote(table_name(config, view))}"
        value = self._conn(config).execute(sql).fetchone()[0]
        return int(value) if value is not None else None
