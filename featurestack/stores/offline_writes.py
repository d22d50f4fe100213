"""What our offline store writes: pushed rows into a staging area for the gate, feature-service
logs into a Parquet log of their own, saved datasets; every file written atomically.

Feast writes to an offline store in two ways, and featurestack takes both without letting
anything unvalidated reach a training set:

* **Pushes** (``store.push(..., to=PushMode.OFFLINE)``, ``write_to_offline_store``, both
  ``offline_write_batch``): Feast's file store appends the rows to the source file, where the
  next retrieval reads them. Here the source is a table the gate published, and only the gate
  publishes (DESIGN.md, principle 2), so the rows are *staged*, one Parquet file per push::

      <data>/staging/offline_push/<project>/<feature view>/<ns since epoch>-<uuid>.parquet

  with the batch source's columns in its order and types, and in the file's key-value metadata
  ``featurestack.project``, ``featurestack.feature_view``, ``featurestack.source_path`` (the
  published table the rows are meant for), ``featurestack.pushed_at`` (ISO UTC) and
  ``featurestack.rows``. Names sort in push order; a file is complete once it has its name
  (written as ``.<name>.tmp`` in the same folder, then renamed), so a reader lists
  ``*.parquet`` and ignores dotfiles. Offline retrieval never reads the staging area: the rows
  become visible when a gate run has validated and published them (and removed the files).
  :func:`staged_pushes` lists them for that run.

* **Feature-service logs** (``write_logged_features``, from Feast's feature server or
  ``store.write_logged_features``): written under the service's ``FileLoggingDestination``
  path (relative: from the repo folder, as in Feast; featurestack services put it under the
  data folder, see :func:`feature_log_destination`), one folder per UTC day of the log rows::

      <destination>/<YYYY-MM-DD>/<ns since epoch>-<uuid>.parquet

  each file complete or absent. Feast reads the log back through our store
  (``retrieve_feature_service_logs``), which scans the day folders.

``<data>`` is featurestack's data folder: the offline store's ``data_path`` when configured
(relative: from the repo folder), else ``$FEATURESTACK_DATA_DIR`` (set by featurestack's
settings), else ``data`` beside the repo folder (``../data`` from ``feature_repo/``, the default).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestack.core.errors import UsageError

#: Below the data folder: where pushed rows wait for the gate.
STAGING_DIR = Path("staging") / "offline_push"
#: Below the data folder: where featurestack's feature-service logs go.
FEATURE_LOGS_DIR = Path("feature_logs")
_META = "featurestack."


def data_folder(config: Any) -> Path:
    """featurestack's data folder for a Feast repo config (see the module docstring)."""
    repo = Path(config.repo_path) if config.repo_path is not None else Path.cwd()
    configured = getattr(config.offline_store, "data_path", None)
    if configured:
        path = Path(configured)
        return path if path.is_absolute() else (repo / path).resolve()
    env = os.environ.get("FEATURESTACK_DATA_DIR")
    if env:
        return Path(env).resolve()
    return (repo.parent / "data").resolve()


def feature_log_destination(data_dir: Path, service: str) -> Any:
    """A ``FileLoggingDestination`` for a featurestack feature service: its own log under the
    data folder, ``<data>/feature_logs/<service>``."""
    from feast.infra.offline_stores.file_source import FileLoggingDestination

    return FileLoggingDestination(path=str(data_dir / FEATURE_LOGS_DIR / service))


def write_parquet_atomically(table: pa.Table, dest: Path) -> None:
    """``table`` as the Parquet file ``dest``: written beside it under a dot name, then renamed
    over it, so a reader sees no file, the old one or the new one, never half of one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def replace_parquet_folder(table: pa.Table, dest: Path) -> None:
    """``table`` as the only data of the folder ``dest`` (one ``part-0.parquet``).

    The new folder is written beside the old one and swapped in by renames: a reader sees the
    old data, the new data, or (between the two renames) no folder; never both sets of rows.
    A folder holding anything but Parquet files is not ours to replace and is refused.
    """
    if dest.is_dir():
        foreign = sorted(
            p.name for p in dest.iterdir() if not (p.is_file() and p.suffix == ".parquet")
        )
        if foreign:
            raise UsageError(
                f"saved dataset folder {dest} holds {foreign}, which are not Parquet files: "
                "choose an empty or new folder (an overwrite would delete them)"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    stage = dest.with_name(f".{dest.name}.{token}.tmp")
    old = dest.with_name(f".{dest.name}.{token}.old")
    try:
        stage.mkdir()
        pq.write_table(table, stage / "part-0.parquet")
        if dest.exists():
            dest.rename(old)
        stage.rename(dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _unique_name() -> str:
    """``<ns since epoch>-<uuid>.parquet``: sorts in write order, never collides."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex}.parquet"


