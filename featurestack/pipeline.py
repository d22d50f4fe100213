"""The whole flow as one function: dbt build → gate + publish → Feast apply + materialize →
train → batch and online scoring, returning a typed summary.

:func:`run` sequences the stages, each of which belongs to its own tool (dbt_project/,
validation/, feature_repo/, models_py/), stops at the first failing one with
:class:`StageFailed`, and reports progress through a :class:`Progress` the caller provides
(the CLI prints it). It writes ``data/reports/run_summary.json`` (a :class:`RunSummary`) and
returns a :class:`PipelineResult` whose fields the CLI renders; nothing here prints.

``as_of`` runs the flow as if it were that instant: dbt sees only the raw rows known then
(the project's staging models filter on ``var('as_of')``), the gate measures freshness then,
materialization stops then, and online reads apply the views' TTL then. A run may only move
forward in time on a data folder (a backtest before an earlier run uses a folder of its own),
so :func:`backfill` replays days in order with incremental builds.
"""

from __future__ import annotations

import atexit
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from featurestack.core.errors import CheckFailed, UsageError
from featurestack.core.reports import write_report
from featurestack.core.settings import Settings
from featurestack.core.state import record_time, time_state

if TYPE_CHECKING:
    import pandas as pd

    from featurestack.infra.dbt_ops import DbtOutcome
    from models_py.train import TrainResult
    from validation.gate import GateResult

#: the stages of :func:`run`, in order (their keys in ``stage_seconds``)
STAGES = ("dbt", "gate", "feast", "train", "predict_batch", "predict_online")


class Progress(Protocol):
    """Where the pipeline reports what it is doing (the CLI prints it)."""

    def start(self, title: str) -> None: ...

    def info(self, text: str) -> None: ...

    def done(self) -> float:
        """The stage is over; returns its seconds."""
        ...


class StageFailed(CheckFailed):
    """A stage failed; its own output said why. Nothing after it ran."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class ModelSummary(BaseModel):
    name: str
    version: str
    run_id: str
    holdout: dict[str, float]
    #: champion or challenger, after the promotion decision
    alias: str = "champion"
    #: the one-line holdout verdict the run summary prints
    headline: str = ""
    batch_predictions: str = ""


class RunSummary(BaseModel):
    """``data/reports/run_summary.json``: what one ``featurestack run`` did and how long."""

    finished_at: str
    seconds: float
    stage_seconds: dict[str, float]
    dbt: dict[str, int]
    gate_report: str
    published: list[str]
    feast: dict[str, list[str]]
    #: the first model trained (every model is in ``models``)
    model: ModelSummary
    batch_predictions: str
    models: list[ModelSummary] = []
    #: the instant the run was made as of (None: the clock's now)
    as_of: str | None = None
    project: str | None = None


@dataclass
class PipelineResult:
    """Everything a caller may show of a run: the summary and each stage's own result."""

    summary: RunSummary
    summary_path: Path
    dbt: DbtOutcome
    gate: GateResult
    feast_objects: dict[str, list[str]]
    trained: list[TrainResult]
    batch: dict[str, pd.DataFrame]
    online: dict[str, pd.DataFrame]
    as_of: date

    @property
    def training(self) -> TrainResult:
        return self.trained[0]


def apply_repo(settings: Settings) -> dict[str, list[str]]:
    """``feast apply``, or :class:`CheckFailed` when the Feast repo and the dbt contracts
    disagree (nothing is registered then)."""
    from featurestack.infra import feast_ops
    from featurestack.infra.feast_codegen import ContractMismatch

    try:
        return feast_ops.apply(settings)
    except ContractMismatch as err:
        raise CheckFailed(f"feast apply refused: {err}") from None


