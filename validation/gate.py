"""The gate: validate what dbt built, and publish it for Feast only if every table passes.

Write–audit–publish: dbt writes into the warehouse (which Feast never reads), the gate audits
what each publishable table would change (validation/batch.py) with Great Expectations — a
Checkpoint per suite (rows, profile, drift; validation/suites.py) with COMPLETE results and the
table's key as ``unexpected_index_column_names`` — and only when all of them pass are the
Parquet files Feast reads replaced (validation/publish.py: a snapshot of month files, swapped in
at once). Features and labels are published together or not at all, so a training set never
mixes a new feature table with an old label table. The warehouse is held open read-only for the
whole run, so what is written is what was validated: dbt cannot change it in between.

On failure nothing is published and the failing tables' batches are kept in
``<data>/quarantine/<run>/`` with the report, to inspect, fix upstream and re-run. Every run
writes a JSON report and GX Data Docs (HTML) under ``<data>/reports/gate/``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurestack.core.faults import fault_point
from featurestack.core.private import private_dir, private_file
from featurestack.core.reports import write_atomic
from featurestack.core.reports import write_report as write_json
from featurestack.core.settings import Settings
from featurestack.core.state import record_time
from validation import pushes as pushed
from validation.batch import Candidate, prepare_in
from validation.config import GateConfig, TableRules, load_gate_config
from validation.layout import (
    FINGERPRINTS,
    SNAPSHOTS,
    by_month,
    current_snapshot,
    split_months,
    table_files,
)
from validation.prescreen import screen
from validation.publish import Publication, write_parquet
from validation.tables import TableSpec, dbt_vars, load_manifest, publishable_tables

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
    severity: str = "error"
    why: str | None = None

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        expected = ", ".join(f"{k}={v}" for k, v in self.expected.items()) or "-"
        word = "FAILED" if self.severity == "error" else "WARNING"
        why = f" ({self.why})" if self.why else ""
        lines = [f"{word} {self.expectation} on {where}: expected {expected}{why}"]
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
    #: rows validated row by row (new or changed rows and rows sharing their keys)
    batch_rows: int | None = None
    changed_rows: int | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    drift: list[dict[str, Any]] = field(default_factory=list)
    quarantined: str | None = None


@dataclass
class GateResult:
    run_id: str
    success: bool
    tables: list[TableResult]
    report_path: Path | None = None
    published: list[Path] = field(default_factory=list)
    docs_path: Path | None = None
    quarantine_dir: Path | None = None
    warn_only: bool = False
    #: what the run did with each pushed file (validation/pushes.py)
    pushes: list[pushed.PushOutcome] = field(default_factory=list)

    def summary(self) -> str:
        lines = []
        for t in self.tables:
            status = "PASS" if t.success else "FAIL"
            passed = t.evaluated - len(t.failures)
            batch = ""
            if t.batch_rows is not None and t.batch_rows != t.rows:
                batch = f" ({t.changed_rows} new or changed; {t.batch_rows} validated row by row)"
            lines.append(
                f"{status}  {t.table}: {t.rows} rows{batch}, {passed}/{t.evaluated} checks"
            )
            lines.extend("  " + f.describe().replace("\n", "\n  ") for f in t.failures)
        if self.success:
            lines.append(f"gate passed; published {len(self.published)} table(s)")
        else:
            lines.append("gate FAILED: nothing was published; Feast still serves the previous data")
            if self.quarantine_dir:
                lines.append(f"quarantined: {self.quarantine_dir} (the failing batches + report)")
        for status in ("published", "already published", "waiting", "quarantined"):
            files = [p for p in self.pushes if p.status == status]
            if files:
                rows = sum(p.rows for p in files)
                lines.append(f"offline pushes {status}: {len(files)} file(s), {rows} row(s)")
                lines.extend(f"  {p.file}: {p.reason}" for p in files if p.reason)
        if self.docs_path:
            lines.append(f"data docs: {self.docs_path}")
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
    if hasattr(value, "item") and not isinstance(value, list | tuple | dict):
        value = value.item()  # NumPy scalars → Python
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


def _failure(table: str, r: Any) -> Failure:
    cfg = r.expectation_config
    kwargs = {
        k: v
        for k, v in cfg.kwargs.items()
        if k not in ("column", "batch_id", "result_format", "row_condition", "condition_parser")
        and v is not None
    }
    result = r.result or {}
    sample = [_jsonable(row) for row in (result.get("partial_unexpected_index_list") or [])][
        :MAX_SAMPLE_KEYS
    ]
    meta = cfg.meta or {}
    return Failure(
        table=table,
        expectation=cfg.type,
        column=cfg.kwargs.get("column"),
        observed=_jsonable(result.get("observed_value")),
        expected=_jsonable(kwargs),
        unexpected_count=result.get("unexpected_count"),
        sample=sample,
        error=_exception_message(r.exception_info or {}),
        severity=meta.get("severity", "error"),
        why=meta.get("why"),
    )


def _failures(table: str, r: Any) -> list[Failure]:
    """A failed expectation as the failures of the tables it concerns: its own table, the
    table it is scoped to (``meta.table``), or, merged over several (``meta.tables``), each
    table among its unexpected rows, with that table's count and keys."""
    meta = (r.expectation_config and r.expectation_config.meta) or {}
    if "tables" not in meta:
        return [_failure(meta.get("table", table), r)]
    rows = (r.result or {}).get("unexpected_index_list") or []
    by_table: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_table.setdefault(row["table"], []).append(row)
    if not by_table:  # an error before any row was judged: every table it covers failed
        return [_failure(name, r) for name in meta["tables"]]
    out = []
    for name, found in by_table.items():
        failure = _failure(name, r)
        failure.unexpected_count = len(found)
        failure.sample = [_jsonable(row) for row in found[:MAX_SAMPLE_KEYS]]
        out.append(failure)
    return out


