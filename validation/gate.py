"""The gate: validate what dbt built, and publish it for Feast only if every table passes.

Write–audit–publish: dbt writes into the warehouse (which Feast never reads), the gate audits
each publishable table with Great Expectations, and only when all of them pass are the Parquet
files Feast reads replaced. Features and labels are published together or not at all, so a
training set never mixes a new feature table with an old label table. The exact Arrow table
that was validated is the one written, so nothing can change between audit and publish.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from featurestack.settings import DBT_PROJECT_DIR, Settings
from validation.publish import publish_tables
from validation.tables import TableSpec, load_manifest, publishable_tables

MAX_SAMPLE_KEYS = 10


@dataclass
class Failure:
    """One failed expectation, in the words a person needs to fix it."""

    table: str
    expectation: str
    column: str | None
    observed: Any
    expected: dict[str, Any]
    unexpected_count: int | None = None
    sample: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        expected = ", ".join(f"{k}={v}" for k, v in self.expected.items()) or "-"
        lines = [f"FAILED {self.expectation} on {where}: expected {expected}"]
        if self.error:
            lines.append(f"    error: {self.error}")
        elif self.unexpected_count is not None:
            lines.append(f"    {self.unexpected_count} offending row(s)")
        if self.observed is not None:
            lines.append(f"    observed: {self.observed}")
        for row in self.sample:
            lines.append(f"    e.g. {row}")
        return "\n".join(lines)


@dataclass
class TableResult:
    table: str
    rows: int
    success: bool
    evaluated: int
    failures: list[Failure]


@dataclass
class GateResult:
    run_id: str
    success: bool
    tables: list[TableResult]
    report_path: Path | None = None
    published: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        lines = []
        for t in self.tables:
            status = "PASS" if t.success else "FAIL"
            passed = t.evaluated - len(t.failures)
            lines.append(f"{status}  {t.table}: {t.rows} rows, {passed}/{t.evaluated} checks")
            lines.extend("  " + f.describe().replace("\n", "\n  ") for f in t.failures)
        if self.success:
            lines.append(f"gate passed; published {len(self.published)} table(s)")
        else:
            lines.append("gate FAILED: nothing was published; Feast still serves the previous data")
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


def to_validation_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow → pandas keeping NULL and NaN apart (nullable dtypes), so NaN can be caught."""
    mapping = {
        pa.float64(): pd.Float64Dtype(),
        pa.float32(): pd.Float32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int8(): pd.Int8Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    return table.to_pandas(types_mapper=mapping.get)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return str(value)


def _exception_message(info: dict) -> str | None:
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    messages = [
        str(v["exception_message"])
        for v in info.values()
        if isinstance(v, dict) and v.get("exception_message")
    ]
    return "; ".join(dict.fromkeys(messages)) or None


def _failure(table: TableSpec, r: Any) -> Failure:
    cfg = r.expectation_config
    kwargs = {
        k: v
        for k, v in cfg.kwargs.items()
        if k not in ("column", "batch_id", "result_format") and v is not None
    }
    result = r.result or {}
    sample = [_jsonable(row) for row in (result.get("partial_unexpected_index_list") or [])][
        :MAX_SAMPLE_KEYS
    ]
    return Failure(
        table=table.name,
        expectation=cfg.type,
        column=cfg.kwargs.get("column"),
        observed=_jsonable(result.get("observed_value")),
        expected=_jsonable(kwargs),
        unexpected_count=result.get("unexpected_count"),
        sample=sample,
        error=_exception_message(r.exception_info or {}),
    )


def validate_frames(
    frames: dict[str, pd.DataFrame | None], specs: dict[str, TableSpec]
) -> list[TableResult]:
    """Run each table's suite on its frame; a missing frame (no such table) fails outright."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phoning home from a gate
    import great_expectations as gx  # slow to import: only when validating
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from validation.suites import build_suite

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(name="warehouse")
    results = []
    for name, spec in specs.items():
        frame = frames.get(name)
        if frame is None:
            missing = Failure(name, "table_exists", None, None, {}, error="table not in warehouse")
            results.append(TableResult(name, 0, False, 1, [missing]))
            continue
        batch = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(build_suite(spec))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{name}_gate", data=batch, suite=suite)
        )
        keys = [k for k in spec.primary_key if k in frame.columns]
        outcome = definition.run(
            batch_parameters={"dataframe": frame},
            result_format={
                "result_format": "COMPLETE" if keys else "SUMMARY",
                "unexpected_index_column_names": keys,
                "partial_unexpected_count": MAX_SAMPLE_KEYS,
            },
        )
        failures = [_failure(spec, r) for r in outcome.results if not r.success]
        results.append(TableResult(name, len(frame), not failures, len(outcome.results), failures))
    return results


def read_tables(warehouse: Path, specs: dict[str, TableSpec]) -> dict[str, pa.Table | None]:
    """Each publishable table as Arrow, sorted by its key (None if dbt did not build it)."""
    if not warehouse.exists():
        return {name: None for name in specs}
    tables: dict[str, pa.Table | None] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        present = {
            r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
        }
        for name, spec in specs.items():
            if name not in present:
                tables[name] = None
                continue
            cols = {r[0] for r in con.execute(f'describe "{name}"').fetchall()}
            order = [k for k in spec.primary_key if k in cols]
            order_by = f" order by {', '.join(order)}" if order else ""
            tables[name] = con.sql(f'select * from "{name}"{order_by}').to_arrow_table()
    return tables


def write_report(result: GateResult, reports_dir: Path) -> Path:
    """One JSON per run (kept), plus latest.json pointing at the newest."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "run_id": result.run_id,
        "success": result.success,
        "published": [str(p) for p in result.published],
        "tables": [asdict(t) for t in result.tables],
    }
    path = reports_dir / f"{result.run_id}.json"
    text = json.dumps(_jsonable(payload), indent=2)
    path.write_text(text)
    (reports_dir / "latest.json").write_text(text)
    return path


def run_gate(
    settings: Settings,
    *,
    publish: bool = True,
    manifest_path: Path | None = None,
) -> GateResult:
    """Validate every publishable table; publish them all only if all pass."""
    manifest = load_manifest(manifest_path or DBT_PROJECT_DIR / "target" / "manifest.json")
    specs = publishable_tables(manifest)
    arrow = read_tables(settings.warehouse, specs)
    frames = {n: (to_validation_frame(t) if t is not None else None) for n, t in arrow.items()}
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    table_results = validate_frames(frames, specs)
    result = GateResult(run_id, all(t.success for t in table_results), table_results)
    if result.success and publish:
        ready = {n: t for n, t in arrow.items() if t is not None}
        result.published = publish_tables(settings.published_dir, ready)
    result.report_path = write_report(result, settings.reports_dir / "gate")
    return result
