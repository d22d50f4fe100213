"""Great Expectations suites for published tables: from the dbt manifest, plus gate.yml.

Four suites per table; the rows suite on the table's batch (validation/prescreen.py decides
which rows it needs to see), the other three on facts frames that hold every table's rows, so
that one Checkpoint per kind validates all tables (each expectation scoped to its table):

* **columns** (one row per declared column): the built type equals the dbt ``data_type``; the
  batch's null share stays under the declared ceiling;
* **rows** (the batch of new or changed rows, validation/batch.py): the exact column set, keys
  not null and unique, labels not null, finiteness of every float, dbt's accepted values and the
  declared value ranges;
* **profile** (one row of table-level facts): not empty, row count against the previous
  publication, newest event not in the future and not older than the freshness limit;
* **drift** (one row per numeric feature): PSI and KS against the last published rows.

Great Expectations lets some bad data through on its own: an empty table passes ``not_null``
and ``unique``, and NaN passes ``between``. The profile's row count closes the first hole;
finiteness is checked on nullable ``Float64`` columns (read from Arrow, where NULL stays
``<NA>`` but NaN stays NaN, so ``between`` flags NaN and ±inf and skips NULL).
Every expectation carries ``meta.severity`` (error or warning) and ``meta.why``.
"""

from __future__ import annotations

from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe

from validation.config import TableRules
from validation.tables import TableSpec

#: Largest finite double: `between(-MAX, MAX)` is exactly "finite".
MAX_FINITE = 1.7976931348623157e308


def _meta(why: str, severity: str = "error") -> dict[str, Any]:
    return {"why": why, "severity": severity}


def _scoped(table: str, expectations: list[Any]) -> list[Any]:
    """Expectations about one table's rows of a facts frame shared by every table.

    The columns, profile and drift facts of all tables are validated in one Checkpoint per
    kind (a Checkpoint costs ≈ 35 ms before any expectation runs); each table's expectations
    see only its rows (``row_condition``) and say whose they are (``meta.table``).
    """
    from great_expectations.expectations.row_conditions import Column

    for exp in expectations:
        exp.row_condition = Column("table") == table
        exp.meta = {**(exp.meta or {}), "table": table}
    return expectations


def combine(name: str, suites: list[gx.ExpectationSuite]) -> gx.ExpectationSuite:
    """One suite for one Checkpoint over several tables' facts: expectations that differ only
    by the table they are scoped to are merged into one over all those tables (a Great
    Expectations expectation costs a few ms however few rows it sees), so six tables with
    the default rules cost what one does. A merged expectation has ``meta.tables``; the
    gate attributes its unexpected rows to their tables."""
    import copy
    import json

    from great_expectations.expectations.row_conditions import Column

    groups: dict[str, tuple[Any, list[str]]] = {}
    for suite in suites:
        for exp in suite.expectations:
            config = exp.configuration
            kwargs = {k: v for k, v in config.kwargs.items() if k != "row_condition"}
            meta = {k: v for k, v in (config.meta or {}).items() if k != "table"}
            key = json.dumps([config.type, kwargs, meta], sort_keys=True, default=str)
            groups.setdefault(key, (exp, []))[1].append((exp.meta or {})["table"])
    merged = []
    for exp, tables in groups.values():
        one = copy.copy(exp)
        if len(tables) > 1:
            one.row_condition = Column("table").is_in(tables)
            one.meta = {k: v for k, v in exp.meta.items() if k != "table"} | {"tables": tables}
        merged.append(one)
    return gx.ExpectationSuite(name=name, expectations=merged)


