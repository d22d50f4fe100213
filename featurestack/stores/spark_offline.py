"""A Feast offline store on Spark that keeps every point-in-time rule of docs/offline_store.md.

Feast's contrib Spark store identifies an entity row by its join keys and timestamp
concatenated as text (so ``(1, "23")`` and ``(12, "3")`` are one row) and returns one output
row per feature row tied on (event, created) time (tests/integration/test_spark_offline_store.py
records both). This store numbers the entity rows instead, joins each view on its typed keys
and its time window, and keeps one winner per entity row by ``row_number()`` over
(event time, created time) descending: N rows in, N rows out, in input order.

Plugged in as ``offline_store: type: featurestack.stores.spark_offline.SparkAsofOfflineStore``
(the ``spark`` profile's feature_store.spark.yaml). It reads the same ``FileSource`` (Parquet
files or folders of month files) as the DuckDB store, so the Feast definitions do not change
between profiles, and Feast's ``SparkSource`` (table, query or path). pyspark is imported only
when the store is used: the class is importable without a JVM.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from feast.data_source import DataSource
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL, FeatureView
from feast.infra.offline_stores.file_source import FileSource, SavedDatasetFileStorage
from feast.infra.offline_stores.offline_store import (
    OfflineStore,
    RetrievalJob,
    RetrievalMetadata,
)
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.saved_dataset import SavedDatasetStorage
from pydantic import StrictStr

from featurestack.stores.offline import (
    ENTITY_TS,
    EntityDataFrameError,
    entity_table_from_arrow,
    entity_table_from_frame,
    restore_input_order,
    same_join_keys,
)
from featurestack.stores.offline_writes import (
    data_folder,
    replace_parquet_folder,
    stage_push,
    write_parquet_atomically,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import DataFrame as SparkDataFrame

_ROW = "__fs_row"
STORE_TYPE = "featurestack.stores.spark_offline.SparkAsofOfflineStore"
#: Parquet written by pandas stores nanoseconds, which Spark cannot read as timestamps: read
#: as int64 nanoseconds, they are floored to microseconds here (rule 8), as DuckDB's store does.
NANOS_AS_LONG = "spark.sql.legacy.parquet.nanosAsLong"


class SparkAsofOfflineStoreConfig(FeastConfigBaseModel):
    """``offline_store:`` section of feature_store.yaml for this store."""

    type: Literal["featurestack.stores.spark_offline.SparkAsofOfflineStore"] = (
        "featurestack.stores.spark_offline.SparkAsofOfflineStore"
    )
    #: Spark settings for a session this store starts (none running in the process yet);
    #: featurestack writes them from featurestack.spark.session.spark_conf.
    spark_conf: dict[str, str] | None = None
    #: featurestack's data folder, where pushed rows are staged for the gate (relative: from
    #: the repo folder). Default: $FEATURESTACK_DATA_DIR, else ../data from the repo folder.
    data_path: StrictStr | None = None


def session(config: RepoConfig | None = None) -> SparkSession:
    """The process's active SparkSession, else one started from the store's ``spark_conf``
    (Spark allows one per process: the first decides master, memory and time zone)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        builder = SparkSession.builder
        conf = getattr(getattr(config, "offline_store", None), "spark_conf", None) or {}
        for key, value in {"spark.sql.session.timeZone": "UTC", **conf}.items():
            builder = builder.config(key, value)
        active = builder.getOrCreate()
    active.conf.set(NANOS_AS_LONG, "true")
    return active


# --------------------------------------------------------------------------------------------
# Sources


def _resolved_path(config: RepoConfig, uri: str) -> str:
    """A FileSource's path from the repo folder; a folder (a published table, read through
    the ``current`` link) is resolved once, so one query reads one snapshot."""
    path = FileSource.get_uri_for_file_path(config.repo_path, uri)
    if "://" in path and not path.startswith("file://"):
        return path
    local = Path(path.removeprefix("file://"))
    return str(local.resolve()) if local.exists() else str(local)


