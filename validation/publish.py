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


def publish_tables(published_dir: Path, tables: dict[str, pa.Table]) -> list[Path]:
    """Write each table to ``<published_dir>/<name>.parquet``; return the published paths."""
    published_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, table in tables.items():
            tmp = published_dir / f".{name}.{uuid.uuid4().hex}.tmp"
            pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            staged.append((tmp, published_dir / f"{name}.parquet"))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:
        os.replace(tmp, final)
    return [final for _, final in staged]
