"""What is about to be published, and the facts about it the suites check.

The gate validates row by row only the rows that would change what Feast reads: the rows of
the new table that are not, byte for byte, in the published files (``EXCEPT ALL``, so a row
arriving twice counts twice), together with every row sharing a key with them (so a changed
row that duplicates an unchanged one's key is caught). For an incremental model after one new
day that is one day of rows, not three years. A table never published, or whose columns
changed, is validated whole. Table-level facts (row count against the previous publication,
freshness, timestamps in the future) are computed over the whole new table, and drift compares
the new rows with the published rows of the days before them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestack.core.stats import finite, ks, ks_critical, psi
from validation.config import DriftRule, TableRules, null_rate_ceilings
from validation.layout import (
    by_month,
    fingerprint_sql,
    month_file,
    quote,
    stamp_fingerprints,
    usable_fingerprints,
)
from validation.tables import TableSpec


@dataclass
class Candidate:
    """One table as dbt built it, with what the gate validates of it."""

    spec: TableSpec
    rows: int  # rows of the whole new table: what would be published
    schema: pa.Schema
    batch: pa.Table  # the rows validated row by row
    changed_rows: int
    whole: bool  # True: never published before (or its columns changed): validated whole
    #: months whose published file must be rewritten (None: every month)
    months: list[str | None] | None = None
    #: per day of the new table: row count and row-hash sum (kept with the publication)
    fingerprints: pa.Table | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    drift: list[dict[str, Any]] = field(default_factory=list)
    columns: list[dict[str, Any]] = field(default_factory=list)


def _scan(files: list[Path]) -> str:
    return "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"


def prepare(
    spec: TableSpec,
    table: pa.Table,
    published: Path,
    rules: TableRules,
    now: datetime,
) -> Candidate:
    """:func:`prepare_in` for an Arrow table against a published file or table folder."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("candidate", table)
        files = sorted(published.glob("*.parquet")) if published.is_dir() else [published]
        return prepare_in(
            con, "candidate", spec, [f for f in files if f.exists()], None, rules, now
        )
    finally:
        con.close()


def prepare_in(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    spec: TableSpec,
    published: list[Path],
    published_days: pa.Table | None,
    rules: TableRules,
    now: datetime,
) -> Candidate:
    """The batch to validate, the table's profile and its drift, for one table.

    ``relation`` is the new table in ``con`` (the warehouse's, or a registered Arrow table);
    ``published`` the files of its last publication (month files, or one file);
    ``published_days`` their fingerprints as kept at that publication, if any: without them
    (or from another DuckDB version) they are computed from the files.
    """
    schema = con.sql(f"SELECT * FROM {relation} LIMIT 0").arrow().schema
    rows = con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
    ts_known = spec.event_timestamp in schema.names
    days = (
        con.sql(fingerprint_sql(relation, schema.names, spec.event_timestamp)).to_arrow_table()
        if ts_known
        else None
    )
    whole = not published or not _same_schema(schema, published[0])
    keys = [k for k in spec.primary_key if k in schema.names]
    previous = None
    months: list[str | None] | None = None
    if whole or not keys or days is None:
        # in the order it is published (month, then key): the stager splits it, no re-read
        order = [by_month(quote(spec.event_timestamp))] if ts_known else []
        order += [quote(k) for k in keys]
        by = f" ORDER BY {', '.join(order)}" if order else ""
        batch, changed = con.sql(f"SELECT * FROM {relation}{by}").to_arrow_table(), rows
        con.execute(f"CREATE OR REPLACE TEMP VIEW changed AS SELECT * FROM {relation}")
        if published:
            previous = sum(pq.read_metadata(f).num_rows for f in published)
    else:
        if not usable_fingerprints(published_days, schema):
            published_days = con.sql(
                fingerprint_sql(_scan(published), schema.names, spec.event_timestamp)
            ).to_arrow_table()
        assert published_days is not None
        previous = pc.sum(published_days.column("n")).as_py() or 0
        months = _changed_rows(con, relation, spec, schema, days, published_days, published)
        changed = con.execute("SELECT count(*) FROM changed").fetchall()[0][0]
        match = " AND ".join(f"c.{quote(k)} IS NOT DISTINCT FROM k.{quote(k)}" for k in keys)
        cols = ", ".join(quote(k) for k in keys)
        batch = con.sql(
            f"SELECT c.* FROM {relation} c WHERE EXISTS (SELECT 1 FROM "
            f"(SELECT DISTINCT {cols} FROM changed) k WHERE {match})"
        ).to_arrow_table()
    candidate = Candidate(spec, rows, schema, batch, changed, whole, months)
    if days is not None:
        candidate.fingerprints = stamp_fingerprints(days, schema)
    candidate.columns = column_rows(con, spec, rules, schema, batch)
    candidate.profile = _profile(con, relation, spec, rows, previous, now)
    if rules.drift is not None and published and not whole and changed:
        candidate.drift = _drift(con, spec, rules, published)
    return candidate