# --------------------------------------------------------------------------------------------
# Pushes: staged for the gate


@dataclass(frozen=True)
class StagedPush:
    """One pushed batch waiting for the gate."""

    project: str
    view: str
    path: Path


def staging_folder(data_dir: Path, project: str, view: str) -> Path:
    return data_dir / STAGING_DIR / project / view


def conform_to_source(table: pa.Table, source_schema: pa.Schema, view: str) -> pa.Table:
    """The pushed rows with the source's columns, in its order and types; a push with other
    columns, or values that do not convert, is refused now rather than at the gate."""
    expected = [f.name for f in source_schema]
    missing = sorted(set(expected) - set(table.column_names))
    extra = sorted(set(table.column_names) - set(expected))
    if missing or extra:
        raise UsageError(
            f"rows pushed to {view!r} do not have its batch source's columns: missing "
            f"{missing}, unexpected {extra} (the source has {expected})"
        )
    table = table.select(expected)
    target = pa.schema(list(source_schema))  # without the file's pandas metadata
    if table.schema.remove_metadata() == target:
        return table
    columns = []
    for field in target:
        column = table.column(field.name)
        try:
            columns.append(column.cast(field.type) if column.type != field.type else column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise UsageError(
                f"column {field.name!r} pushed to {view!r} is {column.type}, the source has "
                f"{field.type}, and it does not convert: {err}"
            ) from err
    return pa.table(columns, schema=target)


def stage_push(
    data_dir: Path,
    project: str,
    view: str,
    source_path: str,
    table: pa.Table,
    source_schema: pa.Schema,
) -> Path:
    """Write one pushed batch into the staging area (see the module docstring); its path."""
    table = conform_to_source(table, source_schema, view)
    meta = {
        "project": project,
        "feature_view": view,
        "source_path": source_path,
        "pushed_at": datetime.now(UTC).isoformat(),
        "rows": str(table.num_rows),
    }
    table = table.replace_schema_metadata({f"{_META}{k}": v for k, v in meta.items()})
    dest = staging_folder(data_dir, project, view) / _unique_name()
    write_parquet_atomically(table, dest)
    return dest


def staged_pushes(data_dir: Path, project: str | None = None) -> list[StagedPush]:
    """Every complete staged push (of one project, or all), by view, oldest first."""
    root = data_dir / STAGING_DIR
    if not root.is_dir():
        return []
    found = []
    for project_dir in sorted(root.iterdir()):
        if project is not None and project_dir.name != project:
            continue
        for file in sorted(project_dir.glob("*/*.parquet")):
            if not file.name.startswith("."):
                found.append(StagedPush(project_dir.name, file.parent.name, file))
    return sorted(found, key=lambda s: (s.project, s.view, s.path.name))


# --------------------------------------------------------------------------------------------
# Feature-service logs


def _log_days(table: pa.Table, date_field: str, timestamp_field: str) -> pa.Array:
    """Each log row's UTC day as ``YYYY-MM-DD``: its date column, else its log timestamp."""
    if date_field in table.column_names and not table.column(date_field).null_count:
        dates = table.column(date_field)
    else:
        stamps = pc.cast(table.column(timestamp_field), pa.timestamp("us", "UTC"))
        dates = pc.cast(pc.cast(stamps, pa.timestamp("us")), pa.date32())
    return pc.strftime(pc.cast(dates, pa.timestamp("s")), format="%Y-%m-%d")


def write_feature_log(
    root: Path, table: pa.Table, date_field: str, timestamp_field: str
) -> list[Path]:
    """Append log rows to the log at ``root``: one new file per UTC day they fall on."""
    if table.num_rows == 0:
        return []
    days = _log_days(table, date_field, timestamp_field)
    written = []
    for day in sorted(pc.unique(days).to_pylist()):
        part = table.filter(pc.equal(days, day))
        dest = root / day / _unique_name()
        write_parquet_atomically(part, dest)
        written.append(dest)
    return written
