"""Training a spec, as a recipe: the training set from Feast, tuning, the fit and evaluation,
then MLflow (the run, the registered version) and the promotion decision.

Each step lives where it belongs: :mod:`models_py.dataset` builds and checks the training set
(refusing before any run starts), :mod:`models_py.tuning` runs the Optuna study,
:mod:`models_py.fitting` fits and evaluates (pure), :mod:`models_py.run_log` records the run,
:mod:`models_py.registry` decides champion or challenger. :func:`train` only sequences them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from featurestack.core.errors import NotFound
from featurestack.core.faults import fault_point
from featurestack.core.settings import Settings
from featurestack.infra import feast_ops, services
from models_py import gates, registry, run_log, run_owner, tracking
from models_py.contract import CHAMPION
from models_py.dataset import TrainingSet, training_set
from models_py.fitting import Parent, fit_and_evaluate, new_rows
from models_py.plugins import get_plugin
from models_py.plugins.base import ModelPlugin
from models_py.registry import Decision
from models_py.scoring import base_model
from models_py.spec import ModelSpec
from models_py.tuning import (
    EXPERIMENT_ATTR,
    PARENT_RUN_ATTR,
    SPEC_ATTR,
    SPEC_JSON_ATTR,
    join,
    tune,
)


@dataclass
class TrainResult:
    spec: str
    run_id: str
    model_name: str
    version: str
    metrics: dict[str, float]
    rows: dict[str, int]
    params: dict[str, Any] = field(default_factory=dict)
    decision: Decision | None = None
    #: features left out: null throughout the published data (an optional raw column absent)
    dropped: list[str] = field(default_factory=list)

    @property
    def alias(self) -> str:
        if self.decision is not None and self.decision.gated:
            return "none"
        return CHAMPION if self.decision is None or self.decision.promoted else "challenger"

    @property
    def gate_failures(self) -> list[str]:
        """The failed quality gates' lines (empty: every gate passed)."""
        if self.decision is None:
            return []
        return [v.line() for v in gates.failed(self.decision.verdicts)]

    def summary(self) -> str:
        m = self.metrics
        why = f"\n  registry: {self.decision.reason}" if self.decision else ""
        if self.decision is not None:
            why += "".join(f"\n  gate {v.line()}" for v in self.decision.verdicts)
        if self.dropped:
            why += f"\n  left out (null throughout the published data): {', '.join(self.dropped)}"
        return (
            f"{self.model_name} v{self.version} (alias {self.alias}), run {self.run_id}{why}\n"
            f"  rows: train {self.rows['train']}, validation {self.rows['validation']}, "
            f"holdout {self.rows['holdout']}\n"
            + (
                f"  holdout: ROC-AUC {m['holdout_roc_auc']:.4f}, "
                f"log-loss {m['holdout_log_loss']:.4f} "
                f"(constant predictor {m['holdout_log_loss_constant']:.4f}), "
                f"F1 {m['holdout_f1']:.4f}, precision {m['holdout_precision']:.4f}, "
                f"recall {m['holdout_recall']:.4f}"
                if "holdout_roc_auc" in m
                else f"  holdout: RMSE {m['holdout_rmse']:.4f} (constant predictor "
                f"{m['holdout_rmse_constant']:.4f}), MAE {m['holdout_mae']:.4f}, "
                f"R² {m['holdout_r2']:.4f}"
                + (
                    f", {m['holdout_interval_coverage']:.1%} inside the intervals"
                    if "holdout_interval_coverage" in m
                    else ""
                )
            )
        )

    def headline(self) -> str:
        """The holdout figures that say most about this task, on one line (run summaries)."""
        m = self.metrics
        if "holdout_roc_auc" in m:
            return (
                f"holdout ROC-AUC {m['holdout_roc_auc']:.3f}, log-loss "
                f"{m['holdout_log_loss']:.4f} (constant {m['holdout_log_loss_constant']:.4f}), "
                f"F1 {m['holdout_f1']:.3f}"
            )
        inside = (
            f", {m['holdout_interval_coverage']:.1%} inside the intervals"
            if "holdout_interval_coverage" in m
            else ""
        )
        return (
            f"holdout RMSE {m['holdout_rmse']:.4g} (constant {m['holdout_rmse_constant']:.4g}), "
            f"MAE {m['holdout_mae']:.4g}, R² {m['holdout_r2']:.3f}{inside}"
        )


