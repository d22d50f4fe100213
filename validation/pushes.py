"""Rows pushed to the offline store, through the gate like any other rows of their table.

Feast's offline pushes (``store.push(..., to=PushMode.OFFLINE)``, ``offline_write_batch``) land
as Parquet files in ``<data>/staging/offline_push/<project>/<view>/`` (featurestack/stores/
offline_writes.py), each naming in its metadata the published table it is for
(``featurestack.source_path``: ``<data>/published/current/<table>``). A gate run:

1. lists them (:func:`collect`) and adds their rows to their table's rows as dbt built it
   (:func:`union_sql`): the gate then validates, row by row, exactly what would change, pushed
   rows included, with the table's own suites;
2. when every table passes, publishes them with the snapshot: they are in the table's month
   files, and the files themselves are kept in the snapshot under ``_pushed/<table>/``
   (:func:`record`), so every later publication adds them again (dbt never sees them; a row
   dbt later builds with the same key wins over the pushed one);
3. only after the swap removes them from staging (:func:`settle`). A run killed between the
   swap and the removal leaves files the current snapshot already holds: the next run finds
   them under ``_pushed/`` by name and only removes them, so no row is published twice.

When the gate fails, the pushes of each failing table move to ``<data>/quarantine/<run>/
offline_push/`` beside the failing batches and the report (readable, never published; move a
file back into staging to try it again); the pushes of tables that passed wait for the next run.
A push whose table the gate does not publish, or whose columns no longer match it, is
quarantined with the reason. Offline retrieval reads published snapshots only, so nothing a
push wrote is readable before it passed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow.parquet as pq
from pydantic import BaseModel

from featurestack.core.private import private_dir, private_file
from featurestack.stores.offline_writes import StagedPush, staged_pushes
from validation.layout import CURRENT, SNAPSHOTS, quote
from validation.tables import TableSpec

#: In a snapshot: the pushed files it published, per table, carried into every later snapshot.
PUSHED = "_pushed"
_SOURCE_KEY = b"featurestack.source_path"

Status = Literal["published", "already published", "waiting", "quarantined"]


class PushOutcome(BaseModel):
    """What a gate run did with one pushed file (in the gate report's ``pushes``)."""

    project: str
    view: str
    file: str
    table: str | None
    rows: int
    status: Status
    reason: str | None = None


@dataclass
class TablePushes:
    """One table's pushes for this run: new files from staging, and the files earlier
    publications accepted (the current snapshot's ``_pushed/<table>/``)."""

    table: str
    staged: list[StagedPush] = field(default_factory=list)
    carried: list[Path] = field(default_factory=list)
    #: staged files that cannot join the table, with the reason (quarantined)
    misfits: list[tuple[StagedPush, str]] = field(default_factory=list)


@dataclass
class Intake:
    """Every push a gate run considers."""

    tables: dict[str, TablePushes] = field(default_factory=dict)
    refused: list[tuple[StagedPush, str]] = field(default_factory=list)
    outcomes: list[PushOutcome] = field(default_factory=list)


def _rows(path: Path) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):
        return 0


def _outcome(
    push: StagedPush, table: str | None, status: Status, where: Path, reason: str | None = None
) -> PushOutcome:
    return PushOutcome(
        project=push.project,
        view=push.view,
        file=str(where),
        table=table,
        rows=_rows(where) if where.exists() else 0,
        status=status,
        reason=reason,
    )


def table_of(source_path: str, published_dir: Path) -> str | None:
    """The published table a push is for: ``<published>/current/<table>`` (or a snapshot's
    ``<published>/snapshots/<id>/<table>``), else None."""
    path = Path(os.path.normpath(source_path))
    if path.parent == Path(os.path.normpath(published_dir / CURRENT)):
        return path.name
    if path.parent.parent == Path(os.path.normpath(published_dir / SNAPSHOTS)):
        return path.name
    return None


def collect(
    data_dir: Path, published_dir: Path, snapshot: Path | None, specs: dict[str, TableSpec]
) -> Intake:
    """The staged pushes by table, the accepted ones to carry, and the staged files already
    published by a run that died before removing them (removed now)."""
    intake = Intake()
    carried_root = snapshot / PUSHED if snapshot is not None else None
    if carried_root is not None and carried_root.is_dir():
        for folder in sorted(p for p in carried_root.iterdir() if p.is_dir()):
            if folder.name in specs:
                files = sorted(folder.glob("*.parquet"))
                if files:
                    intake.tables[folder.name] = TablePushes(folder.name, carried=files)
    for push in staged_pushes(data_dir):
        try:
            meta = pq.read_schema(push.path).metadata or {}
        except (OSError, ValueError) as err:
            intake.refused.append((push, f"not a readable Parquet file ({err})"))
            continue
        source = meta.get(_SOURCE_KEY, b"").decode()
        table = table_of(source, published_dir)
        if table is None or table not in specs:
            intake.refused.append(
                (
                    push,
                    f"its source {source or '(none)'} is not a table the gate publishes "
                    f"({', '.join(sorted(specs))} under {published_dir / CURRENT})",
                )
            )
            continue
        tp = intake.tables.setdefault(table, TablePushes(table))
        if any(c.name == push.path.name for c in tp.carried):
            push.path.unlink(missing_ok=True)  # published by a run killed before removing it
            intake.outcomes.append(
                _outcome(push, table, "already published", carried_root / table / push.path.name)  # type: ignore[operator]
            )
            continue
        tp.staged.append(push)
    return intake


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _files(paths: list[Path]) -> str:
    return (
        "read_parquet([" + ", ".join(_literal(str(p)) for p in paths) + "], union_by_name = true)"
    )


