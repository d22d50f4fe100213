"""Publish validated tables as the Parquet files Feast reads, atomically.

Each file is written in full under a temporary name in the same folder and then renamed over
the old one (``os.replace`` is atomic on POSIX), so a reader opens either the previous file or
the new one, never a partial file. All files are staged before the first rename, so a failure
while writing leaves every published file as it was.

Row groups are capped at ``ROW_GROUP_ROWS`` (DuckDB's own default): readers such as the
materialization pull decode a row group at a time per thread, so their memory stays bounded
however large a table grows (pyarrow's default, 1Mi rows, costs ≈ 100 MB per thread at 12
columns).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 122_880


Staged = list[tuple[Path, Path]]


def stage_tables(published_dir: Path, tables: dict[str, pa.Table]) -> Staged:
    """Write each table in full under a temporary name next to its published file.

    Nothing a reader opens changes until :func:`commit`; the gate stages while it validates
    (Arrow writes outside the GIL) and commits only if every table passed.
    """
    published_dir.mkdir(parents=True, exist_ok=True)
    staged: Staged = []
    try:
        for name, table in tables.items():
            tmp = published_dir / f".{name}.{uuid.uuid4().hex}.tmp"
            staged.append((tmp, published_dir / f"{name}.parquet"))
            pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    except BaseException:
        discard(staged)
        raise
    return staged


def commit(staged: Staged) -> list[Path]:
    """Rename every staged file over its published file (each rename atomic)."""
    for tmp, final in staged:
        os.replace(tmp, final)
    return [final for _, final in staged]


def discard(staged: Staged) -> None:
    for tmp, _ in staged:
        tmp.unlink(missing_ok=True)


def publish_tables(published_dir: Path, tables: dict[str, pa.Table]) -> list[Path]:
    """Write each table to ``<published_dir>/<name>.parquet``; return the published paths."""
    return commit(stage_tables(published_dir, tables))
