"""A brute-force point-in-time join: for each entity row, scan every candidate feature row.

Deliberately naive (plain Python loops, no joins, no sorting tricks) so that it is obviously
correct by reading it; the offline store is checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

MISSING = object()


@dataclass
class RefView:
    rows: pd.DataFrame
    keys: list[tuple[str, str]]  # (entity column, source column)
    features: list[tuple[str, str]]  # (source column, output column)
    ttl: timedelta | None = None
    timestamp: str = "event_timestamp"
    created: str | None = None


def _utc(value: Any) -> datetime | None:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return None
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        return None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.floor("us").to_pydatetime()  # compared at microsecond resolution, rounded down


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NA


def _same(a: Any, b: Any) -> bool:
    """Equality of key values as a database compares them: same kind and same value."""
    if _is_null(a) or _is_null(b):
        return False
    if isinstance(a, str) != isinstance(b, str):
        return False
    return bool(a == b)


def candidates(view: RefView, entity: dict, ets: datetime, filter_by_created: bool) -> list[dict]:
    """The eligible rows that share the newest (event, created) time: the possible winners."""
    best_key, best = None, []
    for row in view.rows.to_dict("records"):
        if not all(_same(entity[e], row[s]) for e, s in view.keys):
            continue
        ts = _utc(row[view.timestamp])
        if ts is None or ts > ets:
            continue
        if view.ttl is not None and view.ttl > timedelta(0) and ts < ets - view.ttl:
            continue
        created = _utc(row[view.created]) if view.created else None
        created = created or datetime.min.replace(tzinfo=UTC)
        if filter_by_created and view.created and created > ets:
            continue
        key = (ts, created)
        if best_key is None or key > best_key:
            best_key, best = key, [row]
        elif key == best_key:
            best.append(row)
    return best


def reference_join(
    entity_df: pd.DataFrame,
    views: list[RefView],
    ts_col: str = "event_timestamp",
    filter_by_created: bool = False,
) -> list[dict[str, list[Any]]]:
    """Per entity row (in input order): output column -> every value a correct join may give."""
    out = []
    for entity in entity_df.to_dict("records"):
        ets = _utc(entity[ts_col])
        row: dict[str, list[Any]] = {}
        for view in views:
            winners = candidates(view, entity, ets, filter_by_created)
            for src, name in view.features:
                row[name] = [w[src] for w in winners] if winners else [None]
        out.append(row)
    return out


def assert_matches(result: pd.DataFrame, expected: list[dict[str, list[Any]]]) -> None:
    """Every row's value is one the reference allows (nulls compared as nulls)."""
    assert len(result) == len(expected), f"{len(result)} rows out for {len(expected)} in"
    for i, allowed in enumerate(expected):
        for col, values in allowed.items():
            got = result[col].iloc[i]
            if _is_null(got):
                assert any(_is_null(v) for v in values), f"row {i} {col}: null, expected {values}"
            else:
                assert any(not _is_null(v) and v == got for v in values), (
                    f"row {i} {col}: got {got!r}, expected one of {values}"
                )