class Validator:
    """One ephemeral Great Expectations context per gate run: a Checkpoint per (table, suite),
    each with its own frame and key columns, and Data Docs built once at the end."""

    def __init__(self, docs_dir: Path | None = None) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phoning home from a gate
        import great_expectations as gx  # slow to import: only when validating
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.docs_dir = docs_dir
        if docs_dir is not None:
            self.context.add_data_docs_site(
                site_name="gate",
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(docs_dir.resolve()),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        # One asset and batch definition for every frame: each new asset rewrites the whole
        # context configuration as YAML (≈ 35 ms, growing with the number of assets).
        self._batch = (
            self.context.data_sources.add_pandas(name="gate")
            .add_dataframe_asset(name="frames")
            .add_batch_definition_whole_dataframe("whole frame")
        )

    def validate(
        self, table: str, name: str, frame: pd.DataFrame, suite: Any, index: list[str]
    ) -> tuple[int, list[Failure]]:
        """(expectations evaluated, failures) of ``suite`` on ``frame``. A failing
        expectation scoped to one table (``meta.table``) is reported as that table's."""
        gx = self._gx
        batch = self._batch
        suite = self.context.suites.add(suite)
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        keys = [k for k in index if k in frame.columns]
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                result_format={
                    "result_format": "COMPLETE" if keys else "SUMMARY",
                    "unexpected_index_column_names": keys,
                    "partial_unexpected_count": MAX_SAMPLE_KEYS,
                },
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        (result,) = outcome.run_results.values()
        failures = [f for r in result.results if not r.success for f in _failures(table, r)]
        return len(result.results), failures

    @property
    def docs_index(self) -> Path | None:
        return None if self.docs_dir is None else self.docs_dir / "index.html"

    def build_docs(self) -> Path | None:
        if self.docs_dir is None:
            return None
        self.context.build_data_docs(site_names=["gate"])
        index = self.docs_dir / "index.html"
        return index if index.exists() else None


def validate_frames(
    frames: dict[str, pd.DataFrame | None],
    specs: dict[str, TableSpec],
    config: GateConfig | None = None,
) -> list[TableResult]:
    """The rows suite on whole frames; a missing frame (no such table) fails outright."""
    from validation.suites import build_suite

    config = config or GateConfig()
    validator = Validator()
    results = []
    for name, spec in specs.items():
        frame = frames.get(name)
        if frame is None:
            results.append(_missing(name))
            continue
        suite = build_suite(spec, config.rules_for(name), spec.accepted_values)
        evaluated, failures = validator.validate(
            name, f"{name}_rows", frame, suite, list(spec.primary_key)
        )
        results.append(TableResult(name, len(frame), not failures, evaluated, failures))
    return results


def _missing(name: str) -> TableResult:
    missing = Failure(name, "table_exists", None, None, {}, error="table not in warehouse")
    return TableResult(name, 0, False, 1, [missing])


def _blocking(failures: list[Failure], warn_only: bool) -> bool:
    return any(f.severity == "error" or not warn_only for f in failures)


#: facts whose missing values must stay missing (pandas' nullable floats), not NaN
_FACT_TYPES = {
    "null_rate": "Float64",
    "null_rate_max": "Float64",
    "null_rate_warn_max": "Float64",
    "row_count_ratio": "Float64",
    "newest_event_age_hours": "Float64",
    "psi": "Float64",
    "ks": "Float64",
    "ks_limit": "Float64",
}


def audit_rows(
    validator: Validator, candidate: Candidate, rules: TableRules
) -> tuple[int, list[Failure]]:
    """The rows suite on the rows DuckDB flags as able to fail it (validation/prescreen.py):
    none, usually, and then Great Expectations has nothing to look at."""
    from validation.suites import build_suite

    spec = candidate.spec
    suite = build_suite(spec, rules, spec.accepted_values)
    screened = screen(candidate.batch, suite.expectations)
    if screened.clean:
        return len(suite.expectations), []
    rows = candidate.batch if screened.rows is None else screened.rows
    return validator.validate(
        spec.name, f"{spec.name}_rows", to_validation_frame(rows), suite, list(spec.primary_key)
    )


def audit_facts(
    validator: Validator, candidates: list[Candidate], rules: dict[str, TableRules]
) -> dict[str, tuple[int, list[Failure]]]:
    """The columns, profile and drift suites of every table, one Checkpoint per kind over
    facts frames holding all tables' rows (each expectation scoped to its table)."""
    from validation.suites import (
        build_columns_suite,
        build_drift_suite,
        build_profile_suite,
        combine,
    )

    out: dict[str, tuple[int, list[Failure]]] = {c.spec.name: (0, []) for c in candidates}
    if not candidates:
        return out

    def run(kind: str, frames: list[pd.DataFrame], suites: list[Any], keys: list[str]) -> None:
        if not suites:
            return
        frame = pd.concat(frames, ignore_index=True)
        frame = frame.astype({k: v for k, v in _FACT_TYPES.items() if k in frame.columns})
        n_by_table = {c.spec.name: 0 for c in candidates}
        for suite in suites:
            for exp in suite.expectations:
                n_by_table[exp.meta["table"]] += 1
        _, failures = validator.validate(
            "*", kind, frame, combine(f"all_tables_{kind}", suites), keys
        )
        if len(keys) > 1:  # the table is said by the failure; the sample names the column
            for f in failures:
                f.sample = [{k: v for k, v in row.items() if k != "table"} for row in f.sample]
        for name, n in n_by_table.items():
            evaluated, found = out[name]
            out[name] = (evaluated + n, found + [f for f in failures if f.table == name])

    run(
        "columns",
        [pd.DataFrame(c.columns).assign(table=c.spec.name) for c in candidates],
        [build_columns_suite(c.spec) for c in candidates],
        ["table", "column"],
    )
    run(
        "profile",
        [pd.DataFrame([c.profile]) for c in candidates],
        [build_profile_suite(c.spec, rules[c.spec.name]) for c in candidates],
        ["table"],
    )
    drifting = [
        (c, suite)
        for c in candidates
        if c.drift and (suite := build_drift_suite(c.spec, rules[c.spec.name])) is not None
    ]
    run(
        "drift",
        [pd.DataFrame(c.drift).assign(table=c.spec.name) for c, _ in drifting],
        [suite for _, suite in drifting],
        ["table", "feature"],
    )
    return out


def table_result(
    candidate: Candidate, parts: list[tuple[int, list[Failure]]], warn_only: bool
) -> TableResult:
    failures = [f for _, found in parts for f in found]
    return TableResult(
        table=candidate.spec.name,
        rows=candidate.rows,
        success=not _blocking(failures, warn_only),
        evaluated=sum(n for n, _ in parts),
        failures=failures,
        batch_rows=candidate.batch.num_rows,
        changed_rows=candidate.changed_rows,
        profile=candidate.profile,
        drift=candidate.drift,
    )


def audit(
    validator: Validator,
    candidate: Candidate,
    rules: TableRules,
    warn_only: bool,
) -> TableResult:
    """Columns, rows, profile and drift suites for one table."""
    facts = audit_facts(validator, [candidate], {candidate.spec.name: rules})
    rows = audit_rows(validator, candidate, rules)
    return table_result(candidate, [facts[candidate.spec.name], rows], warn_only)


class Warehouse:
    """The warehouse, read-only, for one gate run: every read (facts, batches, the rows to
    publish) sees the same tables, and dbt cannot write while the gate holds it."""

    def __init__(self, path: Path, spark_schema: Path | None = None) -> None:
        """``path``: the DuckDB warehouse; or ``spark_schema``: the folder of the spark
        profile's tables, read as Parquet (validation/spark_tables.py)."""
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.tables: set[str] = set()
        #: tables with pushed rows added: their view in this connection's in-memory catalog
        self.views: dict[str, str] = {}
        if spark_schema is not None:
            from validation.spark_tables import attach

            self.views = attach(self.con, spark_schema)
            self.tables = set(self.views)
        elif path.exists():
            self.con.execute(f"ATTACH '{path}' AS wh (READ_ONLY)")
            self.tables = {
                r[0]
                for r in self.con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = 'wh'"
                ).fetchall()
            }

    def relation(self, name: str) -> str | None:
        """The table as a relation name (None if dbt did not build it), pushed rows
        included (:meth:`add_rows`)."""
        if name in self.views:
            return self.views[name]
        return f'wh.main."{name}"' if name in self.tables else None

    def add_rows(self, name: str, sql: str) -> None:
        """From now on, the table ``name`` reads as ``sql`` (its rows plus pushed rows): a
        view every cursor sees."""
        view = f'memory.main."{name}__with_pushes"'
        self.con.execute(f"CREATE VIEW {view} AS {sql}")
        self.views[name] = view

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own (one per thread, temp tables per table)."""
        cursor = self.con.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        return cursor

    def months(
        self, spec: TableSpec, months: list[str | None] | None
    ) -> dict[str | None, pa.Table]:
        """The rows of ``months`` of event time (UTC; None: no event time) of a table, or of
        every month (``months`` None), month by month, each sorted by the key."""
        relation = self.relation(spec.name)
        assert relation is not None
        cursor = self.cursor()
        try:
            types = {r[0]: r[1] for r in cursor.execute(f"DESCRIBE {relation}").fetchall()}
            ts = f'"{spec.event_timestamp}"'
            where = ""
            if months is not None:  # ranges, not a function of every row: zone maps prune
                kind = types[spec.event_timestamp]
                ranges = [
                    f"({ts} >= CAST(DATE '{m}-01' AS {kind}) "
                    f"AND {ts} < CAST(DATE '{m}-01' + INTERVAL 1 MONTH AS {kind}))"
                    if m is not None
                    else f"{ts} IS NULL"
                    for m in months
                ]
                where = " WHERE " + (" OR ".join(ranges) or "false")
            order = "".join(f', "{k}"' for k in spec.primary_key if k in types)
            table = cursor.sql(
                f"SELECT * FROM {relation}{where} ORDER BY {by_month(ts)}{order}"
            ).to_arrow_table()
        finally:
            cursor.close()
        return split_months(table, spec.event_timestamp)

    def close(self) -> None:
        self.con.close()


def _spark_schema(settings: Settings) -> Path | None:
    """Where the spark profile's dbt tables are (None for the DuckDB warehouse)."""
    if not settings.spark:
        return None
    from validation.spark_tables import schema_folder

    return schema_folder(settings.spark_warehouse)


