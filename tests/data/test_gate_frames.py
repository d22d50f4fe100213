"""The gate on good and bad frames: each kind of bad data must be stopped, and named.

Frames go through the gate's own path (validation/batch.py ``prepare`` → ``audit``: the rows,
profile and drift suites), with a published file when a test needs a previous publication.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from validation.batch import prepare
from validation.config import ColumnRule, DriftRule, GateConfig, TableRules
from validation.gate import TableResult, Validator, audit, validate_frames
from validation.suites import MAX_FINITE
from validation.tables import TableSpec

SPEC = TableSpec(
    name="feat_demo",
    columns={
        "symbol": "varchar",
        "event_timestamp": "timestamp with time zone",
        "close": "double",
        "return_1d": "double",
    },
    primary_key=("symbol", "event_timestamp"),
    event_timestamp="event_timestamp",
    accepted_values={"symbol": ["AAA", "BBB", "CCC"]},
)
NOW = datetime(2024, 1, 4, 12, tzinfo=UTC)
NO_FILE = Path("/nonexistent/never_published.parquet")


def good() -> pd.DataFrame:
    ts = pd.date_range("2024-01-01 21:00", periods=3, freq="D", tz="UTC")
    return pd.DataFrame(
        {
            "symbol": ["AAA", "AAA", "BBB"],
            "event_timestamp": [ts[0], ts[1], ts[0]],
            "close": [10.0, 11.0, 20.0],
            "return_1d": [None, 0.1, None],  # nulls are allowed in features
        }
    )


def arrow(frame: pd.DataFrame, **arrow_columns: pa.Array) -> pa.Table:
    """As the gate reads the warehouse: Arrow, where NULL and NaN stay distinct."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if not len(frame) and list(frame.columns) == list(SPEC.columns):  # keep the types
        table = table.cast(pa.Table.from_pandas(good(), preserve_index=False).schema)
    for name, values in arrow_columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    return table


def check(
    frame: pd.DataFrame,
    rules: TableRules | None = None,
    published: Path = NO_FILE,
    warn_only: bool = False,
    now: datetime = NOW,
    **arrow_columns: pa.Array,
) -> TableResult:
    rules = rules or TableRules()
    candidate = prepare(SPEC, arrow(frame, **arrow_columns), published, rules, now)
    return audit(Validator(), candidate, rules, warn_only)


def publish(frame: pd.DataFrame, folder: Path) -> Path:
    path = folder / "published.parquet"
    pq.write_table(arrow(frame), path)
    return path


def failed(result: TableResult) -> dict[tuple[str, str | None], object]:
    return {(f.expectation, f.column): f for f in result.failures}


def test_good_frame_passes_with_nulls_in_features() -> None:
    result = check(good())
    assert result.success, [f.describe() for f in result.failures]
    # columns suite: declared types, null rates (error, warning); rows suite: columns,
    # 2 not-null keys, unique key, 2 finite features, accepted symbols; profile suite: not
    # empty, no event in the future
    assert result.rows == 3 and result.evaluated == 12


def test_duplicate_key_is_stopped_and_the_key_named() -> None:
    frame = pd.concat([good(), good().iloc[[1]]])
    result = check(frame)
    f = failed(result)[("expect_compound_columns_to_be_unique", None)]
    assert f.unexpected_count == 2
    assert all(row["symbol"] == "AAA" for row in f.sample)


def test_null_key_is_stopped() -> None:
    frame = good()
    frame.loc[2, "symbol"] = None
    assert ("expect_column_values_to_not_be_null", "symbol") in failed(check(frame))


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("declared_range", [False, True], ids=["no range", "range"])
def test_non_finite_feature_is_stopped(bad: float, declared_range: bool) -> None:
    """Without a declared range a finiteness check stops it; with one, the range does."""
    values = pa.array([None, bad, None], type=pa.float64(), from_pandas=False)
    rules = TableRules(columns={"return_1d": ColumnRule(min=-1, max=1)}) if declared_range else None
    result = check(good(), rules, return_1d=values)
    between = [f for f in result.failures if f.column == "return_1d"]
    assert len(between) == 1 and between[0].expectation == "expect_column_values_to_be_between"
    assert between[0].expected["min_value"] == (-1 if declared_range else -MAX_FINITE)
    assert between[0].unexpected_count == 1
    assert between[0].sample[0]["symbol"] == "AAA"
    assert not result.success