def latest_feature_day(path: str, at: datetime | None = None) -> date:
    """The UTC day of the newest event (at or before ``at``) in a published table."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ts = pq.read_table(path, columns=["event_timestamp"]).column(0)
    if at is not None:
        ts = ts.filter(pc.less_equal(ts, at))
    newest = pc.max(ts).as_py()
    if newest is None:
        raise CheckFailed(f"{path} has no event at or before {at}: nothing to score")
    return newest.date()


def models_to_train(settings: Settings, models: list[str] | None) -> list[str]:
    """``--model`` names, else the project's ``run.models`` (featurestack.yml), else every
    spec of the project."""
    from models_py.spec import spec_names

    if models:
        return models
    project = settings.project
    names = project.config.run.models or spec_names(project.specs_dir)
    if not names:
        raise UsageError(
            f"project {project.name} has no model spec in {project.specs_dir}: add one "
            '(README "Model specs") or run `featurestack init` for a commented example'
        )
    return names


def _last_as_of(settings: Settings) -> str | None:
    """The instant the warehouse of this data folder was last built as of."""
    return time_state(settings).built


def build(settings: Settings, as_of: datetime | None) -> DbtOutcome:
    """``dbt build``; as of an instant, with the raw rows known then (``var('as_of')``), and
    from scratch when the warehouse was built as of a later instant (or never)."""
    import json

    from featurestack.infra.dbt_ops import run_dbt

    extra: list[str] = []
    if as_of is not None:
        extra += ["--vars", json.dumps({"as_of": as_of.isoformat()})]
        last = _last_as_of(settings)
        if last is None or datetime.fromisoformat(last) > as_of:
            extra.append("--full-refresh")
    outcome = run_dbt(settings, extra=extra or None)
    # Recorded even when tests failed: the models may have been rebuilt as of this instant.
    record_time(settings, built=as_of)
    return outcome


def check_forward(settings: Settings, as_of: datetime | None) -> None:
    """A data folder's publications only move forward in time: each is compared with the
    previous one (row counts, drift) and the online store keeps the newest event, which a
    publication as of an earlier instant would break. (An unpublished build may go back.)"""
    last = time_state(settings).published
    if as_of is not None and last is not None and datetime.fromisoformat(last) > as_of:
        raise UsageError(
            f"--as-of {as_of:%Y-%m-%dT%H:%M:%S%z} is before the last publication on "
            f"{settings.data_dir} (as of {last}): a data folder moves forward in time. Backtest "
            "in a folder of its own: FEATURESTACK_DATA_DIR=data/backtest featurestack run "
            "--as-of …"
        )


def run(
    settings: Settings,
    models: list[str] | None,
    progress: Progress,
    online_keys: list[dict[str, Any]] | None = None,
    warn_only: bool = True,
    as_of: datetime | None = None,
) -> PipelineResult:
    """Run every stage for the project's models (or ``models``); see the module docstring.

    ``warn_only``: gate expectations of severity ``warning`` report without blocking (the
    default, as dbt's ``severity: warn``); False (``--strict``) makes them block too.
    """
    from featurestack.infra import feast_ops
    from featurestack.infra.consistency import run_check
    from models_py.predict import predict_batch, predict_online
    from models_py.scoring import flag_summary
    from models_py.spec import load_spec
    from models_py.train import train
    from validation.gate import GateWorker

    t0 = time.perf_counter()
    settings.export()
    if not settings.raw_files():
        raise UsageError(
            f"no raw data in {settings.raw_dir}: copy your files there (FEATURESTACK_RAW_DIR "
            "points elsewhere), or for the demo project run `featurestack demo-data`"
        )
    check_forward(settings, as_of)
    folder = settings.project.specs_dir
    specs = [
        s for name in models_to_train(settings, models) for s in load_spec(name, folder).expand()
    ]
    times: dict[str, float] = {}

    progress.start("dbt build (models + tests) into the warehouse")
    # The gate's process imports Great Expectations (≈ 4 s) on the other core meanwhile, and
    # renders the gate's Data Docs after answering, while the next stages run; closed at exit.
    worker = GateWorker()
    atexit.register(worker.close)
    outcome = build(settings, as_of)
    progress.info(outcome.summary())
    times["dbt"] = progress.done()
    if not outcome.success:
        raise StageFailed("dbt", "dbt build failed: nothing was validated or published")

    progress.start("gate: Great Expectations on the built tables, then publish")
    gate = worker.run(settings, warn_only=warn_only, now=as_of)
    progress.info(gate.summary())
    times["gate"] = progress.done()
    if not gate.success:
        worker.close()  # its Data Docs are complete before we stop
        raise StageFailed("gate", "the gate failed: nothing was published")

    progress.start("feast apply + materialize into the online store")
    objects = apply_repo(settings)
    materialized = feast_ops.materialize(settings, as_of or datetime.now(UTC))
    progress.info(f"      registered {objects}; materialized {materialized}")
    check = run_check(feast_ops.load_store(settings), settings, 20, 0, now=as_of)
    progress.info("      online vs offline at now:\n" + check.text)
    if not check.ok:
        raise StageFailed("feast", f"online and offline values differ: see {check.path}")
    times["feast"] = progress.done()

    names = ", ".join(s.name for s in specs)
    progress.start(f"train {names} on a point-in-time training set")
    trained = []
    for spec in specs:
        result = train(settings, spec)
        progress.info(result.summary())
        trained.append(result)
    times["train"] = progress.done()

    progress.start("batch predictions with the champion")
    store = feast_ops.load_store(settings)
    batch, paths = {}, {}
    day = None
    for result in trained:
        spec = next(s for s in specs if s.name == result.model_name)
        first = store.get_feature_service(spec.feature_service).feature_view_projections[0].name
        source = feast_ops.batch_source_path(store.get_feature_view(first))
        day = latest_feature_day(source, as_of)
        path, preds = predict_batch(settings, result.model_name, day)
        batch[result.model_name], paths[result.model_name] = preds, path
        progress.info(
            f"      {result.model_name}: {int(preds['score'].notna().sum())} entities scored as "
            f"of {day} → {path}"
        )
        progress.info(f"      {flag_summary(preds)}")
    times["predict_batch"] = progress.done()

    progress.start("online predictions from the online store")
    online = {}
    for result in trained:
        preds = batch[result.model_name]
        keys = online_keys or _first_entities(preds, 3)
        frame = predict_online(settings, result.model_name, keys, now=as_of)
        shown = [c for c in (*keys[0], "score", "model_version") if c in frame]
        progress.info(frame[shown].to_string(index=False))
        online[result.model_name] = frame
    times["predict_online"] = progress.done()

    summaries = [
        ModelSummary(
            name=r.model_name,
            version=r.version,
            run_id=r.run_id,
            holdout={k[8:]: v for k, v in r.metrics.items() if k.startswith("holdout_")},
            alias=r.alias,
            headline=r.headline(),
            batch_predictions=str(paths[r.model_name]),
        )
        for r in trained
    ]
    summary = RunSummary(
        finished_at=datetime.now(UTC).isoformat(),
        seconds=round(time.perf_counter() - t0, 1),
        stage_seconds={k: round(v, 1) for k, v in times.items()},
        dbt=outcome.counts,
        gate_report=str(gate.report_path),
        published=[str(p) for p in gate.published],
        feast=objects,
        model=summaries[0],
        batch_predictions=summaries[0].batch_predictions,
        models=summaries,
        as_of=as_of.isoformat() if as_of is not None else None,
        project=settings.project.name,
    )
    path = write_report(settings.reports_dir, summary, "run_summary", latest=False)
    worker.close()  # long done rendering the gate's Data Docs by now
    assert day is not None
    return PipelineResult(summary, path, outcome, gate, objects, trained, batch, online, day)


def _first_entities(preds: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """The keys of the first ``n`` entities the batch scored (its output starts with the keys;
    entities with no feature inside the TTL are not scored)."""
    keys = list(preds.columns[: list(preds.columns).index("as_of")])
    scored = preds[preds["score"].notna()] if preds["score"].notna().any() else preds
    return [dict(zip(keys, row, strict=True)) for row in scored[keys].head(n).itertuples(False)]


class BackfillDay(BaseModel):
    """One replayed day of :func:`backfill`."""

    day: str
    as_of: str
    dbt: str
    gate: str
    published: int = 0
    #: rows the gate validated row by row (new or changed), per table
    changed_rows: dict[str, int] = {}
    materialized: dict[str, str] = {}
    trained: list[str] = []
    seconds: float = 0.0
    problems: list[str] = []


class BackfillReport(BaseModel):
    """``data/reports/backfill/<stamp>.json``: the days replayed and what each did."""

    start: str
    end: str
    days: list[BackfillDay]

    @property
    def ok(self) -> bool:
        return all(not d.problems for d in self.days)


def backfill(
    settings: Settings,
    start: date,
    end: date,
    progress: Progress,
    models: list[str] | None = None,
    warn_only: bool = True,
    train_each_day: bool = False,
) -> tuple[BackfillReport, Path]:
    """Replay daily runs from ``start`` to ``end`` (UTC days, both included), each as of the
    end of its day: an incremental build (the first from scratch), the gate, publication and
    materialization; the models train after the last day (``train_each_day``: after each).
    A day the gate refuses publishes nothing and is reported; the next day's build carries
    its rows again, so the replay goes on."""
    from datetime import time as day_time
    from datetime import timedelta

    from featurestack.infra import feast_ops
    from models_py.spec import load_spec
    from models_py.train import train
    from validation.gate import run_gate

    if end < start:
        raise UsageError(f"--to {end} is before --from {start}: give the range oldest first")
    first = datetime.combine(start, day_time(23, 59, 59), tzinfo=UTC)
    check_forward(settings, first)
    settings.export()
    folder = settings.project.specs_dir
    specs = [s for n in models_to_train(settings, models) for s in load_spec(n, folder).expand()]
    # The gate runs in this process: Great Expectations is imported once for every day (a
    # GateWorker answers one run).
    days: list[BackfillDay] = []
    applied = False
    day = start
    while day <= end:
        t0 = time.perf_counter()
        at = datetime.combine(day, day_time(23, 59, 59), tzinfo=UTC)
        progress.start(f"{day}: build, gate and publish as of {at:%Y-%m-%d %H:%M:%S} UTC")
        row = BackfillDay(day=day.isoformat(), as_of=at.isoformat(), dbt="", gate="")
        outcome = build(settings, at)
        row.dbt = "ok" if outcome.success else "FAILED"
        if not outcome.success:
            row.problems.append(outcome.summary())
        else:
            gate = run_gate(settings, warn_only=warn_only, now=at)
            row.gate = "passed" if gate.success else "FAILED"
            row.changed_rows = {t.table: t.changed_rows or 0 for t in gate.tables}
            if gate.success:
                row.published = len(gate.published)
                if not applied:
                    apply_repo(settings)
                    applied = True
                row.materialized = feast_ops.materialize(settings, at)
                if train_each_day or day == end:
                    row.trained = [
                        f"{r.model_name} v{r.version} ({r.alias})"
                        for r in (train(settings, s) for s in specs)
                    ]
            else:
                row.problems.append(gate.summary())
        row.seconds = round(time.perf_counter() - t0, 1)
        days.append(row)
        progress.info(
            f"      dbt {row.dbt}, gate {row.gate or '-'}; changed rows "
            f"{sum(row.changed_rows.values())}; {', '.join(row.trained) or 'no training'}"
        )
        progress.done()
        day += timedelta(days=1)
    report = BackfillReport(start=start.isoformat(), end=end.isoformat(), days=days)
    path = write_report(settings.reports_dir / "backfill", report, latest=False)
    return report, path