def train(
    settings: Settings,
    spec: ModelSpec,
    storage: str | None = None,
    jobs: int = 1,
    warm_start: bool = False,
    announce: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train one spec (tuning it first when the spec has ``tuning``), log the run to MLflow,
    register a version and make it champion if it beats the current one.

    ``storage``: the Optuna storage URL (default: SQLite in the data folder). ``jobs``:
    processes working on the study at once. ``warm_start``: continue boosting from the
    champion's booster with its parameters (no tuning); the parent version is recorded.
    ``announce``: told progress lines a user waits for (the Optuna study's name, which other
    machines join with ``tune-worker --study``).
    """
    import mlflow

    experiment_id = tracking.configure(settings)
    if spec.tuning is not None and not warm_start and storage is None:
        services.require_optuna(settings)  # before a run is started
    store = feast_ops.load_store(settings)
    started = time.perf_counter()
    data = training_set(settings, spec, store)  # refused here: no run is left behind
    retrieval_seconds = time.perf_counter() - started
    plugin = get_plugin(spec.plugin)
    # Refused before the run starts too: a warm start with nothing new leaves no run behind.
    parent = registry.load_parent(spec) if warm_start else None
    fit_segments = new_rows(data.segments, parent) if parent is not None else data.segments

    # A training killed before its end left a RUNNING run: mark it KILLED (run_owner.py).
    run_owner.close_dead_runs(mlflow.MlflowClient(), experiment_id)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=spec.name, tags=run_owner.owner_tags()
    ) as run:
        run_log.log_run_start(settings, spec, data, fit_segments, store, retrieval_seconds)
        if parent is not None:
            run_log.log_parent(parent.version, len(fit_segments["train"]))
        best = _parameters(
            settings, spec, plugin, data, parent, storage, jobs, experiment_id, run, announce
        )
        model, metrics = fit_and_evaluate(
            spec,
            plugin,
            fit_segments,
            data.info.feature_columns,
            best,
            parent.model if parent is not None else None,
        )
        params = run_log.log_fit(spec, data, model, metrics)
        mlflow.log_metric("train_rows", len(fit_segments["train"]))  # `models --json` rows
        mlflow.set_tags({f"featurestack.env.{k}": v for k, v in tracking.environment().items()})
        snapshot = published_snapshot(settings)
        if snapshot is not None:  # the dataset version read (`featurestack datasets`)
            mlflow.set_tag(SNAPSHOT_TAG, snapshot)
        fault_point("train.before_register")  # the fault tests kill training here
        version = run_log.log_model(spec, model, data)

    client = mlflow.MlflowClient()
    run_log.tag_version(
        client,
        spec,
        version,
        run.info.run_id,
        data.info.name,
        metrics,
        parent.version if parent is not None else None,
    )
    decision = registry.decide_promotion(client, spec, version, metrics, data.segments["holdout"])
    decision = registry.gate(decision, gates.check(spec, metrics))
    registry.apply_decision(client, spec.name, version, decision)
    card = model_card(spec, version, data, metrics, decision)
    client.log_text(run.info.run_id, card, "model_card.md")
    client.update_model_version(spec.name, version, description=card)
    return TrainResult(
        spec=spec.name,
        run_id=run.info.run_id,
        model_name=spec.name,
        version=version,
        metrics=metrics,
        rows={k: len(v) for k, v in data.segments.items()},
        params=params,
        decision=decision,
        dropped=list(data.checked.dropped),
    )


def _parameters(
    settings: Settings,
    spec: ModelSpec,
    plugin: type[ModelPlugin],
    data: TrainingSet,
    parent: Parent | None,
    storage: str | None,
    jobs: int,
    experiment_id: str,
    run: Any,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """The plugin parameters to fit with: the parent's (a warm start: more trees on top of its
    own), the best trial of the spec's Optuna study (each trial a nested run), or None (the
    spec's own)."""
    if parent is not None:
        return {k: v for k, v in base_model(parent.model).get_params().items() if k != "task"}
    if spec.tuning is None:
        return None
    study = tune(
        spec,
        plugin,
        data.segments["train"],
        data.info.feature_columns,
        storage or settings.optuna_storage,
        on_trial=partial(
            run_log.log_trial,
            settings.mlflow_tracking_uri,
            experiment_id,
            run.info.run_id,
            spec.name,
            spec.primary_metric,
        ),
        jobs=jobs,
        attrs={PARENT_RUN_ATTR: run.info.run_id, EXPERIMENT_ATTR: experiment_id},
        on_start=(
            None
            if announce is None
            else lambda name: announce(
                f"  Optuna study {name} ({jobs} worker(s)); more machines join with "
                f"`featurestack tune-worker --study {name}`"
            )
        ),
    )
    run_log.log_study(study)
    return study.best_params