def union_sql(
    con: duckdb.DuckDBPyConnection, relation: str, spec: TableSpec, pushes: TablePushes
) -> str | None:
    """SQL for the table's rows as dbt built them plus its pushed rows (cast to the table's
    types, in its column order); None when no pushed file fits. A carried row whose key dbt
    now builds itself is left out (the built row wins); a staged file whose columns are not
    the table's is set aside in ``pushes.misfits``."""
    shape = con.sql(f"SELECT * FROM {relation} LIMIT 0")
    columns, types = shape.columns, [str(t) for t in shape.types]
    wanted = set(columns)
    fitting = []
    for push in pushes.staged:
        names = set(pq.read_schema(push.path).names)
        if names != wanted:
            pushes.misfits.append(
                (
                    push,
                    f"its columns {sorted(names)} are not those of {spec.name} "
                    f"{sorted(wanted)} (the model changed since the push): push again",
                )
            )
        else:
            fitting.append(push)
    pushes.staged = fitting
    carried = [p for p in pushes.carried if set(pq.read_schema(p).names) == wanted]
    pushes.carried = carried
    if not fitting and not carried:
        return None
    select = ", ".join(
        f"CAST(p.{quote(c)} AS {t}) AS {quote(c)}" for c, t in zip(columns, types, strict=True)
    )
    parts = [f"SELECT * FROM {relation}"]
    if carried:
        keys = [k for k in spec.primary_key if k in wanted]
        built = ""
        if keys:
            match = " AND ".join(
                f"w.{quote(k)} = CAST(p.{quote(k)} AS {types[columns.index(k)]})" for k in keys
            )
            built = f" WHERE NOT EXISTS (SELECT 1 FROM {relation} w WHERE {match})"
        parts.append(f"SELECT {select} FROM {_files(carried)} p{built}")
    if fitting:
        parts.append(f"SELECT {select} FROM {_files([s.path for s in fitting])} p")
    return "\nUNION ALL\n".join(parts)


def _link_or_copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:  # another file system: a copy, renamed into place whole
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(dest)


def record(staging: Path, intake: Intake) -> None:
    """Put the accepted pushes (carried and new) into the staged snapshot's ``_pushed/``."""
    for tp in intake.tables.values():
        for path in [*tp.carried, *(s.path for s in tp.staged)]:
            _link_or_copy(path, staging / PUSHED / tp.table / path.name)


def _quarantine(push: StagedPush, folder: Path) -> Path:
    dest = folder / "offline_push" / push.project / push.view / push.path.name
    for owned in (folder.parent, folder, folder / "offline_push", dest.parent.parent, dest.parent):
        private_dir(owned)  # pushed rows are data: owner only
    shutil.move(str(push.path), dest)
    return private_file(dest)


def settle(
    intake: Intake,
    published: Path | None,
    failed_tables: set[str],
    quarantine_dir: Path,
    move: bool = True,
) -> list[PushOutcome]:
    """After the run: remove the pushes the new snapshot ``published`` holds, quarantine the
    failing tables' pushes, misfits and refused files, leave the rest waiting.

    ``published``: the committed snapshot (None: nothing was published). ``move``: False for a
    validation-only run (``--no-publish``), which moves nothing.
    """
    outcomes = list(intake.outcomes)

    def away(push: StagedPush, table: str | None, reason: str) -> None:
        if not move:
            outcomes.append(_outcome(push, table, "waiting", push.path, reason))
            return
        dest = _quarantine(push, quarantine_dir)
        outcomes.append(_outcome(push, table, "quarantined", dest, reason))

    for push, reason in intake.refused:
        away(push, None, reason)
    for tp in intake.tables.values():
        for push, reason in tp.misfits:
            away(push, tp.table, reason)
        for push in tp.staged:
            if published is not None:
                kept = published / PUSHED / tp.table / push.path.name
                outcome = _outcome(push, tp.table, "published", kept)
                push.path.unlink(missing_ok=True)
                outcomes.append(outcome)
            elif tp.table in failed_tables:
                away(push, tp.table, f"{tp.table} failed the gate with these rows: see the report")
            else:
                reason = "its table passed; another table failed, so nothing was published"
                outcomes.append(_outcome(push, tp.table, "waiting", push.path, reason))
    return outcomes
