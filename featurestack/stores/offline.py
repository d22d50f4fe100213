"""A Feast offline store on DuckDB's native ``ASOF JOIN``: exact point-in-time joins at the
speed of DuckDB itself.

Plugged in through Feast's extension point (``offline_store: type:
featurestack.stores.offline.DuckDBAsofOfflineStore``). Written by hand because neither stock
store does the job: Feast's ``duckdb`` store joins with a row-number window over the whole
feature table, fails on an ``entity_df`` given as SQL and on retrieval by time range; the
``file`` (dask) store drops and merges entity rows and runs out of memory at 1M rows.

Point-in-time rules, per feature view (``docs/offline_store.md`` has the long form):

* a feature row is eligible for an entity row when its join keys equal the entity's (a null key
  matches nothing) and ``entity_ts - ttl <= event_ts <= entity_ts`` (ttl 0 or None: unbounded);
* the greatest ``event_ts`` wins; a tie is broken by the greatest created timestamp where the
  source has one (rows tied on both are duplicates: one of them is returned);
* with ``filter_by_created_timestamp=True`` rows created after the entity timestamp are not
  eligible;
* the winning row's values are returned as they are (a null stays null);
* every entity row comes back exactly once, in input order, with its extra columns.

The class lives in the featurestack package, not in feature_repo/, because Feast imports it by
module path from wherever a FeatureStore is created, so it must be an installed module.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from feast.data_source import DataSource
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.feature_logging import (
    LOG_DATE_FIELD,
    LOG_TIMESTAMP_FIELD,
    LoggingConfig,
    LoggingSource,
)
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL, FeatureView
from feast.infra.offline_stores.file_source import (
    FileLoggingDestination,
    FileSource,
    SavedDatasetFileStorage,
)
from feast.infra.offline_stores.offline_store import (
    OfflineStore,
    RetrievalJob,
    RetrievalMetadata,
)
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.saved_dataset import SavedDatasetStorage
from pydantic import StrictInt, StrictStr

from featurestack.core.errors import UsageError
from featurestack.stores.offline_writes import (
    data_folder,
    replace_parquet_folder,
    stage_push,
    write_feature_log,
    write_parquet_atomically,
)

ENTITY_TS = "event_timestamp"
_ROW = "__fs_row"


class EntityDataFrameError(UsageError):
    """The entity dataframe cannot be joined as given; the message says why and how to fix it."""


class DuckDBAsofOfflineStoreConfig(FeastConfigBaseModel):
    """``offline_store:`` section of feature_store.yaml for this store."""

    type: Literal["featurestack.stores.offline.DuckDBAsofOfflineStore"] = (
        "featurestack.stores.offline.DuckDBAsofOfflineStore"
    )
    #: DuckDB worker threads (default: all cores).
    threads: StrictInt | None = None
    #: DuckDB memory limit, e.g. "8GB" (default: DuckDB's, 80 % of RAM).
    memory_limit: StrictStr | None = None
    #: featurestack's data folder, where pushed rows are staged for the gate (relative: from
    #: the repo folder). Default: $FEATURESTACK_DATA_DIR, else ../data from the repo folder.
    data_path: StrictStr | None = None


#: DuckDB memory cap of a streamed materialization pull unless ``memory_limit`` is configured
#: (DuckDB's own default, 80 % of RAM, lets its buffers grow with the data).
PULL_MEMORY_LIMIT = "128MB"


@dataclass(frozen=True)
class SortedPull:
    """pull_latest for ``iter_batches``: the window's rows sorted by key, newest first.

    DuckDB's window operator (``QUALIFY row_number() …``) holds its whole input in memory; its
    sort spills to disk. Streaming the sorted rows and keeping the first of each key keeps
    memory bounded however many entities there are, and hands the online store its rows in key
    order (SQLite inserts in key order ≈ 8× faster than in random order).
    """

    sql: str
    keys: list[str]
    memory_limit: str | None


def _first_of_each_key(
    batch: pa.RecordBatch, keys: list[str], previous: tuple[Any, ...] | None
) -> tuple[pa.RecordBatch, tuple[Any, ...]]:
    """The rows of a key-sorted batch whose key differs from the row before (the first row is
    compared with ``previous``, the last key of the batch before); and this batch's last key."""
    n = batch.num_rows
    columns = [batch.column(batch.schema.get_field_index(k)) for k in keys]
    first = previous is None or tuple(c[0].as_py() for c in columns) != previous
    changed: pa.Array = pa.array([], pa.bool_())
    if n > 1:
        diffs = []
        for c in columns:
            a, b = c.slice(1), c.slice(0, n - 1)  # null == null, as in the sort's groups
            diffs.append(pc.fill_null(pc.not_equal(a, b), pc.xor(pc.is_null(a), pc.is_null(b))))
        changed = diffs[0]
        for d in diffs[1:]:
            changed = pc.or_(changed, d)
    mask = pa.concat_arrays([pa.array([first]), changed])
    return batch.filter(mask), tuple(c[n - 1].as_py() for c in columns)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_ts(value: datetime) -> str:
    """A timestamp literal in UTC (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return f"TIMESTAMPTZ '{value.astimezone(UTC).isoformat()}'"


def _interval(td: timedelta) -> str:
    return f"INTERVAL {int(td / timedelta(microseconds=1))} MICROSECONDS"


def connect(config: RepoConfig | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that reads every timestamp as UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    store_cfg = getattr(config, "offline_store", None)
    if store_cfg is not None and getattr(store_cfg, "threads", None):
        con.execute(f"SET threads = {int(store_cfg.threads)}")
    if store_cfg is not None and getattr(store_cfg, "memory_limit", None):
        con.execute(f"SET memory_limit = '{store_cfg.memory_limit}'")
    return con


def source_path(config: RepoConfig, source: DataSource) -> str:
    if not isinstance(source, FileSource):
        raise TypeError(
            f"data source {source.name!r} is a {type(source).__name__}; "
            "DuckDBAsofOfflineStore reads FileSource (Parquet) sources only"
        )
    return FileSource.get_uri_for_file_path(config.repo_path, source.file_options.uri)


def _scan(path: str) -> str:
    """A Parquet file, or every Parquet file in a folder (a published table's month files,
    a saved dataset) or in its subfolders (a feature-service log).

    The folder is resolved once, here: a published table is read through the ``current``
    snapshot link, and a query must keep reading one snapshot if the gate swaps in the next.
    """
    folder = Path(path)
    if folder.is_dir():
        folder = folder.resolve()
        if any(p.is_dir() and p.name[0] not in "._" for p in folder.iterdir()):
            # Files in subfolders (a feature-service log, one folder per day): every file of
            # every subfolder, columns matched by name (a service may gain features).
            pattern = duckdb_literal(str(folder / "**" / "*.parquet"))
            return f"read_parquet({pattern}, union_by_name = true, hive_partitioning = false)"
        path = str(folder / "*.parquet")
    return f"read_parquet({duckdb_literal(path)})"


def duckdb_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --------------------------------------------------------------------------------------------
# Entity rows


def _is_datetime(dtype: Any) -> bool:
    return pd.api.types.is_datetime64_any_dtype(dtype)


def _normalize_object_timestamps(column: pd.Series, name: str) -> pd.Series:
    """Object columns of datetimes: all naive (UTC) or all aware; a mix is ambiguous."""
    values = column.dropna()
    if any(not isinstance(v, datetime | pd.Timestamp | np.datetime64) for v in values):
        raise EntityDataFrameError(
            f"entity column {name!r} holds values that are not timestamps; "
            "give datetimes (naive = UTC, or timezone-aware)"
        )
    # np.datetime64 has no time zone: it is naive.
    kinds = {isinstance(v, np.datetime64) or v.tzinfo is None for v in values}
    if kinds == {True, False}:
        raise EntityDataFrameError(
            f"entity column {name!r} mixes naive and timezone-aware timestamps; naive ones are "
            "taken as UTC, which may not be what was meant. Make them all aware "
            "(e.g. pd.to_datetime(col, utc=True) after localizing the naive ones) or all naive UTC."
        )
    if kinds == {False}:
        return pd.to_datetime(column, utc=True)
    return pd.to_datetime(column.map(pd.Timestamp)).dt.tz_localize("UTC")


def _floor_to_microseconds(column: Any) -> Any:
    """UTC microseconds, rounding down: the resolution at which both sides are compared.

    Sources get the same floor in SQL; rounding both sides alike is what keeps a feature stamped
    50 ns after an entity row from counting as at or before it.
    """
    target = pa.timestamp("us", tz="UTC")
    if column.type.unit != "ns":
        return column.cast(target)
    ns = column.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
    remainder = pc.subtract(ns, pc.multiply(pc.divide(ns, 1000), 1000))  # truncated division
    remainder = pc.if_else(pc.less(remainder, 0), pc.add(remainder, 1000), remainder)
    return pc.divide(pc.subtract(ns, remainder), 1000).cast(target)


def _is_timestamp_type(dtype: Any) -> bool:
    """An Arrow timestamp type or a pandas/NumPy datetime dtype (the two kinds of schema an
    entity dataframe comes with; Arrow's test reads ``.id``, which NumPy dtypes lack)."""
    if isinstance(dtype, pa.DataType):
        return pa.types.is_timestamp(dtype)
    return _is_datetime(dtype)


def infer_timestamp_column(columns: dict[str, Any]) -> str:
    """The entity timestamp column, as Feast infers it: ``event_timestamp`` if present, else
    the only timestamp column whatever its name; none or several is an error."""
    if ENTITY_TS in columns:
        return ENTITY_TS
    candidates = [c for c, t in columns.items() if _is_timestamp_type(t)]
    if len(candidates) == 1:
        return candidates[0]
    raise EntityDataFrameError(
        f"the entity dataframe needs a timestamp column named {ENTITY_TS!r} "
        f"(found {len(candidates)} timestamp columns: {candidates})"
    )


def entity_table_from_frame(df: pd.DataFrame) -> tuple[pa.Table, str]:
    """The entity dataframe as Arrow, its timestamp column as UTC microseconds."""
    if df.columns.duplicated().any():
        dup = sorted(set(df.columns[df.columns.duplicated()]))
        raise EntityDataFrameError(f"entity dataframe has duplicate column names {dup}")
    frame = df.reset_index(drop=True)
    ts_col = ENTITY_TS if ENTITY_TS in frame.columns else None
    if ts_col is None:
        ts_col = infer_timestamp_column(dict(frame.dtypes))
    col = frame[ts_col]
    if col.dtype == object:
        col = _normalize_object_timestamps(col, ts_col)
    elif not _is_datetime(col.dtype):
        raise EntityDataFrameError(
            f"entity column {ts_col!r} has dtype {col.dtype}, not a timestamp; "
            "convert it with pd.to_datetime(..., utc=True)"
        )
    elif getattr(col.dt, "tz", None) is None:
        col = col.dt.tz_localize("UTC")
    else:
        col = col.dt.tz_convert("UTC")
    if col.isna().any():
        raise EntityDataFrameError(
            f"entity column {ts_col!r} has {int(col.isna().sum())} null timestamp(s); "
            "every entity row needs a time to join features as of"
        )
    frame = frame.assign(**{ts_col: col})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    idx = table.schema.get_field_index(ts_col)
    table = table.set_column(idx, ts_col, _floor_to_microseconds(table.column(idx)))
    return table, ts_col


def entity_table_from_arrow(table: pa.Table) -> tuple[pa.Table, str]:
    ts_col = infer_timestamp_column({f.name: f.type for f in table.schema})
    idx = table.schema.get_field_index(ts_col)
    column = table.column(idx)
    if not pa.types.is_timestamp(column.type):
        raise EntityDataFrameError(f"entity column {ts_col!r} is {column.type}, not a timestamp")
    if column.null_count:
        raise EntityDataFrameError(f"entity column {ts_col!r} has {column.null_count} null(s)")
    table = table.set_column(idx, ts_col, _floor_to_microseconds(column))
    return table, ts_col


# --------------------------------------------------------------------------------------------
# Query planning


@dataclass
class ViewPlan:
    """How one feature view joins: its scan, keys, time columns and output columns."""

    view: FeatureView
    path: str
    key_pairs: list[tuple[str, str]]  # (entity column, source column)
    timestamp: str
    created: str | None
    features: list[tuple[str, str]]  # (source column, output column)
    ttl: timedelta | None
    #: Source time columns stored with nanoseconds (floored to µs like the entity side).
    nanosecond_columns: frozenset[str] = frozenset()


def _ts_sql(column: str, nanoseconds: bool) -> str:
    """A source time column as TIMESTAMPTZ; nanoseconds are floored to microseconds (a plain
    cast would round to the nearest, moving some rows up to 500 ns later)."""
    if not nanoseconds:
        return f"CAST({_quote(column)} AS TIMESTAMPTZ)"
    ns = f"epoch_ns({_quote(column)})"
    return f"CAST(make_timestamp(({ns} - (({ns} % 1000) + 1000) % 1000) // 1000) AS TIMESTAMPTZ)"


def plan_views(
    config: RepoConfig,
    feature_views: list[FeatureView],
    feature_refs: list[str],
    full_feature_names: bool,
) -> list[ViewPlan]:
    plans = []
    for view in feature_views:
        prefix = view.projection.name_to_use()
        wanted = [r.split(":", 1)[1] for r in feature_refs if r.split(":", 1)[0] == prefix]
        if not wanted:
            continue
        source = view.batch_source
        if source is None:
            raise ValueError(f"feature view {view.name!r} has no batch source")
        reverse_map = {v: k for k, v in (source.field_mapping or {}).items()}
        out_prefix = view.projection.name_alias or view.name
        keys = []
        for entity_col in view.entity_columns:
            join_key = entity_col.name
            keys.append(
                (
                    view.projection.join_key_map.get(join_key, join_key),
                    reverse_map.get(join_key, join_key),
                )
            )
        features = [
            (reverse_map.get(f, f), f"{out_prefix}__{f}" if full_feature_names else f)
            for f in wanted
        ]
        ttl = view.ttl if view.ttl and view.ttl > timedelta(0) else None
        plans.append(
            ViewPlan(
                view=view,
                path=source_path(config, source),
                key_pairs=keys,
                timestamp=reverse_map.get(source.timestamp_field, source.timestamp_field),
                created=reverse_map.get(
                    source.created_timestamp_column, source.created_timestamp_column
                )
                or None,
                features=features,
                ttl=ttl,
            )
        )
    return plans


def _check_key_types(
    con: duckdb.DuckDBPyConnection, plan: ViewPlan, entity_types: dict[str, str]
) -> None:
    """Keys must compare as the same kind of value: never '12' = 12 by implicit cast."""
    schema = {
        r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {_scan(plan.path)}").fetchall()
    }
    missing = [s for _, s in plan.key_pairs if s not in schema]
    missing += [s for s, _ in plan.features if s not in schema]
    missing += [c for c in (plan.timestamp, plan.created) if c and c not in schema]
    if missing:
        raise KeyError(
            f"feature view {plan.view.name!r}: columns {missing} are not in {plan.path} "
            f"(it has {sorted(schema)})"
        )

    def kind(t: str) -> str:
        """Integers, floats, decimals and text are told apart: comparing an integer with a
        float goes through a lossy cast (2**53 + 1 would equal 2**53)."""
        t = t.upper()
        if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT") or t.startswith("U"):
            return "integer"
        if t in ("FLOAT", "DOUBLE", "REAL"):
            return "float"
        if t.startswith(("DECIMAL", "NUMERIC")):
            return "decimal"
        if "CHAR" in t or t in ("STRING", "TEXT"):
            return "text"
        return t

    plan.nanosecond_columns = frozenset(
        c
        for c in (plan.timestamp, plan.created)
        if c and schema[c].upper().startswith(("TIMESTAMP_NS", "TIMESTAMPTZ_NS"))
    )

    for entity_col, source_col in plan.key_pairs:
        if entity_col not in entity_types:
            raise EntityDataFrameError(
                f"entity dataframe lacks join key column {entity_col!r} of feature view "
                f"{plan.view.name!r} (it has {sorted(entity_types)})"
            )
        if entity_types[entity_col].strip('"').upper() == "NULL":
            continue  # an all-null key column: it matches nothing, which is the answer
        if kind(entity_types[entity_col]) != kind(schema[source_col]):
            raise EntityDataFrameError(
                f"join key {entity_col!r} is {entity_types[entity_col]} in the entity dataframe "
                f"but {schema[source_col]} in {plan.view.name!r}; convert one so they compare "
                "as the same kind of value"
            )


def _view_cte(plan: ViewPlan, i: int, lo: str | None, hi: str | None) -> str:
    """The source, renamed and restricted to the time range any entity row can reach."""
    cols = [f"{_quote(s)} AS __k{j}" for j, (_, s) in enumerate(plan.key_pairs)]
    ts = _ts_sql(plan.timestamp, plan.timestamp in plan.nanosecond_columns)
    cols.append(f"{ts} AS __ts")
    if plan.created:
        # A row without a created time counts as created at the beginning of time: it is
        # always known, and loses a tie to any row that has one.
        created = _ts_sql(plan.created, plan.created in plan.nanosecond_columns)
        cols.append(f"COALESCE({created}, '-infinity'::TIMESTAMPTZ) AS __created")
    cols += [f"{_quote(s)} AS __f{j}" for j, (s, _) in enumerate(plan.features)]
    where = []
    if lo is not None and plan.ttl is not None:
        where.append(f"{ts} >= {lo} - {_interval(plan.ttl)}")
    if hi is not None:
        where.append(f"{ts} <= {hi}")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"__v{i} AS (SELECT {', '.join(cols)} FROM {_scan(plan.path)}{clause})"


def point_in_time_sql(
    plans: list[ViewPlan],
    entity_columns: list[str],
    ts_col: str,
    entity_relation: str,
    bounds: tuple[str, str] | None,
    filter_by_created: bool,
    ordered: bool = True,
) -> str:
    """One query: the entity rows, each view joined as of the row's time.

    With ``ordered`` the rows come back in input order with the entity columns; without it
    only the feature columns come back, with each row's input position in ``__fs_row``, for
    :func:`restore_input_order` (a gather is cheaper than sorting the joined rows).
    """
    lo, hi = bounds if bounds else (None, None)
    ctes = [f"__e AS (SELECT * FROM {entity_relation})"]
    joins, outputs = [], []
    e_ts = f"__e.{_quote(ts_col)}"
    for i, plan in enumerate(plans):
        ctes.append(_view_cte(plan, i, lo, hi))
        v = f"__v{i}"
        key_eq = [f"__e.{_quote(e)} = {v}.__k{j}" for j, (e, _) in enumerate(plan.key_pairs)]
        ttl_ok = f"{v}.__ts >= {e_ts} - {_interval(plan.ttl)}" if plan.ttl else None
        if filter_by_created and plan.created:
            # Two inequalities (event and created time): a range join, then the winner per row.
            conds = [*key_eq, f"{v}.__ts <= {e_ts}", f"{v}.__created <= {e_ts}"]
            if ttl_ok:
                conds.append(ttl_ok)
            feats = ", ".join(f"{v}.__f{j}" for j in range(len(plan.features)))
            ctes.append(
                f"__w{i} AS (SELECT __e.{_ROW}, {feats} FROM __e JOIN {v} ON {' AND '.join(conds)} "
                f"QUALIFY row_number() OVER (PARTITION BY __e.{_ROW} "
                f"ORDER BY {v}.__ts DESC, {v}.__created DESC) = 1)"
            )
            joins.append(f"LEFT JOIN __w{i} ON __w{i}.{_ROW} = __e.{_ROW}")
            outputs += [
                f"__w{i}.__f{j} AS {_quote(out)}" for j, (_, out) in enumerate(plan.features)
            ]
            continue
        if plan.created:
            # Lexicographic (event, created): the ASOF match is the newest event, then the
            # newest created among rows with that event time.
            ineq = (
                f"{{'t': {e_ts}, 'c': 'infinity'::TIMESTAMPTZ}} "
                f">= {{'t': {v}.__ts, 'c': {v}.__created}}"
            )
        else:
            ineq = f"{e_ts} >= {v}.__ts"
        joins.append(f"ASOF LEFT JOIN {v} ON {' AND '.join([*key_eq, ineq])}")
        for j, (_, out) in enumerate(plan.features):
            value = f"{v}.__f{j}"
            outputs.append(
                f"CASE WHEN {ttl_ok} THEN {value} END AS {_quote(out)}"
                if ttl_ok
                else f"{value} AS {_quote(out)}"
            )
    if ordered:
        select = [f"__e.{_quote(c)}" for c in entity_columns] + outputs
        tail = f" ORDER BY __e.{_ROW}"
    else:
        # Only positions and features: the entity columns are already in order on our side.
        select, tail = [f"__e.{_ROW}", *outputs], ""
    return f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM __e {' '.join(joins)}{tail}"


def _gather(column: pa.ChunkedArray, order: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """``column`` reordered by ``order``: NumPy for fixed-width types, Arrow's take otherwise."""
    kind = column.type
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_timestamp(kind)):
        return column.take(pa.array(order))
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    np_type = np.int64 if pa.types.is_timestamp(kind) else np.dtype(kind.to_pandas_dtype())
    raw = np.frombuffer(array.buffers()[1], dtype=np_type)[array.offset : array.offset + len(array)]
    values = np.take(raw, order)
    if not array.null_count:
        return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])
    missing = np.take(np.asarray(array.is_null()), order)
    validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    return pa.Array.from_buffers(
        kind, len(values), [validity, pa.py_buffer(values)], null_count=int(missing.sum())
    )