def test_missing_column_is_stopped_not_raised() -> None:
    result = check(good().drop(columns=["close"]))
    f = failed(result)
    assert ("expect_table_columns_to_match_set", None) in f
    assert ("expect_column_values_to_be_between", "close") in f


def test_a_column_of_another_type_than_dbt_declares_is_stopped_and_named() -> None:
    frame = good().assign(close=lambda f: f["close"].astype(str))
    result = check(frame)
    f = failed(result)[("expect_column_pair_values_to_be_equal", None)]
    assert not result.success
    assert f.unexpected_count == 1
    assert f.sample == [{"column": "close", "observed": "string", "expected": "double"}]


def test_extra_column_is_stopped() -> None:
    frame = good().assign(leak=1.0)
    assert ("expect_table_columns_to_match_set", None) in failed(check(frame))


def test_empty_table_is_stopped() -> None:
    result = check(good().iloc[0:0])
    f = failed(result)
    assert list(f) == [("expect_column_values_to_be_between", "row_count")]
    assert f[("expect_column_values_to_be_between", "row_count")].sample == [
        {"row_count": 0, "table": "feat_demo"}
    ]


def test_value_outside_the_declared_range_is_stopped_with_its_key() -> None:
    frame = good()
    frame.loc[1, "return_1d"] = 999.0  # a price that jumped 1000x
    rules = TableRules(columns={"return_1d": ColumnRule(min=-0.95, max=10)})
    f = failed(check(frame, rules))[("expect_column_values_to_be_between", "return_1d")]
    assert f.severity == "error" and f.unexpected_count == 1
    assert f.sample == [
        {"return_1d": 999.0, "symbol": "AAA", "event_timestamp": "2024-01-02 21:00:00+00:00"}
    ]


def test_a_symbol_dbt_does_not_accept_is_stopped() -> None:
    frame = good()
    frame.loc[2, "symbol"] = "ZZZ"
    assert ("expect_column_values_to_be_in_set", "symbol") in failed(check(frame))


def test_a_feature_above_its_null_rate_ceiling_is_stopped() -> None:
    rules = TableRules(null_rate_max=0.5)
    assert check(good(), TableRules(null_rate_max=0.7)).success  # 2 of 3 return_1d are null
    result = check(good(), rules)
    f = failed(result)[("expect_column_pair_values_a_to_be_greater_than_b", None)]
    assert not result.success and f.severity == "error"
    assert f.sample == [{"column": "return_1d", "null_rate_max": 0.5, "null_rate": 2 / 3}]
    # close has no nulls; a warning-severity ceiling is reported, and blocks unless warn_only
    warn = TableRules(columns={"return_1d": ColumnRule(null_rate_max=0.5, severity="warning")})
    assert not check(good(), warn).success
    relaxed = check(good(), warn, warn_only=True)
    assert relaxed.success and [f.severity for f in relaxed.failures] == ["warning"]


def test_stale_data_and_future_timestamps_are_stopped() -> None:
    rules = TableRules(freshness_max_age_hours=48)
    newest = pd.Timestamp("2024-01-02 21:00", tz="UTC")
    assert check(good(), rules, now=newest + pd.Timedelta(hours=47)).success
    stale = check(good(), rules, now=newest + pd.Timedelta(hours=49))
    assert ("expect_column_values_to_be_between", "newest_event_age_hours") in failed(stale)
    future = check(good(), rules, now=newest - pd.Timedelta(hours=1))
    f = failed(future)[("expect_column_values_to_be_between", "newest_event_age_hours")]
    assert f.sample[0]["newest_event_age_hours"] == -1.0