def build_suite(
    table: TableSpec,
    rules: TableRules | None = None,
    accepted: dict[str, list[Any]] | None = None,
) -> gx.ExpectationSuite:
    """The row-level expectations every published row must meet before Feast may see it."""
    rules = rules or TableRules()
    keys = list(table.primary_key)
    expectations: list = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(table.columns), exact_match=True, meta=_meta("the dbt contract")
        ),
    ]
    for key in keys:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=key, meta=_meta("a key")))
    if len(keys) == 1:
        expectations.append(
            gxe.ExpectColumnValuesToBeUnique(column=keys[0], meta=_meta("the primary key"))
        )
    elif keys:
        expectations.append(
            gxe.ExpectCompoundColumnsToBeUnique(column_list=keys, meta=_meta("the primary key"))
        )
    for col in table.label_columns:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=col, meta=_meta("a label")))
    ranged = {
        col
        for col, rule in rules.columns.items()
        if rule.min is not None and rule.max is not None and rule.severity == "error"
    }
    for col in table.float_columns:
        if col in ranged:  # its declared range rejects NaN and ±inf already (one check, not two)
            continue
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=col,
                min_value=-MAX_FINITE,
                max_value=MAX_FINITE,
                meta=_meta("finite where not null (NaN and ±inf are rejected)"),
            )
        )
    for col, values in (accepted or {}).items():
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=col, value_set=values, meta=_meta("dbt accepted_values")
            )
        )
    for col, rule in rules.columns.items():
        if rule.min is not None or rule.max is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col,
                    min_value=rule.min,
                    max_value=rule.max,
                    strict_min=rule.strict,
                    strict_max=rule.strict,
                    meta=_meta("declared range (gate.yml)", rule.severity),
                )
            )
    return gx.ExpectationSuite(name=f"{table.name}_rows", expectations=expectations)


def build_columns_suite(table: TableSpec) -> gx.ExpectationSuite:
    """Per column (validation/batch.py ``column_rows``): the built type equals the dbt
    ``data_type``, and the share of nulls in the batch stays under its ceiling.

    One row per declared column, so a failure names the column with its observed and expected
    values. Great Expectations' own type expectations misread pandas' nullable dtypes
    (``Float64`` is reported as ``float64`` and fails), so types are compared as data; and one
    pair expectation over all columns costs what one per column would cost per column.
    """
    pair = gxe.ExpectColumnPairValuesAToBeGreaterThanB
    return gx.ExpectationSuite(
        name=f"{table.name}_columns",
        expectations=_scoped(
            table.name,
            [
                gxe.ExpectColumnPairValuesToBeEqual(
                    column_A="observed", column_B="expected", meta=_meta("the dbt data_type")
                ),
                pair(
                    column_A="null_rate_max",
                    column_B="null_rate",
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",
                    meta=_meta("null share of the batch under its ceiling (gate.yml)"),
                ),
                pair(
                    column_A="null_rate_warn_max",
                    column_B="null_rate",
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",
                    meta=_meta("null share of the batch under its ceiling (gate.yml)", "warning"),
                ),
            ],
        ),
    )


def build_profile_suite(table: TableSpec, rules: TableRules) -> gx.ExpectationSuite:
    """Table-level facts (validation/batch.py ``_profile``), one row per table."""
    expectations: list = [
        gxe.ExpectColumnValuesToBeBetween(
            column="row_count", min_value=1, meta=_meta("an empty table is never published")
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="newest_event_age_hours",
            min_value=0,
            max_value=rules.freshness_max_age_hours,
            meta=_meta(
                "no event time in the future"
                + (
                    f"; newest at most {rules.freshness_max_age_hours:g} h old (gate.yml). "
                    "Data that ends in the past is history: build, gate and train as of its "
                    "end with `featurestack run --as-of YYYY-MM-DD`, then move to daily runs "
                    "(`featurestack backfill --from … --to …` replays the days between)"
                    if rules.freshness_max_age_hours
                    else ""
                )
            ),
        ),
    ]
    if rules.row_count_min_ratio is not None or rules.row_count_max_ratio is not None:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="row_count_ratio",
                min_value=rules.row_count_min_ratio,
                max_value=rules.row_count_max_ratio,
                meta=_meta("rows now / rows at the previous publication (gate.yml)"),
            )
        )
    return gx.ExpectationSuite(
        name=f"{table.name}_profile", expectations=_scoped(table.name, expectations)
    )


def build_drift_suite(table: TableSpec, rules: TableRules) -> gx.ExpectationSuite | None:
    """PSI and KS per numeric feature (validation/batch.py ``_drift``), one row per feature."""
    drift = rules.drift
    if drift is None:
        return None
    why = f"distribution drift against the last {drift.reference_days} published days"
    return gx.ExpectationSuite(
        name=f"{table.name}_drift",
        expectations=_scoped(
            table.name,
            [
                gxe.ExpectColumnValuesToBeBetween(
                    column="psi",
                    max_value=drift.psi_max,
                    meta=_meta(why + " (PSI)", drift.severity),
                ),
                # KS against its own limit per row: ks_max, or more for small samples
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="ks_limit",
                    column_B="ks",
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",
                    meta=_meta(why + " (KS, limit for the sample sizes)", drift.severity),
                ),
            ],
        ),
    )