def _previous_days(snapshot: Path | None, name: str) -> pa.Table | None:
    path = snapshot / FINGERPRINTS / f"{name}.parquet" if snapshot is not None else None
    return pq.read_table(path) if path is not None and path.exists() else None


def write_report(result: GateResult, reports_dir: Path) -> Path:
    """One JSON per run (kept), plus latest.json pointing at the newest."""
    payload = {
        "run_id": result.run_id,
        "success": result.success,
        "warn_only": result.warn_only,
        "published": [str(p) for p in result.published],
        "quarantine": str(result.quarantine_dir) if result.quarantine_dir else None,
        "data_docs": str(result.docs_path) if result.docs_path else None,
        "tables": [asdict(t) for t in result.tables],
        "pushes": [p.model_dump() for p in result.pushes],
    }
    return write_json(reports_dir, _jsonable(payload), result.run_id)


def quarantine(result: GateResult, candidates: dict[str, Candidate], folder: Path) -> Path:
    """Keep each failing table's validated batch (and the report) for inspection, readable by
    their owner only."""
    private_dir(folder.parent)
    private_dir(folder)
    for table in result.tables:
        candidate = candidates.get(table.table)
        if table.success or candidate is None:
            continue
        path = folder / f"{table.table}.parquet"
        pq.write_table(candidate.batch, path, compression="zstd")
        private_file(path)
        table.quarantined = str(path)
    return folder