def test_a_table_that_shrinks_against_the_last_publication_is_stopped(tmp_path: Path) -> None:
    published = publish(good(), tmp_path)
    rules = TableRules(row_count_min_ratio=0.9)
    result = check(good().iloc[:2], rules, published)
    f = failed(result)[("expect_column_values_to_be_between", "row_count_ratio")]
    assert f.sample[0]["row_count_ratio"] == pytest.approx(2 / 3)


def test_only_new_or_changed_rows_are_validated_row_by_row(tmp_path: Path) -> None:
    published = publish(good(), tmp_path)
    ts = pd.Timestamp("2024-01-03 21:00", tz="UTC")
    new_day = pd.DataFrame(
        {"symbol": ["AAA", "BBB"], "event_timestamp": [ts, ts], "close": [12.0, 21.0]}
    ).assign(return_1d=[0.09, 0.05])
    result = check(pd.concat([good(), new_day], ignore_index=True), published=published)
    assert result.success
    assert (result.rows, result.changed_rows, result.batch_rows) == (5, 2, 2)
    # Nothing changed: nothing to validate row by row, the table checks still run.
    same = check(good(), published=published)
    assert (same.changed_rows, same.batch_rows, same.success) == (0, 0, True)


def test_a_day_arriving_twice_is_stopped_although_its_rows_were_published(
    tmp_path: Path,
) -> None:
    published = publish(good(), tmp_path)
    twice = pd.concat([good(), good().iloc[[0, 2]]], ignore_index=True)
    result = check(twice, published=published)
    f = failed(result)[("expect_compound_columns_to_be_unique", None)]
    assert result.changed_rows == 2 and f.unexpected_count == 4