def _same_schema(schema: pa.Schema, published: Path) -> bool:
    return pq.read_schema(published).remove_metadata().equals(schema.remove_metadata())


def _type_name(dtype: pa.DataType) -> str:
    """An Arrow type as the contract sees it: a timestamp's unit and zone name (an instant is an
    instant) and a string's width do not count."""
    if pa.types.is_timestamp(dtype):
        return "timestamp with time zone" if dtype.tz else "timestamp"
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    return str(dtype)


def _month(day: Any) -> str | None:
    return day.strftime("%Y-%m") if day is not None else None


def _changed_rows(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    spec: TableSpec,
    schema: pa.Schema,
    days: pa.Table,
    published_days: pa.Table,
    published: list[Path],
) -> list[str | None]:
    """TEMP TABLE ``changed``: new rows not in the published files (``EXCEPT ALL``); returns
    the months whose files must be rewritten.

    Days are compared first by their fingerprints, and ``EXCEPT ALL`` runs only on the days
    whose fingerprint differs, reading only the published files of their months: after one
    new day, one day of rows instead of the whole history. A day whose rows were all removed
    has no new rows but still changes its month. Two different days of rows sharing a count
    and a hash sum would need a 64-bit collision.
    """
    con.register("new_days", days)
    con.register("old_days", published_days)
    differing = con.execute(
        "SELECT coalesce(a.d, b.d) AS d FROM new_days a FULL JOIN old_days b "
        "ON a.d IS NOT DISTINCT FROM b.d "
        "WHERE a.h IS DISTINCT FROM b.h OR a.n IS DISTINCT FROM b.n"
    ).fetchall()
    con.unregister("new_days")
    con.unregister("old_days")
    months = sorted({_month(d) for (d,) in differing}, key=lambda m: m or "")
    con.execute("CREATE OR REPLACE TEMP TABLE days (d DATE)")
    if differing:
        con.executemany("INSERT INTO days VALUES (?)", differing)
    wanted = {month_file(m) for m in months}
    files = [f for f in published if f.name in wanted] if len(published) > 1 else published
    day = f"CAST({quote(spec.event_timestamp)} AS DATE)"
    on_day = f"EXISTS (SELECT 1 FROM days WHERE days.d IS NOT DISTINCT FROM {day})"
    source = _scan(files) if files else f"(SELECT * FROM {relation} LIMIT 0)"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE changed AS SELECT * FROM {relation} WHERE {on_day} "
        f"EXCEPT ALL SELECT * FROM {source} WHERE {on_day}"
    )
    return months


def column_rows(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    rules: TableRules,
    schema: pa.Schema,
    batch: pa.Table,
) -> list[dict[str, Any]]:
    """Per declared column: declared (dbt yml) against built type, and the batch's null share
    against its ceiling (``null_rate_max`` blocks, ``null_rate_warn_max`` is a warning).

    The declared type is normalised by DuckDB itself (``NULL::<type>``), so aliases such as
    ``timestamptz`` and ``timestamp with time zone`` compare equal.
    """
    ceilings = null_rate_ceilings(spec, rules)
    nulls = {c: batch.column(c).null_count for c in ceilings if c in batch.column_names}
    rows = []
    for column, declared in spec.columns.items():
        try:
            expected = _type_name(con.sql(f"SELECT NULL::{declared} AS x").arrow().schema[0].type)
        except duckdb.Error:
            expected = f"unknown type {declared!r}"
        observed = _type_name(schema.field(column).type) if column in schema.names else "missing"
        ceiling, severity = ceilings.get(column, (None, None))
        rate = nulls[column] / batch.num_rows if column in nulls and batch.num_rows else None
        rows.append(
            {
                "column": column,
                "expected": expected,
                "observed": observed,
                "null_rate": rate,
                "null_rate_max": ceiling if severity == "error" else None,
                "null_rate_warn_max": ceiling if severity == "warning" else None,
            }
        )
    return rows


