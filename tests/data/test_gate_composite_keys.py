"""The gate on a table keyed by two columns and the event time (store_id, product_id,
event_timestamp): uniqueness is on the whole key, changed rows are found per key tuple, and a
duplicate is named by all of its key columns."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from validation.batch import prepare
from validation.config import TableRules
from validation.gate import TableResult, Validator, audit
from validation.tables import TableSpec

SPEC = TableSpec(
    name="feat_store_product__daily",
    columns={
        "store_id": "varchar",
        "product_id": "varchar",
        "event_timestamp": "timestamp with time zone",
        "units_sold": "double",
    },
    primary_key=("store_id", "product_id", "event_timestamp"),
    event_timestamp="event_timestamp",
)
NOW = datetime(2024, 1, 4, 12, tzinfo=UTC)
DAY1, DAY2 = (
    pd.Timestamp("2024-01-01 23:59:59", tz="UTC"),
    pd.Timestamp("2024-01-02 23:59:59", tz="UTC"),
)


def good() -> pd.DataFrame:
    """Two stores sell the same product on the same day: distinct keys, not duplicates."""
    return pd.DataFrame(
        {
            "store_id": ["S1", "S1", "S2", "S1"],
            "product_id": ["P1", "P2", "P1", "P1"],
            "event_timestamp": [DAY1, DAY1, DAY1, DAY2],
            "units_sold": [3.0, 4.0, 5.0, 6.0],
        }
    )


def check(frame: pd.DataFrame, published: Path = Path("/nonexistent/never.parquet")) -> TableResult:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return audit(
        Validator(), prepare(SPEC, table, published, TableRules(), NOW), TableRules(), False
    )


def test_rows_sharing_part_of_the_key_pass() -> None:
    result = check(good())
    assert result.success, [f.describe() for f in result.failures]


def test_a_duplicate_key_tuple_is_stopped_and_named_by_every_key_column() -> None:
    frame = pd.concat([good(), good().iloc[[1]]], ignore_index=True)
    result = check(frame)
    [failure] = [
        f for f in result.failures if f.expectation == "expect_compound_columns_to_be_unique"
    ]
    assert failure.unexpected_count == 2
    assert {(r["store_id"], r["product_id"]) for r in failure.sample} == {("S1", "P2")}


def test_changed_rows_are_found_per_key_tuple(tmp_path: Path) -> None:
    published = tmp_path / "published.parquet"
    pq.write_table(pa.Table.from_pandas(good(), preserve_index=False), published)
    changed = good()
    changed.loc[1, "units_sold"] = 40.0  # (S1, P2, day 1) corrected; (S1, P1) and (S2, P1) not
    result = check(changed, published)
    assert result.success and (result.rows, result.changed_rows) == (4, 1)
