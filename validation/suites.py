"""Great Expectations suites for published tables, built from their :class:`TableSpec`.

Great Expectations lets some bad data through on its own: an empty table passes
``not_null`` and ``unique``, and NaN passes ``between``. The suite closes those holes: a row
count floor, and finiteness checked on nullable ``Float64`` columns (read from Arrow, where
NULL stays ``<NA>`` but NaN stays NaN, so ``between`` flags NaN and ±inf and skips NULL).
"""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from validation.tables import TableSpec

#: Largest finite double: `between(-MAX, MAX)` is exactly "finite".
MAX_FINITE = 1.7976931348623157e308


def build_suite(table: TableSpec) -> gx.ExpectationSuite:
    """The expectations every published table must meet before Feast may see it."""
    expectations: list = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta={"why": "an empty table"}),
        gxe.ExpectTableColumnsToMatchSet(column_set=list(table.columns), exact_match=True),
    ]
    for key in table.primary_key:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=key))
    if len(table.primary_key) == 1:
        expectations.append(gxe.ExpectColumnValuesToBeUnique(column=table.primary_key[0]))
    else:
        expectations.append(
            gxe.ExpectCompoundColumnsToBeUnique(column_list=list(table.primary_key))
        )
    for col in table.label_columns:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
    for col in table.float_columns:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=col,
                min_value=-MAX_FINITE,
                max_value=MAX_FINITE,
                meta={"why": "finite where not null (NaN and ±inf are rejected)"},
            )
        )
    return gx.ExpectationSuite(name=f"{table.name}_suite", expectations=expectations)
