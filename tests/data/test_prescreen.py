"""The DuckDB prescreen never hides a failure: Great Expectations on the flagged rows reports
exactly what it reports on the whole batch (same expectations, counts and offending keys)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from validation.config import ColumnRule, TableRules
from validation.gate import Validator, to_validation_frame
from validation.prescreen import screen
from validation.suites import build_suite
from validation.tables import TableSpec

SPEC = TableSpec(
    name="feat_mixed",
    columns={
        "symbol": "varchar",
        "event_timestamp": "timestamp with time zone",
        "close": "double",
        "ret": "double",
        "volume": "bigint",
        "label": "integer",
    },
    primary_key=("symbol", "event_timestamp"),
    event_timestamp="event_timestamp",
    label_columns=("label",),
    accepted_values={"symbol": ["A", "B", "C", "D"]},
)
RULES = TableRules(
    columns={
        "close": ColumnRule(min=0, strict=True),
        "ret": ColumnRule(min=-1, max=1, severity="warning"),
        "volume": ColumnRule(min=0, max=1_000_000),
    }
)


def batch(seed: int, n: int = 400, plant: bool = True) -> pa.Table:
    """Mostly good rows with a random handful of each kind of bad value (none if not
    ``plant``)."""
    rng = np.random.default_rng(seed)
    symbols = rng.choice(["A", "B", "C", "D"], n).astype(object)
    ts = (np.datetime64("2024-01-01T21:00") + np.arange(n).astype("timedelta64[h]")).astype(
        "datetime64[us]"
    )
    close = rng.uniform(1, 100, n)
    ret = rng.normal(0, 0.02, n)
    volume = rng.integers(0, 1_000_000, n)
    label = rng.integers(0, 2, n).astype(object)
    bad = rng.random(n) if plant else np.ones(n)
    pick = lambda lo, hi: np.flatnonzero((bad >= lo) & (bad < hi))  # noqa: E731
    close[pick(0.00, 0.01)] = np.nan
    close[pick(0.01, 0.02)] = np.inf
    close[pick(0.02, 0.03)] = 0.0  # strict minimum
    ret[pick(0.03, 0.04)] = 5.0
    ret[pick(0.04, 0.05)] = -np.inf
    volume[pick(0.05, 0.06)] = -1
    symbols[pick(0.06, 0.07)] = "ZZZ"
    symbols[pick(0.07, 0.08)] = None
    label[pick(0.08, 0.09)] = None
    dup = pick(0.09, 0.11)
    symbols[dup], ts[dup] = "A", ts[0]
    close_mask = np.zeros(n, bool)
    close_mask[pick(0.11, 0.12)] = True  # nulls in a feature are allowed
    return pa.table(
        {
            "symbol": pa.array(symbols, pa.string()),
            "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "close": pa.array(close, pa.float64(), mask=close_mask),
            "ret": pa.array(ret, pa.float64()),
            "volume": pa.array(volume, pa.int64()),
            "label": pa.array(label, pa.int32()),
        }
    )


def outcome(name: str, table: pa.Table) -> dict:
    suite = build_suite(SPEC, RULES, SPEC.accepted_values)
    _, failures = Validator().validate(
        SPEC.name, name, to_validation_frame(table), suite, list(SPEC.primary_key)
    )
    return {(f.expectation, f.column): (f.unexpected_count, f.sample, f.severity) for f in failures}


@pytest.mark.parametrize("seed", range(6))
def test_flagged_rows_fail_exactly_as_the_whole_batch(seed: int) -> None:
    table = batch(seed)
    whole = outcome("whole", table)
    screened = screen(table, build_suite(SPEC, RULES, SPEC.accepted_values).expectations)
    assert screened.rows is not None and 0 < screened.rows.num_rows < table.num_rows
    assert outcome("screened", screened.rows) == whole
    # every kind of bad value was planted, and each was found
    assert {k for k, _ in whole} >= {
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_null",
        "expect_compound_columns_to_be_unique",
    }


def test_a_clean_batch_needs_no_great_expectations() -> None:
    rules = build_suite(SPEC, RULES, SPEC.accepted_values).expectations
    for seed in range(5):
        clean = batch(seed, n=2000, plant=False)
        result = screen(clean, rules)
        assert result.clean and not any(result.flagged.values()), result.flagged
    assert screen(batch(0).slice(0, 0), rules).clean


@pytest.mark.parametrize(
    "change",
    ["drop_column", "retype_close", "extra_column"],
)
def test_structural_problems_send_the_whole_batch(change: str) -> None:
    table = batch(2)
    if change == "drop_column":
        table = table.drop_columns(["close"])
    elif change == "retype_close":
        table = table.set_column(2, "close", table.column("close").cast(pa.string()))
    else:
        table = table.append_column("leak", pa.array(np.ones(table.num_rows)))
    result = screen(table, build_suite(SPEC, RULES, SPEC.accepted_values).expectations)
    assert result.rows is None