def tune_worker(settings: Settings, study: str, seed: int | None = None) -> tuple[str, int]:
    """Join the running study ``study`` from this process (any machine that reaches the same
    Optuna storage, MLflow store and published features); return (spec, trials run here).

    The training set is rebuilt here from Feast exactly as ``train`` builds it, and must give
    the same rows (the study's fingerprint); each trial is logged as a nested run of the
    training run that started the study.
    """
    import optuna

    from models_py.spec import load_spec

    services.require_optuna(settings)
    storage = settings.optuna_storage
    try:
        existing = optuna.load_study(study_name=study, storage=storage)
    except KeyError as err:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise NotFound(
            f"no study {study!r} in the Optuna storage {storage.split('?')[0]} (studies there: "
            f"{', '.join(names) or 'none'}); start one with `featurestack train --spec NAME "
            "--workers N` on the same profile"
        ) from err
    spec_name = existing.user_attrs.get(SPEC_ATTR)
    if spec_name is None:
        raise NotFound(f"study {study!r} was not started by featurestack train (no spec)")
    stored = existing.user_attrs.get(SPEC_JSON_ATTR)
    spec = ModelSpec.model_validate(stored) if stored else load_spec(spec_name)
    experiment_id = tracking.configure(settings)
    data = training_set(settings, spec)
    parent = existing.user_attrs.get(PARENT_RUN_ATTR)
    on_trial = None
    if parent:
        on_trial = partial(
            run_log.log_trial,
            settings.mlflow_tracking_uri,
            existing.user_attrs.get(EXPERIMENT_ATTR, experiment_id),
            parent,
            spec.name,
            spec.primary_metric,
        )
    chosen = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
    ran = join(
        spec, data.segments["train"], data.info.feature_columns, storage, chosen, on_trial, study
    )
    return spec.name, ran


def model_card(
    spec: ModelSpec, version: str, data: TrainingSet, metrics: dict[str, float], decision: Decision
) -> str:
    """The version's model card in Markdown (its registry description and ``model_card.md``
    in the run's artifacts): what it predicts and is for (the spec's description), the data,
    features, holdout metrics and the promotion decision with each quality gate."""
    segs = data.segments
    span = {
        name: (
            f"{frame['event_timestamp'].min():%Y-%m-%d} → {frame['event_timestamp'].max():%Y-%m-%d}"
            if len(frame)
            else "empty"
        )
        for name, frame in segs.items()
    }
    lines = [
        f"# {spec.name} v{version}",
        "",
        spec.description.strip() or "(the spec has no description: say what it is for there)",
        "",
        "## Data",
        f"- features: service `{data.info.name}` ({len(data.info.feature_columns)} features)",
        f"- label: `{spec.label.target}` of `{spec.label.model}`; task {spec.task}",
        *(f"- {name}: {len(segs[name])} rows, {span[name]}" for name in segs),
        f"- split by {spec.split.period}, embargo {spec.split.embargo_periods}",
    ]
    if spec.imbalance != "none":
        lines.append(f"- class imbalance: {spec.imbalance}")
    lines += ["", "## Features", ", ".join(f"`{f}`" for f in data.info.feature_columns), ""]
    lines += ["## Holdout metrics", "", "| metric | value |", "|---|---|"]
    for key in sorted(metrics):
        if key.startswith("holdout_") and metrics[key] == metrics[key]:
            lines.append(f"| {key[len('holdout_') :]} | {metrics[key]:.4g} |")
    if "threshold" in metrics:
        lines.append(
            f"| decision threshold ({spec.threshold_objective}) | {metrics['threshold']:.4g} |"
        )
    lines += ["", "## Decision", "", decision.reason]
    lines += [f"- {v.line()}" for v in decision.verdicts]
    lines += [
        "",
        "## Limits",
        f"- trained on events up to {segs['train']['event_timestamp'].max():%Y-%m-%d}; "
        "monitor drift (`featurestack monitor`) before trusting it on much later data",
    ]
    return "\n".join(lines) + "\n"


#: run tag naming the published snapshot a training run read
SNAPSHOT_TAG = "featurestack.snapshot"


def published_snapshot(settings: Settings) -> str | None:
    """The id of the published snapshot ``current`` points at (None: not a snapshot layout)."""
    current = settings.published_dir / "current"
    if not current.is_symlink():
        return None
    return os.path.basename(os.readlink(current))


def datasets(settings: Settings) -> list[dict[str, Any]]:
    """Published snapshots still kept, newest first, with the training runs that read each
    (and whether one of them registered the champion of its model)."""
    import mlflow

    experiment_id = tracking.configure(settings)
    client = mlflow.MlflowClient()
    kept = sorted(
        (p.name for p in (settings.published_dir / "snapshots").glob("*") if p.is_dir()),
        reverse=True,
    )
    used: dict[str, list[str]] = {}
    for run in client.search_runs([experiment_id], filter_string=f"tags.`{SNAPSHOT_TAG}` != ''"):
        used.setdefault(run.data.tags[SNAPSHOT_TAG], []).append(run.info.run_id)
    champions = set()
    for model in client.search_registered_models():
        current = registry.champion_version(client, model.name)
        if current is not None:
            champions.add(current.run_id)
    current_id = published_snapshot(settings)
    rows = [
        {
            "snapshot": s,
            "current": s == current_id,
            "kept": s in kept,
            "runs": used.get(s, []),
            "champion_runs": [r for r in used.get(s, []) if r in champions],
        }
        for s in sorted(set(kept) | set(used), reverse=True)
    ]
    return rows
