"""The rows suite's expectations as DuckDB predicates: which rows could fail them.

Great Expectations costs a few milliseconds per expectation before it looks at a row, and
converting a batch to pandas costs more than the checks themselves: validating the first
publication of bench/gate.py's 3-year data row by row took 10 s, against 0.1 s for DuckDB to
evaluate the same rules over the Arrow batch. So the gate asks DuckDB first, with predicates
derived from the suite's own expectation configurations (they cannot disagree on which rules
exist), and runs the Great Expectations suite only on the rows a predicate flags — a suite's
verdict, counts and offending keys on those rows are the same as on the whole batch, because
every row that can fail is among them (a duplicated key brings every row of its group).

A predicate may flag more rows than Great Expectations would (for example a duplicated key
with a null part); Great Expectations then decides. It must never flag fewer: a test runs both
over the bad-input cases and random batches (tests/data/test_prescreen.py). An expectation type
without a predicate here, or a column set that does not match, sends the whole batch to Great
Expectations, as before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _between(column: str, kwargs: dict[str, Any], is_float: bool) -> str:
    col = _q(column)
    inside = []
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None:
        inside.append(f"{col} {'>' if kwargs.get('strict_min') else '>='} {_literal(low)}")
    if high is not None:
        inside.append(f"{col} {'<' if kwargs.get('strict_max') else '<='} {_literal(high)}")
    # DuckDB orders NaN above every number, but say it: NaN is never inside a range.
    outside = f"NOT ({' AND '.join(inside) or 'TRUE'})"
    if is_float:
        outside = f"({outside} OR isnan({col}))"
    return f"({col} IS NOT NULL AND {outside})"


@dataclass
class Screen:
    """What DuckDB found: the rows Great Expectations must see, or the whole batch."""

    #: None: validate the whole batch (a structural problem, or a rule DuckDB cannot judge)
    rows: pa.Table | None
    #: expectation type → rows flagged (for the report and the tests)
    flagged: dict[str, int]

    @property
    def clean(self) -> bool:
        return self.rows is not None and self.rows.num_rows == 0


def screen(batch: pa.Table, expectations: list[Any]) -> Screen:
    """The rows of ``batch`` that any of the rows suite's ``expectations`` could fail on."""
    columns = set(batch.column_names)
    floats = {f.name for f in batch.schema if pa.types.is_floating(f.type)}
    numbers = {
        f.name
        for f in batch.schema
        if pa.types.is_integer(f.type)
        or pa.types.is_floating(f.type)
        or pa.types.is_decimal(f.type)
    }
    whole = Screen(None, {})
    predicates: list[tuple[str, str]] = []
    partitions: list[tuple[str, list[str]]] = []
    for exp in expectations:
        config = exp.configuration
        kind, kwargs = config.type, config.kwargs
        if kind == "expect_table_columns_to_match_set":
            wanted = set(kwargs["column_set"])
            exact = kwargs.get("exact_match", True)
            if not wanted <= columns or (exact and wanted != columns):
                return whole
            continue
        needed = [kwargs["column"]] if "column" in kwargs else list(kwargs.get("column_list", []))
        if not needed or not set(needed) <= columns:
            return whole
        column = needed[0]
        if kind == "expect_column_values_to_not_be_null":
            predicates.append((kind, f"{_q(column)} IS NULL"))
        elif kind == "expect_column_values_to_be_between" and column in numbers:
            predicates.append((kind, _between(column, kwargs, column in floats)))
        elif kind == "expect_column_values_to_be_in_set":
            values = ", ".join(_literal(v) for v in kwargs["value_set"])
            predicates.append(
                (kind, f"({_q(column)} IS NOT NULL AND {_q(column)} NOT IN ({values}))")
            )
        elif kind in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
            partitions.append((kind, needed))
        else:  # a rule DuckDB cannot judge here: Great Expectations sees every row
            return whole
    if not (predicates or partitions) or batch.num_rows == 0:
        return Screen(batch.slice(0, 0), {})
    try:
        return _flag(batch, predicates, partitions)
    except duckdb.Error:  # e.g. a set of strings against a column of numbers: GX judges it
        return whole


#: one in-memory database for every screen of the process (a new one costs ≈ 14 ms); each
#: screen has a cursor of its own
_DB: duckdb.DuckDBPyConnection | None = None
_DB_LOCK = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    global _DB
    with _DB_LOCK:
        if _DB is None:
            _DB = duckdb.connect()
        return _DB.cursor()


def _flag(
    batch: pa.Table, predicates: list[tuple[str, str]], partitions: list[tuple[str, list[str]]]
) -> Screen:
    """Row predicates in one scan; each uniqueness rule by a hash aggregate of the key (the
    keys seen more than once, NULLs equal as Great Expectations groups them), whose rows are
    then flagged: cheaper than a window over every row, and nothing more when no key
    repeats."""
    con = _cursor()
    try:
        con.register("batch", batch.append_column("__row", pa.array(range(batch.num_rows))))
        predicates = list(predicates)
        repeated: list[tuple[str, str]] = []
        for i, (kind, cols) in enumerate(partitions):
            keys = ", ".join(_q(c) for c in cols)
            con.execute(
                f"CREATE TEMP TABLE __dup{i} AS SELECT {keys} FROM batch "
                f"GROUP BY ALL HAVING count(*) > 1"
            )
            if con.execute(f"SELECT count(*) FROM __dup{i}").fetchall()[0][0]:
                same = " AND ".join(f"d.{_q(c)} IS NOT DISTINCT FROM batch.{_q(c)}" for c in cols)
                repeated.append((kind, f"EXISTS (SELECT 1 FROM __dup{i} d WHERE {same})"))
            else:
                repeated.append((kind, "false"))
        predicates += repeated
        flags = ", ".join(f"count(*) FILTER (WHERE {p})" for _, p in predicates)
        counts = con.execute(f"SELECT {flags} FROM batch").fetchall()[0]
        flagged: dict[str, int] = {}
        for (kind, _), n in zip(predicates, counts, strict=True):
            flagged[kind] = flagged.get(kind, 0) + int(n)
        if not any(flagged.values()):
            return Screen(batch.slice(0, 0), flagged)
        where = " OR ".join(f"({p})" for _, p in predicates if p != "false")
        rows = con.sql(f"SELECT __row FROM batch WHERE {where} ORDER BY __row").to_arrow_table()
        # the batch's own rows, types untouched (DuckDB only said which)
        return Screen(batch.take(rows.column(0)), flagged)
    finally:
        con.close()