def restore_input_order(table: pa.Table, n_rows: int) -> pa.Table:
    """Put rows back in entity order from their ``__fs_row`` positions (a permutation).

    Each column is gathered on its own thread (NumPy releases the GIL): values and validity
    separately for fixed-width types, several times faster than Arrow's ``take`` on the chunked
    join result, and faster than sorting it in SQL.
    """
    from concurrent.futures import ThreadPoolExecutor

    positions = table.column(_ROW).to_numpy()
    if len(positions) != n_rows:
        raise RuntimeError(f"point-in-time join returned {len(positions)} rows for {n_rows}")
    order = np.empty(n_rows, dtype=np.int64)
    order[positions] = np.arange(n_rows, dtype=np.int64)
    names = [name for name in table.column_names if name != _ROW]
    with ThreadPoolExecutor() as pool:
        columns = list(pool.map(lambda name: _gather(table.column(name), order), names))
    return pa.table(columns, names=names)


# --------------------------------------------------------------------------------------------
# Retrieval job


class DuckDBAsofRetrievalJob(RetrievalJob):
    """Runs its query on demand; the result streams from DuckDB as Arrow."""

    def __init__(
        self,
        query: Callable[[bool], tuple[duckdb.DuckDBPyConnection, str]],
        full_feature_names: bool = False,
        on_demand_feature_views: list[OnDemandFeatureView] | None = None,
        metadata: RetrievalMetadata | None = None,
        entity: pa.Table | None = None,
        sorted_pull: SortedPull | None = None,
        repo_path: str | Path | None = None,
    ) -> None:
        """``query(ordered)`` opens a connection and returns it with the SQL to run. With an
        ``entity`` table the unordered query is run, its feature columns are put back in input
        order and appended to the entity columns. ``sorted_pull`` is how ``iter_batches``
        streams a pull_latest. ``repo_path`` is where relative saved-dataset paths start, as
        for sources."""
        self._query = query
        self._repo_path = repo_path
        self._entity = entity
        self._sorted_pull = sorted_pull
        self._full_feature_names = full_feature_names
        self._odfvs = on_demand_feature_views or []
        self._metadata = metadata

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._odfvs

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        con, sql = self._query(self._entity is None)
        try:
            table = con.sql(sql).to_arrow_table()
        finally:
            con.close()
        if self._entity is None:
            return table
        features = restore_input_order(table, self._entity.num_rows)
        return pa.table(
            [*self._entity.columns, *features.columns],
            names=[*self._entity.column_names, *features.column_names],
        )

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    def iter_batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The result as Arrow record batches of at most ``batch_rows`` rows, streamed from
        DuckDB (memory bounded by the batch, not the result), for jobs without an entity table
        (``pull_latest``/``pull_all``: materialization)."""
        if self._entity is not None:
            yield from self._to_arrow_internal().to_batches(batch_rows)
            return
        con, sql = self._query(False)
        plan = self._sorted_pull
        spill = tempfile.mkdtemp(prefix="featurestack-pull-") if plan else None
        try:
            if plan is None:
                yield from con.sql(sql).to_arrow_reader(batch_rows)
                return
            if plan.memory_limit:
                con.execute(f"SET memory_limit = '{plan.memory_limit}'")
            con.execute(f"SET temp_directory = '{spill}'")
            last: tuple[Any, ...] | None = None
            for batch in con.sql(plan.sql).to_arrow_reader(batch_rows):
                if batch.num_rows:
                    batch, last = _first_of_each_key(batch, plan.keys, last)
                    yield batch
        finally:
            con.close()
            if spill:
                shutil.rmtree(spill, ignore_errors=True)

    def to_sql(self) -> str:
        con, sql = self._query(True)
        con.close()
        return sql

    def persist(
        self,
        storage: SavedDatasetStorage,
        allow_overwrite: bool = False,
        timeout: int | None = None,
    ) -> None:
        """Write the result where a saved dataset's storage says, as Feast's file stores do: a
        path ending in ``.parquet`` (or an existing file) is one Parquet file, any other path a
        folder of Parquet files, which is how the dataset is read back. A relative path starts
        at the repo folder. An overwrite replaces the data whole (never new rows beside old)."""
        if not isinstance(storage, SavedDatasetFileStorage):
            raise TypeError("DuckDBAsofOfflineStore persists to SavedDatasetFileStorage (Parquet)")
        dest = Path(FileSource.get_uri_for_file_path(self._repo_path, storage.file_options.uri))
        if dest.exists() and not allow_overwrite:
            raise SavedDatasetLocationAlreadyExists(location=str(dest))
        if dest.is_file() or (dest.suffix == ".parquet" and not dest.exists()):
            write_parquet_atomically(self.to_arrow(timeout=timeout), dest)
        else:
            replace_parquet_folder(self.to_arrow(timeout=timeout), dest)


# --------------------------------------------------------------------------------------------
# The store


def _published_views(
    con: duckdb.DuckDBPyConnection, config: RepoConfig, views: Iterable[FeatureView]
) -> None:
    """Name every Parquet file beside the sources (and each source) as a view, for SQL input."""
    seen: set[str] = set()
    for view in views:
        source = view.batch_source
        if not isinstance(source, FileSource):
            continue
        path = Path(source_path(config, source))
        candidates = {source.name: path}
        if path.parent.is_dir():  # the other published tables (folders) or files
            candidates.update(
                {
                    p.stem: p
                    for p in path.parent.iterdir()
                    if (p.is_dir() or p.suffix == ".parquet") and p.name[0] not in "._"
                }
            )
        for name, file in candidates.items():
            if name and name not in seen and file.exists():
                seen.add(name)
                con.execute(
                    f"CREATE OR REPLACE VIEW {_quote(name)} AS SELECT * FROM {_scan(str(file))}"
                )


class DuckDBAsofOfflineStore(OfflineStore):
    """Feast offline store: DuckDB ASOF joins over Parquet FileSources."""

    supports_filter_by_created_timestamp = True

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | pa.Table | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        plans = plan_views(config, feature_views, feature_refs, full_feature_names)
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        all_keys = sorted({e for p in plans for e, _ in p.key_pairs})

        if isinstance(entity_df, pd.DataFrame):
            entity, ts_col = entity_table_from_frame(entity_df)
        elif isinstance(entity_df, pa.Table):
            entity, ts_col = entity_table_from_arrow(entity_df)
        elif isinstance(entity_df, str):
            con = connect(config)
            _published_views(con, config, feature_views)
            try:
                entity, ts_col = entity_table_from_arrow(con.sql(entity_df).to_arrow_table())
            except duckdb.Error as exc:
                raise EntityDataFrameError(f"entity_df SQL failed: {exc}") from exc
            finally:
                con.close()
        elif entity_df is None:
            entity, ts_col = _entities_in_range(config, plans, start_date, end_date)
        else:
            raise EntityDataFrameError(f"unsupported entity_df type {type(entity_df).__name__}")

        entity_columns = list(entity.column_names)
        if _ROW in entity_columns:
            raise EntityDataFrameError(f"entity column name {_ROW!r} is reserved")
        clash = [out for p in plans for _, out in p.features if out in entity_columns]
        if clash:
            raise EntityDataFrameError(
                f"entity dataframe already has column(s) {clash} that features would fill; "
                "rename them or use full_feature_names=True"
            )
        entity = entity.append_column(_ROW, pa.array(np.arange(entity.num_rows, dtype=np.int64)))
        ts = entity.column(ts_col)
        bounds = None
        if entity.num_rows:
            bounds = (_sql_ts(pc.min(ts).as_py()), _sql_ts(pc.max(ts).as_py()))

        # DuckDB sees only what the join needs: extra entity columns (of any Arrow type, even
        # ones DuckDB cannot read) stay on our side and are put back beside the features.
        join_columns = list(dict.fromkeys([*all_keys, ts_col, _ROW]))
        join_input = entity.select([c for c in join_columns if c in entity.column_names])

        def build(ordered: bool) -> tuple[duckdb.DuckDBPyConnection, str]:
            con = connect(config)
            con.register("__entity_input", entity if ordered else join_input)
            sql = point_in_time_sql(
                plans,
                entity_columns,
                ts_col,
                "__entity_input",
                bounds,
                filter_by_created_timestamp,
                ordered=ordered,
            )
            return con, sql

        # Fail now, not at to_df(), on missing columns or mistyped keys.
        con = connect(config)
        try:
            con.register("__entity_input", join_input.slice(0, 0))
            types = {r[0]: r[1] for r in con.execute("DESCRIBE __entity_input").fetchall()}
            for plan in plans:
                _check_key_types(con, plan, types)
        finally:
            con.close()
        metadata = RetrievalMetadata(
            features=feature_refs,
            keys=[c for c in entity_columns if c != ts_col] or all_keys,
            min_event_timestamp=pc.min(ts).as_py() if entity.num_rows else None,
            max_event_timestamp=pc.max(ts).as_py() if entity.num_rows else None,
        )
        return DuckDBAsofRetrievalJob(
            build,
            full_feature_names,
            odfvs,
            metadata,
            entity=entity.drop_columns([_ROW]),
            repo_path=config.repo_path,
        )

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        """The newest row per entity key with ``start_date <= event_ts <= end_date``."""
        path = source_path(config, data_source)
        keys = ", ".join(_quote(k) for k in join_key_columns)
        order = f"{_quote(timestamp_field)} DESC"
        if created_timestamp_column:
            order += f", {_quote(created_timestamp_column)} DESC"
        columns = _output_columns(
            join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column
        )
        where = _range_clause(timestamp_field, start_date, end_date)
        partition = f"PARTITION BY {keys} " if keys else ""
        sql = (
            f"SELECT {columns} FROM {_scan(path)}{where} "
            f"QUALIFY row_number() OVER ({partition}ORDER BY {order}) = 1"
        )
        sorted_pull = None
        if keys:
            configured = getattr(config.offline_store, "memory_limit", None)
            sorted_pull = SortedPull(
                sql=f"SELECT {columns} FROM {_scan(path)}{where} ORDER BY {keys}, {order}",
                keys=list(join_key_columns),
                memory_limit=None if configured else PULL_MEMORY_LIMIT,
            )
        return DuckDBAsofRetrievalJob(
            lambda ordered: (connect(config), sql),
            sorted_pull=sorted_pull,
            repo_path=config.repo_path,
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        """Every row with ``start_date <= event_ts <= end_date`` (either bound optional)."""
        path = source_path(config, data_source)
        columns = _output_columns(
            join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column
        )
        where = _range_clause(timestamp_field, start_date, end_date)
        sql = f"SELECT {columns} FROM {_scan(path)}{where}"
        return DuckDBAsofRetrievalJob(
            lambda ordered: (connect(config), sql), repo_path=config.repo_path
        )

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pa.Table,
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Stage pushed rows for the gate (offline_writes.py): never visible to retrieval
        before a gate run has validated and published them."""
        source = feature_view.batch_source
        if source is None:
            raise ValueError(f"feature view {feature_view.name!r} has no batch source to push to")
        path = source_path(config, source)
        import pyarrow.dataset as ds

        schema = ds.dataset(path, format="parquet").schema
        stage_push(data_folder(config), config.project, feature_view.name, path, table, schema)
        if progress:
            progress(table.num_rows)

    @staticmethod
    def write_logged_features(
        config: RepoConfig,
        data: pa.Table | Path,
        source: LoggingSource,
        logging_config: LoggingConfig,
        registry: BaseRegistry,
    ) -> None:
        """Append feature-service log rows to the service's own Parquet log, one folder per
        UTC day (offline_writes.py); Feast reads it back through ``pull_all``."""
        destination = logging_config.destination
        if not isinstance(destination, FileLoggingDestination):
            raise TypeError(
                "DuckDBAsofOfflineStore logs to a FileLoggingDestination (Parquet), not "
                f"{type(destination).__name__}"
            )
        if destination.partition_by and list(destination.partition_by) != [LOG_DATE_FIELD]:
            raise ValueError(
                f"feature logs are partitioned by day ({LOG_DATE_FIELD}); partition_by="
                f"{destination.partition_by} is not supported"
            )
        if isinstance(data, Path):
            import pyarrow.parquet as pq

            data = pq.read_table(data)
        root = Path(FileSource.get_uri_for_file_path(config.repo_path, destination.path))
        write_feature_log(root, data, LOG_DATE_FIELD, LOG_TIMESTAMP_FIELD)


