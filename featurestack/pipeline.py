"""The whole flow as one function: dbt build → gate + publish → Feast apply + materialize →
train → batch and online scoring, returning a typed summary.

:func:`run` sequences the stages, each of which belongs to its own tool (dbt_project/,
validation/, feature_repo/, models_py/), stops at the first failing one with
:class:`StageFailed`, and reports progress through a :class:`Progress` the caller provides
(the CLI prints it). It writes ``data/reports/run_summary.json`` (a :class:`RunSummary`) and
returns a :class:`PipelineResult` whose fields the CLI renders; nothing here prints.
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


class RunSummary(BaseModel):
    """``data/reports/run_summary.json``: what one ``featurestack run`` did and how long."""

    finished_at: str
    seconds: float
    stage_seconds: dict[str, float]
    dbt: dict[str, int]
    gate_report: str
    published: list[str]
    feast: dict[str, list[str]]
    model: ModelSummary
    batch_predictions: str


@dataclass
class PipelineResult:
    """Everything a caller may show of a run: the summary and each stage's own result."""

    summary: RunSummary
    summary_path: Path
    dbt: DbtOutcome
    gate: GateResult
    feast_objects: dict[str, list[str]]
    training: TrainResult
    batch: pd.DataFrame
    online: pd.DataFrame
    as_of: date


def apply_repo(settings: Settings) -> dict[str, list[str]]:
    """``feast apply``, or :class:`CheckFailed` when the Feast repo and the dbt contracts
    disagree (nothing is registered then)."""
    from featurestack.infra import feast_ops
    from featurestack.infra.feast_codegen import ContractMismatch

    try:
        return feast_ops.apply(settings)
    except ContractMismatch as err:
        raise CheckFailed(f"feast apply refused: {err}") from None


def latest_feature_day(path: str) -> date:
    """The UTC day of the newest event in a published table (a file or a folder of them)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ts = pq.read_table(path, columns=["event_timestamp"]).column(0)
    return pc.max(ts).as_py().date()


def run(
    settings: Settings,
    model: str,
    progress: Progress,
    online_keys: list[dict[str, Any]] | None = None,
    warn_only: bool = False,
) -> PipelineResult:
    """Run every stage for the spec ``model``; see the module docstring."""
    from featurestack.demo_data import existing_raw_files
    from featurestack.infra import feast_ops
    from featurestack.infra.consistency import run_check
    from featurestack.infra.dbt_ops import run_dbt
    from models_py.predict import predict_batch, predict_online
    from models_py.scoring import flag_summary
    from models_py.spec import load_spec
    from models_py.train import train
    from validation.gate import GateWorker

    t0 = time.perf_counter()
    settings.export()
    if not existing_raw_files(settings.raw_dir):
        raise UsageError(
            f"no raw data in {settings.raw_dir}: run `featurestack demo-data` or copy your files "
            "there (see the raw data contract in README.md)"
        )
    spec = load_spec(model)
    if spec.label.targets:
        raise UsageError(
            f"featurestack run trains one model; {spec.name} has {len(spec.label.targets)} "
            f"targets: train it with `featurestack train --spec {spec.name}`"
        )
    times: dict[str, float] = {}

    progress.start("dbt build (models + tests) into the warehouse")
    # The gate's process imports Great Expectations (≈ 4 s) on the other core meanwhile, and
    # renders the gate's Data Docs after answering, while the next stages run; closed at exit.
    worker = GateWorker()
    atexit.register(worker.close)
    outcome = run_dbt(settings)
    progress.info(outcome.summary())
    times["dbt"] = progress.done()
    if not outcome.success:
        raise StageFailed("dbt", "dbt build failed: nothing was validated or published")

    progress.start("gate: Great Expectations on the built tables, then publish")
    gate = worker.run(settings, warn_only=warn_only)
    progress.info(gate.summary())
    times["gate"] = progress.done()
    if not gate.success:
        worker.close()  # its Data Docs are complete before we stop
        raise StageFailed("gate", "the gate failed: nothing was published")

    progress.start("feast apply + materialize into the online store")
    objects = apply_repo(settings)
    materialized = feast_ops.materialize(settings, datetime.now(UTC))
    progress.info(f"      registered {objects}; materialized {materialized}")
    check = run_check(feast_ops.load_store(settings), settings, 20, 0)
    progress.info("      online vs offline at now:\n" + check.text)
    if not check.ok:
        raise StageFailed("feast", f"online and offline values differ: see {check.path}")
    times["feast"] = progress.done()

    progress.start(f"train {spec.name} on a point-in-time training set")
    result = train(settings, spec)
    progress.info(result.summary())
    times["train"] = progress.done()

    progress.start("batch predictions with the champion")
    store = feast_ops.load_store(settings)
    first_view = store.get_feature_service(spec.feature_service).feature_view_projections[0].name
    as_of = latest_feature_day(feast_ops.batch_source_path(store.get_feature_view(first_view)))
    pred_path, preds = predict_batch(settings, spec.name, as_of)
    progress.info(
        f"      {int(preds['score'].notna().sum())} entities scored as of {as_of} → {pred_path}"
    )
    progress.info(f"      {flag_summary(preds)}")
    times["predict_batch"] = progress.done()

    progress.start("online predictions from the online store")
    keys = online_keys or _first_entities(preds, 3)
    online = predict_online(settings, spec.name, keys)
    progress.info(online[[*keys[0], "score", "model_version"]].to_string(index=False))
    times["predict_online"] = progress.done()

    summary = RunSummary(
        finished_at=datetime.now(UTC).isoformat(),
        seconds=round(time.perf_counter() - t0, 1),
        stage_seconds={k: round(v, 1) for k, v in times.items()},
        dbt=outcome.counts,
        gate_report=str(gate.report_path),
        published=[str(p) for p in gate.published],
        feast=objects,
        model=ModelSummary(
            name=result.model_name,
            version=result.version,
            run_id=result.run_id,
            holdout={k[8:]: v for k, v in result.metrics.items() if k.startswith("holdout_")},
        ),
        batch_predictions=str(pred_path),
    )
    path = write_report(settings.reports_dir, summary, "run_summary", latest=False)
    worker.close()  # long done rendering the gate's Data Docs by now
    return PipelineResult(summary, path, outcome, gate, objects, result, preds, online, as_of)


def _first_entities(preds: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """The keys of the first ``n`` scored entities (the batch output starts with the keys)."""
    keys = list(preds.columns[: list(preds.columns).index("as_of")])
    return [dict(zip(keys, row, strict=True)) for row in preds[keys].head(n).itertuples(False)]