def run_gate(
    settings: Settings,
    *,
    publish: bool = True,
    manifest_path: Path | None = None,
    warn_only: bool = False,
    now: datetime | None = None,
    config: GateConfig | None = None,
    defer_docs: bool = False,
) -> GateResult:
    """Validate what every publishable table would change; publish them all only if all pass.

    ``warn_only``: failures of expectations marked ``severity: warning`` are reported but do
    not block. ``now``: the instant freshness is measured against (default: the clock).
    ``defer_docs``: return before the Data Docs are rendered (≈ 0.3 s); the caller renders
    them with :func:`build_deferred_docs` (the gate's worker does, after answering).
    """
    manifest = load_manifest(manifest_path or settings.project.manifest)
    specs = publishable_tables(manifest, dbt_vars(settings.project.dbt_project_dir))
    config = config or load_gate_config(settings.project.gate_rules)
    config.check_against(specs)
    now = now or datetime.now(UTC)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    reports = settings.reports_dir / "gate"
    validator = Validator(docs_dir=reports / run_id / "docs")
    candidates: dict[str, Candidate] = {}
    rows: dict[str, tuple[int, list[Failure]]] = {}
    table_results: list[TableResult] = []
    # Three kinds of work overlap, none visible to readers before the commit: one worker
    # prepares each table in DuckDB from the warehouse, one table ahead of Great Expectations
    # validating the previous one (Python), and another stages the month files that changed
    # in a new snapshot as soon as they are known (DuckDB and Arrow both run outside the GIL).
    # The snapshot becomes the published one only if every table passed, else it is deleted.
    publication = Publication(settings.published_dir, run_id) if publish else None
    snapshot = publication.previous if publication else current_snapshot(settings.published_dir)
    warehouse = Warehouse(settings.warehouse, spark_schema=_spark_schema(settings))
    # Rows pushed to the offline store join their table's rows: validated and published alike.
    intake = pushed.collect(settings.data_dir, settings.published_dir, snapshot, specs)
    for name, table_pushes in intake.tables.items():
        relation = warehouse.relation(name)
        if relation is not None:
            sql = pushed.union_sql(warehouse.con, relation, specs[name], table_pushes)
            if sql is not None:
                warehouse.add_rows(name, sql)
    staging: list[Future[None]] = []
    committed = False
    with ThreadPoolExecutor(1) as stager, ThreadPoolExecutor(2) as preparer:

        def stage(candidate: Candidate) -> None:
            assert publication is not None and candidate.fingerprints is not None
            if candidate.months is None:  # every month: the batch is the table, in order
                months = split_months(candidate.batch, candidate.spec.event_timestamp)
            else:
                months = warehouse.months(candidate.spec, candidate.months)
            publication.stage(
                candidate.spec.name,
                candidate.months,
                set(months),
                lambda month, path: write_parquet(months[month], path),
                candidate.fingerprints,
                candidate.schema,
            )

        def load(name: str) -> Candidate | None:
            relation = warehouse.relation(name)
            if relation is None:
                return None
            published = table_files(snapshot / name) if snapshot is not None else []
            cursor = warehouse.cursor()
            try:
                candidate = prepare_in(
                    cursor,
                    relation,
                    specs[name],
                    published,
                    _previous_days(snapshot, name),
                    config.rules_for(name),
                    now,
                )
            finally:
                cursor.close()
            if publication is not None and candidate.fingerprints is not None:
                staging.append(stager.submit(stage, candidate))
            return candidate

        prepared = {name: preparer.submit(load, name) for name in specs}
        try:
            for name, future in prepared.items():
                candidate = future.result()
                if candidate is None:
                    table_results.append(_missing(name))
                    continue
                candidates[name] = candidate
                rows[name] = audit_rows(validator, candidate, config.rules_for(name))
            rules = {name: config.rules_for(name) for name in candidates}
            facts = audit_facts(validator, list(candidates.values()), rules)
            table_results += [
                table_result(c, [facts[name], rows[name]], warn_only)
                for name, c in candidates.items()
            ]
            table_results.sort(key=lambda t: t.table)
            result = GateResult(run_id, all(t.success for t in table_results), table_results)
            result.warn_only = warn_only
            if defer_docs:
                result.docs_path = validator.docs_index
                _DEFERRED_DOCS.append(validator)
            else:
                result.docs_path = validator.build_docs()
            if result.success and publication is not None:
                for s in staging:
                    s.result()
                pushed.record(publication.staging, intake)
                fault_point("gate.before_swap")
                result.published = publication.commit()
                committed = True
                record_time(settings, published=now)
                fault_point("gate.after_swap")
        finally:
            if not committed:
                wait(list(prepared.values()))  # no staging is submitted after this
                wait(staging)
                if publication is not None:
                    publication.discard()
            wait(staging)
            warehouse.close()
    quarantine_dir = settings.data_dir / "quarantine" / run_id
    if not result.success:
        result.quarantine_dir = quarantine(result, candidates, quarantine_dir)
    result.pushes = pushed.settle(
        intake,
        settings.published_dir / SNAPSHOTS / run_id if committed else None,
        {t.table for t in result.tables if not t.success},
        quarantine_dir,
        move=publication is not None,
    )
    if any(p.status == "quarantined" for p in result.pushes):
        result.quarantine_dir = quarantine_dir
    result.report_path = write_report(result, reports)
    if result.quarantine_dir:
        private_dir(result.quarantine_dir)
        write_atomic(result.quarantine_dir / "report.json", result.report_path.read_text())
    return result


