"""The published layout, shared by the gate's reads (validation/batch.py) and its writes
(validation/publish.py): where a publication lives, how a table is split into month files,
and the per-day fingerprints kept with each publication.

Layout under the published folder::

    current -> snapshots/<id>                      the publication readers see (a symlink)
    snapshots/<id>/<table>/<YYYY-MM>.parquet       one file per month of event time (UTC)
    snapshots/<id>/_fingerprints/<table>.parquet   per day: row count and row-hash sum

A day's fingerprint is its row count and the sum of its rows' 64-bit DuckDB hashes; it is
stamped with the DuckDB version and the column signature, since another version's hash (or
other columns) cannot be compared.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

CURRENT = "current"
SNAPSHOTS = "snapshots"
FINGERPRINTS = "_fingerprints"
#: the file of a table with no rows at all (a folder of no files would not read as a table)
EMPTY = "empty.parquet"


def current_snapshot(published_dir: Path) -> Path | None:
    """The snapshot readers see now (resolved once), or None before the first publication.

    ``current`` is a symlink; a plain folder there (a copy made without ``symlinks=True``)
    is read as the snapshot too, and replaced by a link at the next publication.
    """
    link = published_dir / CURRENT
    target = link.resolve()
    return target if target.is_dir() else None


def table_files(folder: Path) -> list[Path]:
    """A published table's files, in month order."""
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def by_month(column: str) -> str:
    """SQL ordering rows by month of event time (UTC) — the order tables are published in,
    so each month is one slice (:func:`split_months`); ``column`` is quoted SQL."""
    return f"date_trunc('month', CAST({column} AS TIMESTAMPTZ))"


def month_file(month: str | None) -> str:
    return f"{month}.parquet" if month else "unknown.parquet"


def split_months(table: pa.Table, event_timestamp: str) -> dict[str | None, pa.Table]:
    """Rows by month of event time (``YYYY-MM``, UTC; None: no event time); ``table`` is
    sorted by month first, so each month is one slice."""
    out: dict[str | None, pa.Table] = {}
    if not table.num_rows:
        return out
    ts = table.column(event_timestamp).combine_chunks()
    if pa.types.is_timestamp(ts.type) and ts.type.tz:  # months of UTC, whatever the zone
        ts = ts.cast(pa.timestamp(ts.type.unit, tz="UTC"))
    runs = pc.run_end_encode(pc.floor_temporal(ts, unit="month"))
    start = 0
    for end, first in zip(runs.run_ends.to_pylist(), runs.values.to_pylist(), strict=True):
        month = first.strftime("%Y-%m") if first is not None else None
        if month in out:
            raise ValueError(f"rows of {month} are not together: sort by month first")
        out[month] = table.slice(start, end - start)
        start = end
    return out


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: fingerprints from another DuckDB version (its hash may differ) are recomputed
FINGERPRINT_VERSION = f"sum(hash(row)) mod 2^64 / duckdb {duckdb.__version__}"
_VERSION_KEY = b"featurestack.fingerprints"
_COLUMNS_KEY = b"featurestack.columns"


def signature(schema: pa.Schema) -> bytes:
    return ",".join(f"{f.name}:{f.type}" for f in schema).encode()


def fingerprint_sql(relation: str, columns: list[str], event_timestamp: str) -> str:
    """Per day of event time: row count and the sum of the rows' 64-bit hashes (a repeated
    row changes both)."""
    cols = ", ".join(quote(c) for c in columns)
    day = f"CAST({quote(event_timestamp)} AS DATE)"
    return (
        f"SELECT {day} AS d, (sum(hash({cols})) % 18446744073709551616)::UBIGINT AS h, "
        f"count(*) AS n FROM {relation} GROUP BY 1"
    )


def stamp_fingerprints(days: pa.Table, schema: pa.Schema) -> pa.Table:
    """Days with what makes them comparable later: the hash's version and the columns."""
    return days.replace_schema_metadata(
        {_VERSION_KEY: FINGERPRINT_VERSION.encode(), _COLUMNS_KEY: signature(schema)}
    )


def usable_fingerprints(days: pa.Table | None, schema: pa.Schema) -> bool:
    meta = (days.schema.metadata or {}) if days is not None else {}
    return meta.get(_VERSION_KEY) == FINGERPRINT_VERSION.encode() and meta.get(
        _COLUMNS_KEY
    ) == signature(schema)
