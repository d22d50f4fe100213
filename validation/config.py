"""The gate's declared rules (the project's ``gate.yml``): what dbt's contracts cannot say.

dbt's manifest gives each published table its columns, types, key and accepted values; this file
adds value ranges, null-rate ceilings, row-count bounds against the previous publication,
freshness and distribution drift, each with a severity. Rules naming a table or column the
manifest does not have are refused, so the file cannot drift from the models unnoticed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurestack.core.errors import UsageError
from featurestack.core.project import find_project
from validation.tables import TableSpec

Severity = Literal["error", "warning"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnRule(_Strict):
    """Bounds on one column's values (nulls are governed by ``null_rate_max``)."""

    min: float | None = None
    max: float | None = None
    #: exclusive bounds (e.g. a price must be > 0)
    strict: bool = False
    null_rate_max: float | None = Field(default=None, ge=0, le=1)
    severity: Severity = "error"


class DriftRule(_Strict):
    """New or changed rows against the last published rows of the ``reference_days`` before."""

    psi_max: float = 0.25
    ks_max: float = 0.3
    bins: int = Field(default=10, ge=2)
    reference_days: int = Field(default=90, ge=1)
    #: fewer new or reference values than this: not compared (too noisy)
    min_rows: int = Field(default=30, ge=2)
    #: PSI only with at least this many new (and reference) rows per bin: below
    #: ``bins × min_rows_per_bin`` PSI is noise and gives no verdict (the report says so)
    min_rows_per_bin: int = Field(default=10, ge=1)
    #: KS fails only above ``max(ks_max, the KS a resample of the same sizes exceeds with
    #: probability ks_alpha)``: a small batch needs a larger gap to count as drift
    ks_alpha: float = Field(default=0.01, gt=0, lt=1)
    severity: Severity = "warning"


class TableRules(_Strict):
    columns: dict[str, ColumnRule] = {}
    #: ceiling for every numeric non-key column without its own ``null_rate_max``
    null_rate_max: float | None = Field(default=None, ge=0, le=1)
    #: rows now / rows at the previous publication
    row_count_min_ratio: float | None = Field(default=None, ge=0)
    row_count_max_ratio: float | None = Field(default=None, ge=0)
    #: the newest event time may not be older than this many hours (None: not checked)
    freshness_max_age_hours: float | None = Field(default=None, gt=0)
    drift: DriftRule | None = None
    #: the numeric columns drift compares (default: every numeric non-key column) …
    drift_columns: list[str] | None = None
    #: … minus these (identifiers, counters that only grow, …)
    drift_exclude: list[str] = []


class GateConfig(_Strict):
    defaults: TableRules = TableRules()
    tables: dict[str, TableRules] = {}

    @model_validator(mode="after")
    def _no_column_rules_in_defaults(self) -> GateConfig:
        if self.defaults.columns:
            raise ValueError("defaults cannot name columns; put column rules under tables")
        return self

    def rules_for(self, table: str) -> TableRules:
        """The table's rules with the defaults filled in where the table says nothing."""
        own = self.tables.get(table, TableRules()).model_dump(exclude_unset=True)
        merged = self.defaults.model_dump()
        for key, value in own.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}  # drift: only the fields the table sets
            else:
                merged[key] = value
        return TableRules.model_validate(merged)

    def check_against(self, specs: dict[str, TableSpec]) -> None:
        """Refuse rules about tables or columns the dbt manifest does not publish."""
        problems = []
        for table, rules in self.tables.items():
            if table not in specs:
                problems.append(f"table {table!r} is not a published dbt model")
                continue
            columns = specs[table].columns
            for col in [*rules.columns, *(rules.drift_columns or []), *rules.drift_exclude]:
                if col not in columns:
                    problems.append(f"{table}.{col} is not a column of the model")
        if problems:
            raise GateRulesError(
                "the gate rules (gate.yml) do not match the dbt models: "
                + "; ".join(problems)
                + ". Fix the names in gate.yml, or remove the rules of models that are gone."
            )


class GateRulesError(UsageError):
    """The gate's rules cannot be used as written; the message names the rule and the fix."""


def load_gate_config(path: Path | None = None) -> GateConfig:
    """Parse and validate the gate's rules (default: the project's ``gate.yml``; an absent
    file means no declared rules)."""
    path = path or find_project().gate_rules
    if not path.exists():
        return GateConfig()
    try:
        return GateConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValueError) as err:
        raise GateRulesError(f"{path} is not valid gate rules: {err}") from None


def null_rate_ceilings(table: TableSpec, rules: TableRules) -> dict[str, tuple[float, str]]:
    """Per feature (numeric, neither key nor label): (null-rate ceiling, severity) from gate.yml;
    a ceiling of 1 or more is no rule."""
    out: dict[str, tuple[float, str]] = {}
    skip = {*table.primary_key, *table.label_columns, table.event_timestamp}
    for col in table.numeric_columns:
        if col in skip:
            continue
        own = rules.columns.get(col)
        ceiling = own.null_rate_max if own and own.null_rate_max is not None else None
        ceiling = ceiling if ceiling is not None else rules.null_rate_max
        if ceiling is not None and ceiling < 1:
            out[col] = (ceiling, own.severity if own else "error")
    return out
