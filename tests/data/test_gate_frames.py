"""The gate on good and bad frames: each kind of bad data must be stopped, and named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from validation.gate import TableResult, to_validation_frame, validate_frames
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
)


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


def check(frame: pd.DataFrame, **arrow_columns: pa.Array) -> TableResult:
    """Validate through Arrow, as the gate reads the warehouse (NULL and NaN stay distinct)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name, values in arrow_columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    converted = to_validation_frame(table)
    (result,) = validate_frames({SPEC.name: converted}, {SPEC.name: SPEC})
    return result


def failed(result: TableResult) -> dict[tuple[str, str | None], object]:
    return {(f.expectation, f.column): f for f in result.failures}


def test_good_frame_passes_with_nulls_in_features() -> None:
    result = check(good())
    assert result.success, [f.describe() for f in result.failures]
    # rows, columns, 2 not-null keys, unique key, 2 finite features
    assert result.rows == 3 and result.evaluated == 7


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
def test_non_finite_feature_is_stopped(bad: float) -> None:
    values = pa.array([None, bad, None], type=pa.float64(), from_pandas=False)
    result = check(good(), return_1d=values)
    f = failed(result)[("expect_column_values_to_be_between", "return_1d")]
    assert f.unexpected_count == 1
    assert f.sample[0]["symbol"] == "AAA"
    assert not result.success


def test_missing_column_is_stopped_not_raised() -> None:
    result = check(good().drop(columns=["close"]))
    f = failed(result)
    assert ("expect_table_columns_to_match_set", None) in f
    assert ("expect_column_values_to_be_between", "close") in f


def test_extra_column_is_stopped() -> None:
    frame = good().assign(leak=1.0)
    assert ("expect_table_columns_to_match_set", None) in failed(check(frame))


def test_empty_table_is_stopped() -> None:
    result = check(good().iloc[0:0])
    f = failed(result)
    assert list(f) == [("expect_table_row_count_to_be_between", None)]
    assert f[("expect_table_row_count_to_be_between", None)].observed == 0


def test_missing_table_is_stopped() -> None:
    (result,) = validate_frames({}, {SPEC.name: SPEC})
    assert not result.success and result.failures[0].error == "table not in warehouse"


def test_summary_names_check_column_observed_and_keys() -> None:
    close = pa.array([10.0, np.inf, 20.0], type=pa.float64())
    text = check(good(), close=close).failures[0].describe()
    assert "expect_column_values_to_be_between on feat_demo.close" in text
    assert "1 offending row(s)" in text and "'symbol': 'AAA'" in text
