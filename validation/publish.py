"""Publish validated tables as the Parquet files Feast reads: month files in snapshots, swapped
in all at once.

The layout (validation/layout.py): ``current`` → ``snapshots/<id>/<table>/<YYYY-MM>.parquet``
and ``snapshots/<id>/_fingerprints/<table>.parquet``.

A table is a folder of month files, so a new day rewrites one month of each table; the months
that did not change are hard links to the previous snapshot's files (no bytes copied). A new
snapshot is staged in full under a dot-name, renamed, and only then does ``current`` move to
it (``os.replace`` of a symlink is atomic on POSIX): a reader sees the previous publication or
the new one, every table of it, never a mix or a partial file. Readers that resolve ``current``
once (the offline store does) keep reading a consistent snapshot while the next is swapped in:
the last ``KEEP`` snapshots stay on disk.

The fingerprints are the gate's own record of what it published (computed in the warehouse
when it read the table), so the next run compares days without reading the published files.

Row groups are capped at ``ROW_GROUP_ROWS`` (DuckDB's own default): readers such as the
materialization pull decode a row group at a time per thread, so their memory stays bounded
however large a table grows.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from validation.layout import (
    CURRENT,
    EMPTY,
    FINGERPRINTS,
    SNAPSHOTS,
    by_month,
    current_snapshot,
    fingerprint_sql,
    month_file,
    split_months,
    stamp_fingerprints,
    table_files,
)

ROW_GROUP_ROWS = 122_880
#: snapshots kept on disk (the current one included), for readers still on an older one
KEEP = 3
#: a staging folder older than this was left by a run that died; it is removed
STALE_STAGING_SECONDS = 3600


class Publication:
    """A snapshot being staged: each table's changed months written, the others linked.

    Nothing a reader opens changes until :meth:`commit`; :meth:`discard` removes the staging.
    Tables are staged from one worker thread while the gate validates (the writes run in
    DuckDB or Arrow, outside the GIL).
    """

    def __init__(self, published_dir: Path, run_id: str | None = None) -> None:
        self.published_dir = published_dir
        self.run_id = run_id or uuid.uuid4().hex
        # One publication at a time, held until commit or discard: the lock dies with its
        # process, so whatever a killed run left (staging, a snapshot never swapped in, a link
        # never renamed) is known to be an orphan here and removed.
        (published_dir / SNAPSHOTS).mkdir(parents=True, exist_ok=True)
        self._lock = open(published_dir / LOCK, "a")  # noqa: SIM115 (held across methods)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.previous = current_snapshot(published_dir)
        remove_orphans(published_dir, self.previous)
        self.staging = published_dir / SNAPSHOTS / f".staging-{self.run_id}"
        self.staging.mkdir(parents=True)
        (self.staging / FINGERPRINTS).mkdir()
        self.tables: list[str] = []

    def stage(
        self,
        name: str,
        rewritten: list[str | None] | None,
        present: set[str | None],
        write: Callable[[str | None, Path], None],
        fingerprints: pa.Table,
        schema: pa.Schema,
    ) -> None:
        """Stage a table: ``write(month, path)`` writes each month in ``rewritten`` (None: all)
        that has rows (``present``); the other months are linked from the previous snapshot.

        A month in ``rewritten`` without rows now (all its rows removed) is neither written
        nor linked.
        """
        folder = self.staging / name
        folder.mkdir()
        for month in sorted(present if rewritten is None else present & set(rewritten), key=str):
            write(month, folder / month_file(month))  # the staging folder is nobody's yet
        if rewritten is not None and self.previous is not None:
            skip = {month_file(m) for m in rewritten} | {EMPTY}
            for old in table_files(self.previous / name):
                if old.name not in skip:
                    os.link(old, folder / old.name)
        if not table_files(folder):
            write_parquet(schema.empty_table(), folder / EMPTY)
        pq.write_table(fingerprints, self.staging / FINGERPRINTS / f"{name}.parquet")
        self.tables.append(name)

    def commit(self) -> list[Path]:
        """Make the staged snapshot the one readers see; return each table's folder.

        Tables published before but not staged now (e.g. a model no longer tagged) are carried
        over, so a reader of them is never left without files.
        """
        if self.previous is not None:
            for old in self.previous.iterdir():
                if old.is_dir() and not (self.staging / old.name).exists():
                    shutil.copytree(old, self.staging / old.name, copy_function=os.link)
        final = self.staging.parent / self.run_id
        os.rename(self.staging, final)
        current = self.published_dir / CURRENT
        if current.is_dir() and not current.is_symlink():  # a copied folder: keep it aside
            os.rename(current, self.staging.parent / f"copied-{self.run_id}")
        link = self.published_dir / f".{CURRENT}-{self.run_id}"
        link.symlink_to(Path(SNAPSHOTS) / self.run_id)
        os.replace(link, self.published_dir / CURRENT)
        prune(self.published_dir)
        self._release()
        return [self.published_dir / CURRENT / name for name in self.tables]

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


#: the publication lock (flock), beside ``current``
LOCK = ".publish.lock"


def remove_orphans(published_dir: Path, current: Path | None) -> list[Path]:
    """What a publication killed half-way left; call with the publication lock held. Its
    staging folders, ``.current-*`` links never renamed over ``current``, and snapshots made
    after the current one but never swapped in."""
    root = published_dir / SNAPSHOTS
    removed = [*root.glob(".staging-*"), *published_dir.glob(f".{CURRENT}-*")]
    if current is not None:
        newest = current.stat().st_mtime
        removed += [
            p
            for p in root.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and p != current
            and p.stat().st_mtime > newest
        ]
    for path in removed:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return removed


def write_parquet(table: pa.Table, path: Path) -> None:
    """zstd, with dictionary encoding for text only: a dictionary of nearly distinct floats
    is pure cost (measured on bench/gate.py's largest table: written in 0.24 s instead of
    0.39 s, 26.7 MB instead of 30.7 MB, read no slower)."""
    text = [
        f.name
        for f in table.schema
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    pq.write_table(
        table,
        path,
        compression="zstd",
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=text or False,
    )


def prune(published_dir: Path, keep: int = KEEP) -> None:
    """Remove snapshots beyond the newest ``keep`` (never the current one) and staging left
    by runs that died."""
    root = published_dir / SNAPSHOTS
    current = current_snapshot(published_dir)
    snapshots = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in snapshots[keep:]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)
    for staging in root.glob(".staging-*"):
        if time.time() - staging.stat().st_mtime > STALE_STAGING_SECONDS:
            shutil.rmtree(staging, ignore_errors=True)


def publish_tables(
    published_dir: Path, tables: dict[str, pa.Table], event_timestamp: str = "event_timestamp"
) -> list[Path]:
    """Publish whole tables (outside the gate: demos, tests): every month written."""
    import duckdb

    publication = Publication(published_dir)
    try:
        for name, table in tables.items():
            con = duckdb.connect()
            try:
                con.execute("SET TimeZone = 'UTC'")
                con.register("t", table)
                ts = '"' + event_timestamp.replace('"', '""') + '"'
                ordered = con.sql(f"SELECT * FROM t ORDER BY {by_month(ts)}").to_arrow_table()
                days = con.sql(fingerprint_sql("t", table.column_names, event_timestamp))
                fingerprints = stamp_fingerprints(days.to_arrow_table(), table.schema)
            finally:
                con.close()
            months = split_months(ordered, event_timestamp)
            publication.stage(
                name,
                None,
                set(months),
                lambda month, path, months=months: write_parquet(months[month], path),  # type: ignore[misc]
                fingerprints,
                table.schema,
            )
        return publication.commit()
    except BaseException:
        publication.discard()
        raise