def read_parquet(spark: SparkSession, path: str) -> SparkDataFrame:
    """Parquet (a file or a folder of files) as Spark reads it, with nanosecond timestamps
    (pandas' default, which Spark reads only as int64) floored to microsecond instants (rule 8):
    the file footer says which columns they are (pyarrow, no Spark job)."""
    from pyspark.sql import functions as F

    frame = spark.read.option("recursiveFileLookup", "true").parquet(path)
    nanos: list[str] = []
    if "://" not in path:
        import pyarrow.dataset as ds

        schema = ds.dataset(path, format="parquet").schema
        nanos = [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
    for name in nanos:
        q = f"`{name}`"
        frame = frame.withColumn(
            name, F.expr(f"timestamp_micros(({q} - pmod({q}, 1000)) div 1000)")
        )
    return frame


def read_source(spark: SparkSession, config: RepoConfig, source: DataSource) -> SparkDataFrame:
    """A source as a Spark DataFrame: a FileSource's Parquet (a file or a folder of files)
    or a SparkSource (table, query or path)."""
    if isinstance(source, FileSource):
        return read_parquet(spark, _resolved_path(config, source.file_options.uri))
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    if isinstance(source, SparkSource):
        return spark.sql(f"SELECT * FROM {source.get_table_query_string()}")
    raise TypeError(
        f"data source {source.name!r} is a {type(source).__name__}; SparkAsofOfflineStore "
        "reads FileSource (Parquet) and SparkSource sources"
    )


def _instant(df: SparkDataFrame, column: str) -> Column:
    """A source time column as a Spark TIMESTAMP (an instant, microseconds): nanoseconds
    stored as int64 were floored by :func:`read_parquet`; naive timestamps are UTC."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    kind = df.schema[column].dataType
    col = F.col(f"`{column}`")
    if isinstance(kind, T.TimestampNTZType):  # a naive timestamp is UTC, whatever the session
        return F.concat(col.cast("string"), F.lit("Z")).cast("timestamp")
    return col.cast("timestamp")


@dataclass
class SparkViewPlan:
    """How one feature view joins: its source, keys, time columns and output columns."""

    view: FeatureView
    source: DataSource
    key_pairs: list[tuple[str, str]]  # (entity column, source column)
    timestamp: str
    created: str | None
    features: list[tuple[str, str]]  # (source column, output column)
    ttl: timedelta | None


def plan_views(
    feature_views: list[FeatureView], feature_refs: list[str], full_feature_names: bool
) -> list[SparkViewPlan]:
    """Per requested view: keys (with the projection's join-key map and the source's
    field_mapping), time columns, and the requested features' output names."""
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
        keys = [
            (view.projection.join_key_map.get(e.name, e.name), reverse_map.get(e.name, e.name))
            for e in view.entity_columns
        ]
        created = source.created_timestamp_column
        plans.append(
            SparkViewPlan(
                view=view,
                source=source,
                key_pairs=keys,
                timestamp=reverse_map.get(source.timestamp_field, source.timestamp_field),
                created=reverse_map.get(created, created) or None,
                features=[
                    (reverse_map.get(f, f), f"{out_prefix}__{f}" if full_feature_names else f)
                    for f in wanted
                ],
                ttl=view.ttl if view.ttl and view.ttl > timedelta(0) else None,
            )
        )
    return plans


def _kind(data_type: Any) -> str:
    """Integers, floats, decimals and text are told apart (rule 6): '12' = 12 or an integer
    against a float through a double would match values that differ."""
    from pyspark.sql import types as T

    if isinstance(data_type, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return "integer"
    if isinstance(data_type, T.FloatType | T.DoubleType):
        return "float"
    if isinstance(data_type, T.DecimalType):
        return "decimal"
    if isinstance(data_type, T.StringType | T.VarcharType | T.CharType):
        return "text"
    return data_type.simpleString()


def _check_columns(
    plan: SparkViewPlan, source: SparkDataFrame, entity_types: dict[str, Any]
) -> None:
    """Missing columns and keys of different kinds fail before any Spark job runs."""
    from pyspark.sql import types as T

    names = set(source.columns)
    wanted = [s for _, s in plan.key_pairs] + [s for s, _ in plan.features]
    wanted += [c for c in (plan.timestamp, plan.created) if c]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise KeyError(
            f"feature view {plan.view.name!r}: columns {missing} are not in its source "
            f"{plan.source.name!r} (it has {sorted(names)})"
        )
    for entity_col, source_col in plan.key_pairs:
        if entity_col not in entity_types:
            raise EntityDataFrameError(
                f"entity dataframe lacks join key column {entity_col!r} of feature view "
                f"{plan.view.name!r} (it has {sorted(entity_types)})"
            )
        ours = entity_types[entity_col]
        theirs = source.schema[source_col].dataType
        if isinstance(ours, T.NullType):
            continue  # an all-null key column matches nothing, which is the answer
        if _kind(ours) != _kind(theirs):
            raise EntityDataFrameError(
                f"join key {entity_col!r} is {ours.simpleString().upper()} in the entity "
                f"dataframe but {theirs.simpleString().upper()} in {plan.view.name!r}; convert "
                "one so they compare as the same kind of value"
            )


# --------------------------------------------------------------------------------------------
# The join


def point_in_time(
    spark: SparkSession,
    config: RepoConfig,
    plans: list[SparkViewPlan],
    entity: SparkDataFrame,
    ts_col: str,
    bounds: tuple[datetime, datetime] | None,
    filter_by_created: bool,
) -> SparkDataFrame:
    """``entity`` (with ``__fs_row``) left-joined with each view's winner: for every entity
    row, the eligible row (keys equal, ``ts - ttl <= event <= ts``, created at or before ``ts``
    when filtering by it) with the greatest (event, created), one row however many tie."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    result = entity
    e_ts = F.col(f"e.`{ts_col}`")
    for plan in plans:
        source = read_source(spark, config, plan.source)  # columns checked by the caller
        cols = [F.col(f"`{s}`").alias(f"__k{j}") for j, (_, s) in enumerate(plan.key_pairs)]
        cols.append(_instant(source, plan.timestamp).alias("__ts"))
        if plan.created:
            cols.append(_instant(source, plan.created).alias("__created"))
        else:
            cols.append(F.lit(None).cast("timestamp").alias("__created"))
        cols += [F.col(f"`{s}`").alias(f"__f{j}") for j, (s, _) in enumerate(plan.features)]
        rows = source.select(*cols)
        if bounds is not None:  # only what some entity row can reach (partition/row-group pruning)
            lo, hi = bounds
            rows = rows.where(F.col("__ts") <= F.lit(hi))
            if plan.ttl is not None:
                rows = rows.where(F.col("__ts") >= F.lit(lo - plan.ttl))
        left = entity.select(
            _ROW,
            *[F.col(f"`{e}`").alias(f"__k{j}") for j, (e, _) in enumerate(plan.key_pairs)],
            F.col(f"`{ts_col}`"),
        ).alias("e")
        v = rows.alias("v")
        cond = [F.col(f"e.__k{j}") == F.col(f"v.__k{j}") for j in range(len(plan.key_pairs))]
        cond.append(F.col("v.__ts") <= e_ts)
        if plan.ttl is not None:  # in integer microseconds: exact at the boundary
            micros = int(plan.ttl / timedelta(microseconds=1))
            cond.append(F.unix_micros(F.col("v.__ts")) >= F.unix_micros(e_ts) - F.lit(micros))
        if filter_by_created and plan.created:  # no created time: known since ever
            cond.append(F.col("v.__created").isNull() | (F.col("v.__created") <= e_ts))
        joined = left.join(v, on=_all(cond), how="inner")
        order = Window.partitionBy(F.col(f"e.{_ROW}")).orderBy(
            F.col("v.__ts").desc(), F.col("v.__created").desc_nulls_last()
        )
        winners = (
            joined.withColumn("__rank", F.row_number().over(order))
            .where(F.col("__rank") == 1)
            .select(
                F.col(f"e.{_ROW}").alias(_ROW),
                *[F.col(f"v.__f{j}").alias(out) for j, (_, out) in enumerate(plan.features)],
            )
        )
        result = result.join(winners, on=_ROW, how="left")
    return result


def _all(conditions: list[Column]) -> Column:
    out = conditions[0]
    for c in conditions[1:]:
        out = out & c
    return out


# --------------------------------------------------------------------------------------------
# Retrieval job


class SparkAsofRetrievalJob(RetrievalJob):
    """A Spark DataFrame computed on demand. With a local ``entity`` table (pandas or Arrow
    input), only keys, time and row number went to Spark: the features come back with their
    row numbers and are put back in input order beside the entity columns."""

    def __init__(
        self,
        spark: SparkSession,
        frame: Callable[[], SparkDataFrame],
        full_feature_names: bool = False,
        on_demand_feature_views: list[OnDemandFeatureView] | None = None,
        metadata: RetrievalMetadata | None = None,
        entity: pa.Table | None = None,
        repo_path: str | Path | None = None,
    ) -> None:
        self._spark = spark
        self._frame = frame
        self._full_feature_names = full_feature_names
        self._odfvs = on_demand_feature_views or []
        self._metadata = metadata
        self._entity = entity
        self._repo_path = repo_path

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._odfvs

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata

    def to_spark_df(self) -> SparkDataFrame:
        """The result as a Spark DataFrame (entity columns and features, ordered by input
        row where the input had an order)."""
        frame = self._frame()
        if self._entity is None:
            return frame
        from pyspark.sql import functions as F

        numbered = self._entity.append_column(
            _ROW, pa.array(np.arange(self._entity.num_rows, dtype=np.int64))
        )
        entity = self._spark.createDataFrame(numbered.to_pandas())
        return entity.join(frame, on=_ROW, how="left").orderBy(F.col(_ROW)).drop(_ROW)

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        table = _to_arrow(self._frame())
        if self._entity is None:
            return table.drop_columns([_ROW]) if _ROW in table.column_names else table
        features = restore_input_order(table, self._entity.num_rows)
        return pa.table(
            [*self._entity.columns, *features.columns],
            names=[*self._entity.column_names, *features.column_names],
        )

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    def iter_batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The result in Arrow batches of at most ``batch_rows`` rows with bounded driver
        memory: Spark writes it as Parquet to a temporary folder (on the executors), which is
        read back one batch at a time and removed."""
        if self._entity is not None:
            yield from self._to_arrow_internal().to_batches(batch_rows)
            return
        import pyarrow.parquet as pq

        folder = Path(tempfile.mkdtemp(prefix="featurestack-spark-pull-"))
        try:
            frame = self._frame()
            frame.write.mode("overwrite").parquet(str(folder / "rows"))
            for file in sorted((folder / "rows").glob("*.parquet")):
                for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_rows):
                    if batch.num_rows:
                        yield _utc_batch(batch)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def persist(
        self,
        storage: SavedDatasetStorage,
        allow_overwrite: bool = False,
        timeout: int | None = None,
    ) -> None:
        """As the DuckDB store: a path ending in ``.parquet`` is one file, any other path a
        folder replaced whole; a relative path starts at the repo folder."""
        if not isinstance(storage, SavedDatasetFileStorage):
            raise TypeError("SparkAsofOfflineStore persists to SavedDatasetFileStorage (Parquet)")
        dest = Path(FileSource.get_uri_for_file_path(self._repo_path, storage.file_options.uri))
        if dest.exists() and not allow_overwrite:
            raise SavedDatasetLocationAlreadyExists(location=str(dest))
        if dest.is_file() or (dest.suffix == ".parquet" and not dest.exists()):
            write_parquet_atomically(self.to_arrow(timeout=timeout), dest)
        else:
            replace_parquet_folder(self.to_arrow(timeout=timeout), dest)


def _utc_schema(schema: pa.Schema) -> pa.Schema:
    """Spark's instants as UTC timestamps (Parquet written by Spark has them naive)."""
    return pa.schema(
        [
            pa.field(f.name, pa.timestamp("us", "UTC"), f.nullable)
            if pa.types.is_timestamp(f.type)
            else f
            for f in schema
        ]
    )


def _utc_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    target = _utc_schema(batch.schema)
    return batch if target == batch.schema else batch.cast(target)


def _to_arrow(frame: SparkDataFrame) -> pa.Table:
    """Spark's result as Arrow, timestamps as UTC instants."""
    table = frame.toArrow()
    target = _utc_schema(table.schema)
    return table if target == table.schema else table.cast(target)


# --------------------------------------------------------------------------------------------
# Entity rows


def _entity_from_spark(frame: SparkDataFrame) -> tuple[SparkDataFrame, str]:
    """A Spark entity DataFrame numbered in its own order (kept by a local checkpoint, so
    the numbers do not change when Spark recomputes it), its time column as an instant."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    types = {f.name: f.dataType for f in frame.schema.fields}
    if ENTITY_TS in types:
        ts_col = ENTITY_TS
    else:
        stamps = [
            n for n, t in types.items() if isinstance(t, T.TimestampType | T.TimestampNTZType)
        ]
        if len(stamps) != 1:
            raise EntityDataFrameError(
                f"the entity dataframe needs a timestamp column named {ENTITY_TS!r} "
                f"(found {len(stamps)} timestamp columns: {stamps})"
            )
        ts_col = stamps[0]
    kind = types[ts_col]
    if isinstance(kind, T.TimestampNTZType):
        frame = frame.withColumn(ts_col, F.to_utc_timestamp(F.col(f"`{ts_col}`"), "UTC"))
    elif not isinstance(kind, T.TimestampType):
        raise EntityDataFrameError(
            f"entity column {ts_col!r} is {kind.simpleString()}, not a timestamp; cast it "
            "with to_timestamp()"
        )
    if _ROW in types:
        raise EntityDataFrameError(f"entity column name {_ROW!r} is reserved")
    numbered = frame.withColumn(_ROW, F.monotonically_increasing_id()).localCheckpoint()
    return numbered, ts_col


# --------------------------------------------------------------------------------------------
# The store


class SparkAsofOfflineStore(OfflineStore):
    """Feast offline store: exact point-in-time joins on Spark over Parquet and Spark sources."""

    supports_filter_by_created_timestamp = True

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | pa.Table | SparkDataFrame | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        spark = session(config)
        plans = plan_views(feature_views, feature_refs, full_feature_names)
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        all_keys = sorted({e for p in plans for e, _ in p.key_pairs})
        if isinstance(entity_df, str):
            _register_tables(spark, config, feature_views)
            try:
                entity_df = spark.sql(entity_df)
            except Exception as exc:  # Spark's parse and analysis errors have no common base
                raise EntityDataFrameError(f"entity_df SQL failed on Spark: {exc}") from exc
        local: pa.Table | None = None
        if isinstance(entity_df, pd.DataFrame):
            local, ts_col = entity_table_from_frame(entity_df)
        elif isinstance(entity_df, pa.Table):
            local, ts_col = entity_table_from_arrow(entity_df)
        elif entity_df is None:
            local, ts_col = _entities_in_range(spark, config, plans, start_date, end_date)
        elif hasattr(entity_df, "sparkSession"):
            spark_entity, ts_col = _entity_from_spark(entity_df)
        else:
            raise EntityDataFrameError(f"unsupported entity_df type {type(entity_df).__name__}")

        if local is not None:
            entity_columns = list(local.column_names)
            if _ROW in entity_columns:
                raise EntityDataFrameError(f"entity column name {_ROW!r} is reserved")
            join_columns = [c for c in dict.fromkeys([*all_keys, ts_col]) if c in entity_columns]
            join_input = local.select(join_columns).append_column(
                _ROW, pa.array(np.arange(local.num_rows, dtype=np.int64))
            )
            spark_entity = _to_spark(spark, join_input)
            ts = local.column(ts_col)
            lo, hi = (pc.min(ts).as_py(), pc.max(ts).as_py()) if local.num_rows else (None, None)
        else:
            entity_columns = [c for c in spark_entity.columns if c != _ROW]
            from pyspark.sql import functions as F

            stats = spark_entity.agg(
                F.min(F.col(f"`{ts_col}`")),
                F.max(F.col(f"`{ts_col}`")),
                F.count(F.when(F.col(f"`{ts_col}`").isNull(), 1)),
            ).first()
            assert stats is not None
            if stats[2]:
                raise EntityDataFrameError(
                    f"entity column {ts_col!r} has {stats[2]} null timestamp(s); every entity "
                    "row needs a time to join features as of"
                )
            lo, hi = _utc(stats[0]), _utc(stats[1])
        clash = [out for p in plans for _, out in p.features if out in entity_columns]
        if clash:
            raise EntityDataFrameError(
                f"entity dataframe already has column(s) {clash} that features would fill; "
                "rename them or use full_feature_names=True"
            )
        bounds = (lo, hi) if lo is not None and hi is not None else None
        # Fail now, not at to_df(), on missing columns or mistyped keys.
        from pyspark.sql import types as T

        types = {f.name: f.dataType for f in spark_entity.schema.fields}
        if local is not None:  # all-null columns were sent as strings: they match nothing
            types |= {f.name: T.NullType() for f in local.schema if pa.types.is_null(f.type)}
        for plan in plans:
            _check_columns(plan, read_source(spark, config, plan.source), types)

        def frame() -> SparkDataFrame:
            from pyspark.sql import functions as F

            joined = point_in_time(
                spark, config, plans, spark_entity, ts_col, bounds, filter_by_created_timestamp
            )
            if local is not None:  # only positions and features: entity columns are local
                outs = [out for p in plans for _, out in p.features]
                return joined.select(_ROW, *[F.col(f"`{o}`") for o in outs])
            return joined.orderBy(_ROW).drop(_ROW)

        metadata = RetrievalMetadata(
            features=feature_refs,
            keys=[c for c in entity_columns if c != ts_col] or all_keys,
            min_event_timestamp=lo,
            max_event_timestamp=hi,
        )
        return SparkAsofRetrievalJob(
            spark,
            frame,
            full_feature_names,
            odfvs,
            metadata,
            entity=local,
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
        """The newest row per entity key with ``start_date <= event_ts <= end_date``, ties on
        event time broken by created time (a null created time loses)."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        spark = session(config)

        def frame() -> SparkDataFrame:
            rows = _pulled(
                spark,
                config,
                data_source,
                join_key_columns,
                feature_name_columns,
                timestamp_field,
                created_timestamp_column,
                start_date,
                end_date,
            )
            order = [F.col(f"`{timestamp_field}`").desc()]
            if created_timestamp_column:
                order.append(F.col(f"`{created_timestamp_column}`").desc_nulls_last())
            keys = [F.col(f"`{k}`") for k in join_key_columns]
            window = (Window.partitionBy(*keys) if keys else Window.partitionBy()).orderBy(*order)
            return (
                rows.withColumn("__rank", F.row_number().over(window))
                .where(F.col("__rank") == 1)
                .drop("__rank")
            )

        return SparkAsofRetrievalJob(spark, frame, repo_path=config.repo_path)

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
        spark = session(config)
        return SparkAsofRetrievalJob(
            spark,
            lambda: _pulled(
                spark,
                config,
                data_source,
                join_key_columns,
                feature_name_columns,
                timestamp_field,
                created_timestamp_column,
                start_date,
                end_date,
            ),
            repo_path=config.repo_path,
        )

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pa.Table,
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Stage pushed rows for the gate, as the DuckDB store does (offline_writes.py)."""
        source = feature_view.batch_source
        if not isinstance(source, FileSource):
            raise TypeError(
                f"feature view {feature_view.name!r}: offline pushes are staged for the gate "
                "against a FileSource (published Parquet); its source is "
                f"{type(source).__name__}"
            )
        import pyarrow.dataset as ds

        path = _resolved_path(config, source.file_options.uri)
        schema = ds.dataset(path, format="parquet").schema
        stage_push(data_folder(config), config.project, feature_view.name, path, table, schema)
        if progress:
            progress(table.num_rows)


def _utc(value: datetime | None) -> datetime | None:
    """Spark returns instants as naive datetimes in the session's zone (UTC here)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _to_spark(spark: SparkSession, table: pa.Table) -> SparkDataFrame:
    """An Arrow table as a Spark DataFrame; an all-null column (Arrow's null type) becomes a
    null string column (it matches nothing either way)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_null(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()))
    return spark.createDataFrame(table)


def _pulled(
    spark: SparkSession,
    config: RepoConfig,
    data_source: DataSource,
    keys: list[str],
    features: list[str],
    timestamp_field: str,
    created: str | None,
    start: datetime | None,
    end: datetime | None,
) -> SparkDataFrame:
    """A source's rows in a time range: keys, features and time columns (instants), plus
    Feast's dummy key for a view without entities."""
    from pyspark.sql import functions as F

    source = read_source(spark, config, data_source)
    times = [timestamp_field, *([created] if created else [])]
    names = list(dict.fromkeys([*keys, *features, *times]))
    cols = [_instant(source, n).alias(n) if n in times else F.col(f"`{n}`").alias(n) for n in names]
    if not keys:
        cols.append(F.lit(DUMMY_ENTITY_VAL).alias(DUMMY_ENTITY_ID))
    rows = source.select(*cols)
    ts = F.col(f"`{timestamp_field}`")
    if start is not None:
        rows = rows.where(ts >= F.lit(_as_utc(start)))
    if end is not None:
        rows = rows.where(ts <= F.lit(_as_utc(end)))
    return rows


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _register_tables(spark: SparkSession, config: RepoConfig, views: list[FeatureView]) -> None:
    """For ``entity_df`` as SQL: every Parquet file or folder beside a FileSource (a published
    table) and every source is a temporary view named after it, as in the DuckDB store."""
    seen: set[str] = set()
    for view in views:
        source = view.batch_source
        if not isinstance(source, FileSource):
            continue
        path = Path(_resolved_path(config, source.file_options.uri))
        candidates = {source.name: path}
        if path.parent.is_dir():
            candidates.update(
                {
                    p.stem: p
                    for p in path.parent.iterdir()
                    if (p.is_dir() or p.suffix == ".parquet") and p.name[0] not in "._"
                }
            )
        for name, file in candidates.items():
            if name and name not in seen and file.exists() and name.isidentifier():
                seen.add(name)
                read_parquet(spark, str(file.resolve())).createOrReplaceTempView(name)


def _entities_in_range(
    spark: SparkSession,
    config: RepoConfig,
    plans: list[SparkViewPlan],
    start: datetime | None,
    end: datetime | None,
) -> tuple[pa.Table, str]:
    """Retrieval by time range: every distinct (keys, event time) a requested view has."""
    names = same_join_keys(plans)
    end = end or datetime.now(UTC)
    from pyspark.sql import functions as F

    parts = []
    for plan in plans:
        rows = _pulled(
            spark,
            config,
            plan.source,
            [s for _, s in plan.key_pairs],
            [],
            plan.timestamp,
            None,
            start,
            end,
        )
        parts.append(
            rows.select(
                *[F.col(f"`{s}`").alias(e) for e, s in plan.key_pairs],
                F.col(f"`{plan.timestamp}`").alias(ENTITY_TS),
            )
        )
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    table = _to_arrow(union.distinct().orderBy(ENTITY_TS, *names))
    return entity_table_from_arrow(table)