#: validators whose Data Docs a deferred gate run left to render
_DEFERRED_DOCS: list[Validator] = []


def build_deferred_docs() -> None:
    """Render the Data Docs of gate runs made with ``defer_docs=True``."""
    while _DEFERRED_DOCS:
        _DEFERRED_DOCS.pop().build_docs()


def _warm_up() -> None:
    """Pay every first-time cost before the gate is needed: imports (≈ 4 s for Great
    Expectations), a context, one Checkpoint on a one-row frame, DuckDB and Parquet."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    frame = pd.DataFrame({"k": ["a"], "x": pd.array([1.0], dtype="Float64")})
    suite = gx.ExpectationSuite(
        name="warm_up",
        expectations=[
            gxe.ExpectColumnValuesToBeBetween(column="x", min_value=0, max_value=2),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="x", column_B="x"),
        ],
    )
    Validator().validate("warm_up", "warm_up", frame, suite, ["k"])
    with duckdb.connect() as con:
        con.sql("SELECT 1").to_arrow_table()


def _serve(conn: Any) -> None:
    """The worker process: import, wait for one gate request, answer it.

    At a lower CPU priority: while dbt builds, the import takes only what dbt leaves idle
    (measured on bench/gate.py's 3-year data: dbt 5.8 s alone, 6.4 s beside the import at equal
    priority); when the gate runs, dbt is done and the worker has the machine anyway.
    """
    with contextlib.suppress(AttributeError, OSError):  # no os.nice on Windows
        os.nice(10)
    _warm_up()
    conn.send(("ready", time.time()))
    request = conn.recv()
    if request is None:
        return
    settings, kwargs = request
    try:
        conn.send(("ok", run_gate(settings, defer_docs=True, **kwargs)))
        build_deferred_docs()  # off the caller's critical path: it has its answer
    except BaseException as err:  # the caller re-raises it with the worker's traceback
        import traceback

        conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))


class GateWorker:
    """The gate in its own process, which imports Great Expectations while dbt builds.

    Great Expectations takes ≈ 4 s to import. Imported in a thread of the process that runs
    dbt it fights dbt for the GIL: measured on bench/gate.py's 3-year data, a 3.9 s incremental
    build took 11.3 s. A spawned process imports it on the core dbt leaves idle, then runs
    the gate when asked (``run``); the result comes back as a :class:`GateResult`.
    """

    def __init__(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no fork of dbt's threads and connections
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child,), daemon=True, name="gate")
        self._process.start()
        child.close()
        self._asked = False
        #: seconds ``run`` waited for the worker to finish its warm-up (0: it was ready)
        self.waited = 0.0

    def run(self, settings: Settings, **kwargs: Any) -> GateResult:
        """``run_gate(settings, **kwargs)`` in the worker."""
        self._asked = True
        self._conn.send((settings, kwargs))
        try:
            asked = time.time()
            status, value = self._conn.recv()
            if status == "ready":
                self.waited = max(value - asked, 0.0)
                status, value = self._conn.recv()
        except EOFError:
            self._process.join(5)
            raise RuntimeError(
                f"the gate worker died (exit code {self._process.exitcode}); "
                "run `featurestack validate` to see the error in this process"
            ) from None
        if status != "ok":
            raise RuntimeError(f"the gate failed in its worker process: {value}")
        return value

    def close(self) -> None:
        """Let the worker finish what it does after answering (the Data Docs), then stop it;
        a worker that was never asked is stopped at once."""
        if self._asked:
            self._process.join(120)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._conn.close()

    def __enter__(self) -> GateWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