def _history(days: int, shift: float = 0.0, n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(days)
    start = pd.Timestamp("2023-10-01 21:00", tz="UTC")
    rows = [
        {
            "symbol": f"S{i}",
            "event_timestamp": start + pd.Timedelta(days=d),
            "close": 100 + rng.normal() + shift,
            "return_1d": rng.normal() * 0.01,
        }
        for d in range(days)
        for i in range(n)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("warn_only", [False, True])
def test_drift_against_the_last_publication_warns_and_blocks_unless_warn_only(
    tmp_path: Path, warn_only: bool
) -> None:
    spec_free = TableSpec(
        name=SPEC.name,
        columns=SPEC.columns,
        primary_key=SPEC.primary_key,
        event_timestamp=SPEC.event_timestamp,
    )
    history = _history(30)
    published = tmp_path / "published.parquet"
    pq.write_table(arrow(history), published)
    new_day = _history(31, shift=5.0).tail(40)  # the next day, every close 5 higher
    # 40 new rows: PSI over 10 bins is judged with 4 per bin here (the default asks for 10)
    rules = TableRules(drift=DriftRule(psi_max=0.5, ks_max=0.3, min_rows=20, min_rows_per_bin=4))
    table = arrow(pd.concat([history, new_day], ignore_index=True))
    now = new_day.event_timestamp.max() + timedelta(hours=1)
    result = audit(Validator(), prepare(spec_free, table, published, rules, now), rules, warn_only)
    drift = {d["feature"]: d for d in result.drift}
    assert drift["close"]["ks"] == 1.0 and drift["close"]["psi"] > 5
    assert drift["return_1d"]["ks"] < 0.3  # unchanged feature: no drift
    warned = failed(result)[("expect_column_pair_values_a_to_be_greater_than_b", None)]
    assert warned.severity == "warning"
    assert [(s["feature"], s["ks"]) for s in warned.sample] == [("close", 1.0)]
    assert result.success is warn_only


def test_drift_on_a_small_batch_gives_no_psi_verdict_and_a_wider_ks_limit(tmp_path: Path) -> None:
    """A daily batch of a few dozen rows is not judged by limits meant for thousands: PSI is
    not computed below bins × min_rows_per_bin rows (and the report says why), and KS fails
    only above the critical value of a resample of the same sizes."""
    spec_free = TableSpec(
        name=SPEC.name,
        columns=SPEC.columns,
        primary_key=SPEC.primary_key,
        event_timestamp=SPEC.event_timestamp,
    )
    history = _history(30, n=15)
    published = tmp_path / "published.parquet"
    pq.write_table(arrow(history), published)
    new_day = _history(31, n=15).tail(15)  # the same distribution, one more day
    rules = TableRules(drift=DriftRule(psi_max=0.6, ks_max=0.2, min_rows=10))
    table = arrow(pd.concat([history, new_day], ignore_index=True))
    now = new_day.event_timestamp.max() + timedelta(hours=1)
    result = audit(Validator(), prepare(spec_free, table, published, rules, now), rules, False)
    drift = {d["feature"]: d for d in result.drift}
    assert drift["close"]["psi"] is None and "PSI not judged: 15 rows" in drift["close"]["note"]
    assert drift["close"]["ks_limit"] > 0.2  # 15 against 450 rows: a gap of 0.2 is noise
    assert result.success, failed(result)


def test_gate_rules_naming_unknown_tables_or_columns_are_refused() -> None:
    config = GateConfig(tables={"feat_demo": TableRules(columns={"nope": ColumnRule(min=0)})})
    with pytest.raises(ValueError, match=r"feat_demo\.nope is not a column"):
        config.check_against({SPEC.name: SPEC})


def test_missing_table_is_stopped() -> None:
    (result,) = validate_frames({}, {SPEC.name: SPEC})
    assert not result.success and result.failures[0].error == "table not in warehouse"


def test_summary_names_check_column_observed_and_keys() -> None:
    close = pa.array([10.0, np.inf, 20.0], type=pa.float64())
    text = check(good(), close=close).failures[0].describe()
    assert "expect_column_values_to_be_between on feat_demo.close" in text
    assert "1 offending row(s)" in text and "'symbol': 'AAA'" in text


def test_facts_of_several_tables_share_checkpoints_and_failures_stay_with_their_table() -> None:
    """Expectations that differ only by table are merged into one over all tables; a failure
    is still reported for the table whose rows failed, with that table's values."""
    from dataclasses import replace

    from validation.gate import audit_facts
    from validation.suites import build_profile_suite, combine

    other = replace(SPEC, name="feat_other")
    rules = TableRules(null_rate_max=0.5)
    sparse = good()  # 2 of 3 return_1d null: over the 0.5 ceiling
    dense = good().assign(return_1d=[0.1, 0.2, 0.3])
    candidates = [
        prepare(SPEC, arrow(sparse), NO_FILE, rules, NOW),
        prepare(other, arrow(dense.iloc[0:0]), NO_FILE, rules, NOW),  # empty
    ]
    suites = [build_profile_suite(c.spec, rules) for c in candidates]
    merged = combine("all", suites)
    assert len(merged.expectations) == len(suites[0].expectations)  # same rules: merged
    facts = audit_facts(Validator(), candidates, {c.spec.name: rules for c in candidates})
    demo = {(f.expectation, f.column): f for f in facts["feat_demo"][1]}
    empty = {(f.expectation, f.column): f for f in facts["feat_other"][1]}
    assert set(demo) == {("expect_column_pair_values_a_to_be_greater_than_b", None)}
    assert demo[("expect_column_pair_values_a_to_be_greater_than_b", None)].sample == [
        {"column": "return_1d", "null_rate_max": 0.5, "null_rate": 2 / 3}
    ]
    assert ("expect_column_values_to_be_between", "row_count") in empty
    assert empty[("expect_column_values_to_be_between", "row_count")].sample == [
        {"row_count": 0, "table": "feat_other"}
    ]
    # each table counts its own expectations, merged or not
    assert facts["feat_demo"][0] == facts["feat_other"][0] > 0