def _output_columns(
    keys: list[str], features: list[str], timestamp_field: str, created: str | None
) -> str:
    """The pulled columns. A view without entities is keyed by Feast's dummy entity: its
    ``__dummy_id`` column (always '') is added here, as Feast's own stores add it, since Feast
    builds the online key from it."""
    names = list(
        dict.fromkeys([*keys, *features, timestamp_field, *([created] if created else [])])
    )
    columns = [
        f"CAST({_quote(n)} AS TIMESTAMPTZ) AS {_quote(n)}"
        if n in (timestamp_field, created)
        else _quote(n)
        for n in names
    ]
    if not keys:
        columns.append(f"{duckdb_literal(DUMMY_ENTITY_VAL)} AS {_quote(DUMMY_ENTITY_ID)}")
    return ", ".join(columns)


def _range_clause(ts: str, start: datetime | None, end: datetime | None) -> str:
    conds = []
    col = f"CAST({_quote(ts)} AS TIMESTAMPTZ)"
    if start is not None:
        conds.append(f"{col} >= {_sql_ts(start)}")
    if end is not None:
        conds.append(f"{col} <= {_sql_ts(end)}")
    return f" WHERE {' AND '.join(conds)}" if conds else ""


def same_join_keys(plans: Sequence[Any]) -> list[str]:
    """The join keys every plan shares: retrieval by time range needs one set of keys (the
    DuckDB and the Spark store both refuse mixed keys with this message)."""
    if not plans:
        raise EntityDataFrameError("no feature views to retrieve")
    names = [e for e, _ in plans[0].key_pairs]
    for plan in plans[1:]:
        if [e for e, _ in plan.key_pairs] != names:
            raise EntityDataFrameError(
                "retrieval by start_date/end_date needs feature views with the same join keys; "
                f"{plans[0].view.name} has {names}, {plan.view.name} has "
                f"{[e for e, _ in plan.key_pairs]}. Pass an entity_df instead."
            )
    return names


def _entities_in_range(
    config: RepoConfig, plans: list[ViewPlan], start: datetime | None, end: datetime | None
) -> tuple[pa.Table, str]:
    """Retrieval by time range: every (keys, event time) any requested view has in the range."""
    names = same_join_keys(plans)
    end = end or datetime.now(UTC)
    parts = []
    for plan in plans:
        keys = ", ".join(f"{_quote(s)} AS {_quote(e)}" for e, s in plan.key_pairs)
        parts.append(
            f"SELECT DISTINCT {keys}, CAST({_quote(plan.timestamp)} AS TIMESTAMPTZ) AS {ENTITY_TS} "
            f"FROM {_scan(plan.path)}{_range_clause(plan.timestamp, start, end)}"
        )
    order = ", ".join([ENTITY_TS, *(_quote(n) for n in names)])
    con = connect(config)
    try:
        table = con.sql(
            f"SELECT * FROM ({' UNION '.join(parts)}) ORDER BY {order}"
        ).to_arrow_table()
    finally:
        con.close()
    return entity_table_from_arrow(table)