def _profile(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    spec: TableSpec,
    rows: int,
    previous: int | None,
    now: datetime,
) -> dict[str, Any]:
    """One row of table-level facts, validated by the profile suite."""
    newest = None
    if rows and spec.event_timestamp in con.sql(f"SELECT * FROM {relation} LIMIT 0").columns:
        newest = con.execute(
            f"SELECT max({quote(spec.event_timestamp)}) FROM {relation}"
        ).fetchall()[0][0]
    age = None
    if newest is not None:
        if newest.tzinfo is None:
            newest = newest.replace(tzinfo=UTC)
        age = (now - newest) / timedelta(hours=1)
    return {
        "table": spec.name,
        "row_count": rows,
        "previous_row_count": previous,
        "row_count_ratio": rows / previous if previous else None,
        "newest_event": newest.isoformat() if newest is not None else None,
        "newest_event_age_hours": age,
    }


def _drift(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, rules: TableRules, published: list[Path]
) -> list[dict[str, Any]]:
    """Per numeric feature: PSI and KS of the new or changed rows against the published rows of
    the ``reference_days`` before the earliest of them."""
    assert rules.drift is not None
    drift = rules.drift
    skip = {*spec.primary_key, spec.event_timestamp, *rules.drift_exclude}
    wanted = rules.drift_columns if rules.drift_columns is not None else spec.numeric_columns
    columns = [c for c in wanted if c not in skip and c in spec.numeric_columns]
    if not columns:
        return []
    ts = f"CAST({quote(spec.event_timestamp)} AS TIMESTAMPTZ)"  # any unit, as instants
    start = con.execute(f"SELECT min({ts}) FROM changed").fetchall()[0][0]
    if start is None:
        return []
    cols = ", ".join(quote(c) for c in columns)
    new = con.execute(f"SELECT {cols} FROM changed").fetchnumpy()
    reference = con.execute(
        f"SELECT {cols} FROM {_scan(published)} WHERE {ts} < $start "
        f"AND {ts} >= $start - INTERVAL {int(drift.reference_days)} DAY",
        {"start": start},
    ).fetchnumpy()
    out = []
    for c in columns:
        n, r = finite(new[c]), finite(reference[c])
        out.append(drift_row(c, n, r, drift))
    return out


def drift_row(feature: str, new: np.ndarray, reference: np.ndarray, drift: DriftRule) -> dict:
    """PSI and KS of one feature, each with the limit its sample sizes allow: PSI needs
    ``bins × min_rows_per_bin`` rows on each side (else no verdict, and a note says why); KS
    is judged against the larger of ``ks_max`` and the critical value for these sizes."""
    row: dict[str, Any] = {
        "feature": feature,
        "psi": None,
        "ks": None,
        "ks_limit": None,
        "new_rows": len(new),
        "reference_rows": len(reference),
        "note": None,
    }
    if len(new) < drift.min_rows or len(reference) < drift.min_rows:
        row["note"] = f"not compared: fewer than {drift.min_rows} rows on a side"
        return row
    row["ks"] = ks(new, reference)
    row["ks_limit"] = max(drift.ks_max, ks_critical(len(new), len(reference), drift.ks_alpha))
    needed = drift.bins * drift.min_rows_per_bin
    if min(len(new), len(reference)) >= needed:
        row["psi"] = psi(new, reference, drift.bins)
    else:
        row["note"] = (
            f"PSI not judged: {min(len(new), len(reference))} rows, {needed} needed for "
            f"{drift.bins} bins of {drift.min_rows_per_bin} (gate.yml drift.min_rows_per_bin)"
        )
    return row
