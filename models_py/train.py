"""Training: Feast training set → plugin fit → holdout evaluation → MLflow run and registry.

The fit and the evaluation are pure functions of the frames; everything that touches Feast or
MLflow happens in :func:`train`, which is the only function with side effects.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from featurestack import feast_ops
from featurestack.settings import DBT_PROJECT_DIR, REPO_ROOT, Settings
from models_py import registry, tracking
from models_py.dataset import ServiceInfo, read_labels, service_info, time_split, training_frame
from models_py.encoding import encode, fit_encoder, split_pipeline, with_encoder
from models_py.intervals import IntervalRegressor, conformal_halfwidth
from models_py.metrics import (
    choose_threshold,
    classification_metrics,
    interval_metrics,
    regression_metrics,
)
from models_py.plugins import get_plugin
from models_py.plugins.base import ModelPlugin
from models_py.spec import ModelSpec
from models_py.tuning import SPEC_ATTR, SPEC_JSON_ATTR, StudyResult, direction, join, tune
from validation.model_inputs import check_training_set, feature_ranges

if TYPE_CHECKING:
    from feast import FeatureStore

CHAMPION = registry.CHAMPION
INPUT_RANGES = "input_ranges.json"
#: Feast's MLflow integration: the features a run used, and the service a version resolves to
FEAST_FEATURES = "feast_features.json"
#: run tag: the newest event time of the rows the model was fitted on (warm starts go on after)
TRAIN_END = "train_end"
FEAST_SERVICE_TAG = "feast.feature_service"
#: A sample of what the version saw, with its scores: the baseline ``featurestack monitor``
#: compares served features and predictions with (models_py/monitor.py).
MONITORING_REFERENCE = "monitoring/reference.parquet"
TAG_PREFIX = "featurestack."


@dataclass
class TrainResult:
    spec: str
    run_id: str
    model_name: str
    version: str
    metrics: dict[str, float]
    rows: dict[str, int]
    params: dict[str, Any] = field(default_factory=dict)
    decision: registry.Decision | None = None

    @property
    def alias(self) -> str:
        return CHAMPION if self.decision is None or self.decision.promoted else "challenger"

    def summary(self) -> str:
        m = self.metrics
        why = f"\n  registry: {self.decision.reason}" if self.decision else ""
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


def _imbalance(
    spec: ModelSpec, plugin: type[ModelPlugin], params: dict[str, Any], train: pd.DataFrame
) -> Any:
    """Apply the spec's class-imbalance method: plugin parameters, or the sample weights."""
    if spec.imbalance == "sample_weight":
        return train[spec.sample_weight_column].to_numpy(dtype="float64")
    if spec.imbalance == "none":
        return None
    if spec.imbalance not in plugin.Params.model_fields:
        raise ValueError(
            f"imbalance {spec.imbalance!r}: plugin {plugin.name!r} has no such parameter; "
            "use sample_weight or another plugin"
        )
    if spec.imbalance == "class_weight":
        params["class_weight"] = "balanced"
    else:
        positives = int(train[spec.label.target].sum())
        params["scale_pos_weight"] = (len(train) - positives) / max(positives, 1)
    return None


def fit_and_evaluate(
    spec: ModelSpec,
    plugin: type[ModelPlugin],
    segments: dict[str, pd.DataFrame],
    features: list[str],
    params: dict[str, Any] | None = None,
    parent: Any = None,
) -> tuple[Any, dict[str, float]]:
    """Fit on train (early stopping on validation) and score validation and holdout.

    ``params``: the plugin parameters (default: the spec's; tuning passes the best trial's).
    Classification: calibration and the decision threshold are fitted on validation.
    Regression: intervals (conformal on validation residuals, or quantile models). Text
    features are ordinal-encoded in front of the plugin (models_py/encoding.py). ``parent``: a
    logged model to continue from (warm start: its encoder and its booster are kept).
    """
    target = spec.label.target
    params = dict(spec.params if params is None else params)
    if "random_state" in plugin.Params.model_fields:  # the spec's seed, unless it sets one
        params.setdefault("random_state", spec.seed)
    train, valid = segments["train"], segments["validation"]
    weights = _imbalance(spec, plugin, params, train)
    parent_encoder, _ = split_pipeline(parent) if parent is not None else (None, None)
    encoder = parent_encoder if parent is not None else fit_encoder(train, features)
    X = {name: encode(encoder, seg, features) for name, seg in segments.items()}
    model: Any = plugin.from_params(spec.task, params)
    model.fit(
        X["train"],
        train[target],
        sample_weight=weights,
        eval_set=(X["validation"], valid[target]),
        init_model=base_model(parent) if parent is not None else None,
    )
    metrics: dict[str, float] = {}
    if spec.task in ("binary", "multiclass"):
        if spec.calibration != "none":
            from sklearn.calibration import CalibratedClassifierCV
            from sklearn.frozen import FrozenEstimator

            method = "sigmoid" if spec.calibration == "platt" else "isotonic"
            model = CalibratedClassifierCV(FrozenEstimator(model), method=method)
            model.fit(X["validation"], valid[target])
        threshold = 0.5
        if spec.task == "binary":  # multiclass decides by the most probable class
            threshold = choose_threshold(
                valid[target], model.predict_proba(X["validation"])[:, 1], spec.threshold_objective
            )
            metrics["threshold"] = threshold
        for name in ("validation", "holdout"):
            proba = model.predict_proba(X[name])
            values = classification_metrics(
                segments[name][target], proba, model.classes_, threshold
            )
            metrics.update({f"{name}_{k}": v for k, v in values.items()})
        return with_encoder(encoder, model), metrics
    if spec.interval is not None:
        model = _with_interval(spec, plugin, params, model, X, segments, weights)
    for name in ("validation", "holdout"):
        y = segments[name][target]
        values = regression_metrics(y, model.predict(X[name]))
        if isinstance(model, IntervalRegressor):
            values.update(interval_metrics(y, *model.predict_interval(X[name])))
        metrics.update({f"{name}_{k}": v for k, v in values.items()})
    return with_encoder(encoder, model), metrics


def _with_interval(
    spec: ModelSpec,
    plugin: type[ModelPlugin],
    params: dict[str, Any],
    point: ModelPlugin,
    X: dict[str, pd.DataFrame],
    segments: dict[str, pd.DataFrame],
    weights: Any,
) -> IntervalRegressor:
    assert spec.interval is not None
    coverage, target = spec.interval.coverage, spec.label.target
    bounds = spec.label.bounds.get(target, (None, None))
    valid = segments["validation"]
    if spec.interval.method == "conformal":
        residuals = valid[target].to_numpy() - point.predict(X["validation"])
        halfwidth = conformal_halfwidth(residuals, coverage)
        return IntervalRegressor(point, halfwidth, coverage=coverage, bounds=bounds).fit(None, None)
    if "quantile" not in plugin.tasks or "alpha" not in plugin.Params.model_fields:
        raise ValueError(
            f"plugin {plugin.name!r} has no quantile task: use interval method conformal"
        )
    quantiles = []
    for alpha in ((1 - coverage) / 2, (1 + coverage) / 2):
        q = plugin.from_params("quantile", {**params, "alpha": alpha})
        q.fit(
            X["train"],
            segments["train"][target],
            sample_weight=weights,
            eval_set=(X["validation"], valid[target]),
        )
        quantiles.append(q)
    return IntervalRegressor(
        point, None, quantiles[0], quantiles[1], coverage=coverage, bounds=bounds
    ).fit(None, None)


def base_model(model: Any) -> ModelPlugin:
    """The plugin inside a logged model: behind the encoder, the calibration, the intervals."""
    _, model = split_pipeline(model)
    if isinstance(model, IntervalRegressor):
        model = model.point
    frozen = getattr(model, "estimator", None)
    return getattr(frozen, "estimator", model) if frozen is not None else model


def lineage_tags(settings: Settings, spec: ModelSpec, info: ServiceInfo) -> dict[str, str]:
    """Everything needed to trace a model back to its data and code."""
    tags = {
        "feature_service": info.name,
        "feature_refs": ",".join(info.feature_refs),
        "spec": spec.name,
        "label_model": spec.label.model,
        "git_commit": tracking.git_commit(),
        "seed": str(spec.seed),
    }
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    if manifest.exists():
        tags["dbt_manifest_sha256"] = tracking.file_sha256(manifest)
    for path in {*info.source_paths, str(settings.published_table(spec.label.model))}:
        tags[f"data.{Path(path).stem}.sha256"] = tracking.file_sha256(path)
    tags.update({f"version.{k}": v for k, v in tracking.package_versions().items()})
    return {TAG_PREFIX + k: v for k, v in tags.items()}


def _log_trial(
    tracking_uri: str,
    experiment_id: str,
    parent_run_id: str,
    spec_name: str,
    metric: str,
    trial: Any,
    fold_scores: list[float],
) -> None:
    """One nested MLflow run per Optuna trial: its parameters, fold scores and outcome.

    Module-level with plain arguments, so worker processes (``--jobs``) can log too.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"{spec_name}-trial-{trial.number}",
        nested=True,
        parent_run_id=parent_run_id,
    ):
        mlflow.set_tags({TAG_PREFIX + "trial": str(trial.number), "state": trial.state.name})
        mlflow.log_params(trial.params)
        for step, value in enumerate(fold_scores):
            mlflow.log_metric(f"cv_{metric}", value, step=step)
        if trial.value is not None:
            mlflow.log_metric(f"cv_mean_{metric}", trial.value)


def _log_study(study: StudyResult) -> None:
    """The study's outcome on the parent run: best value, counts, history (JSON and a plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_params({"tuning.study": study.study_name, "tuning.direction": study.direction})
    mlflow.log_metrics(
        {
            "tuning_best_cv": study.best_value,
            "tuning_trials": study.trials,
            "tuning_pruned": study.pruned,
        }
    )
    mlflow.log_dict(
        {"best_params": study.best_params, "trials": study.history}, "optuna_study.json"
    )
    done = [(t["number"], t["value"]) for t in study.history if t["value"] is not None]
    if done:
        numbers, values = zip(*done, strict=True)
        best = (
            np.maximum.accumulate(values)
            if study.direction == "maximize"
            else (np.minimum.accumulate(values))
        )
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.scatter(numbers, values, s=12, label="trial (mean over folds)")
        ax.plot(numbers, best, color="C1", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel("cross-validated score")
        ax.legend()
        fig.tight_layout()
        mlflow.log_figure(fig, "optuna_history.png")
        plt.close(fig)
    if study.importances:
        mlflow.log_dict(study.importances, "optuna_param_importances.json")
        names = sorted(study.importances, key=study.importances.__getitem__)
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1))
        ax.barh(names, [study.importances[n] for n in names])
        ax.set_xlabel("importance (fANOVA)")
        fig.tight_layout()
        mlflow.log_figure(fig, "optuna_param_importances.png")
        plt.close(fig)


def _log_reference(
    model: Any,
    segments: dict[str, pd.DataFrame],
    features: list[str],
    keys: list[str],
    spec: ModelSpec,
) -> None:
    """The monitoring baseline as an artifact of the active run: a seeded sample of the rows
    the model was fitted on (segment ``fit``) and of the holdout, with the label and the model's
    score, so drift is measured against the version itself, not against whatever data exists
    when the monitor runs."""
    import tempfile

    import mlflow

    from models_py.monitor import reference_sample

    frame = reference_sample(model, segments, features, keys, spec.label.target, spec.seed)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / Path(MONITORING_REFERENCE).name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(MONITORING_REFERENCE).parent))


def _log_evaluation(
    spec: ModelSpec,
    model: Any,
    holdout: pd.DataFrame,
    features: list[str],
    keys: list[str],
    metrics: dict[str, float],
    params: dict[str, Any],
) -> None:
    """Holdout figures (ROC, PR, confusion, calibration, importances), per-prediction feature
    contributions and one self-contained HTML report, as artifacts of the active run."""
    import matplotlib.pyplot as plt
    import mlflow

    from models_py.report import (
        evaluation_figures,
        html_report,
        multiclass_figures,
        regression_figures,
    )

    plugin_model = base_model(model)
    encoder, inner = split_pipeline(model)
    y = holdout[spec.label.target].to_numpy()
    importance = (
        plugin_model.feature_importances() if hasattr(plugin_model, "feature_importances") else None
    )
    contributions = None
    # Multiclass boosters give one block of contributions per class: not drawn here.
    if hasattr(plugin_model, "contributions") and spec.task != "multiclass":
        sample = holdout.head(500)
        encoded = encode(encoder, sample, features)
        contributions = pd.DataFrame(
            plugin_model.contributions(encoded),
            columns=[*encoded.columns, "bias"],
            index=sample.index,
        )
        keyed = pd.concat([sample[keys], contributions], axis=1)
        keyed["event_timestamp"] = keyed["event_timestamp"].astype(str)
        mlflow.log_table(keyed, "evaluation/feature_contributions_holdout.json")
    if "threshold" in metrics:
        p = model.predict_proba(holdout[features])[:, 1]
        figures = evaluation_figures(y, p, metrics["threshold"], importance, contributions)
    elif spec.task == "multiclass":
        proba = model.predict_proba(holdout[features])
        figures = multiclass_figures(y, proba, model.classes_, importance)
    else:
        X = encode(encoder, holdout, features)
        bounds = inner.predict_interval(X) if isinstance(inner, IntervalRegressor) else None
        figures = regression_figures(y, inner.predict(X), bounds, importance, contributions)
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"evaluation/{name}.png")

    def segment(prefix: str) -> dict[str, Any]:
        return {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}

    decision: dict[str, Any] = (
        {
            "threshold": metrics["threshold"],
            "threshold objective": spec.threshold_objective,
            "calibration": spec.calibration,
        }
        if "threshold" in metrics
        else {"decision": "most probable class", "calibration": spec.calibration}
        if spec.task == "multiclass"
        else {"intervals": str(spec.interval.model_dump()) if spec.interval else "none"}
    )
    sections: dict[str, dict[str, Any]] = {
        "Holdout (never seen by tuning, early stopping, calibration or the threshold)": segment(
            "holdout_"
        ),
        "Validation": segment("validation_"),
        "Decision": decision,
        "Model": {"spec": spec.name, "plugin": spec.plugin, "task": spec.task, **params},
    }
    report = html_report(f"{spec.name}: evaluation", sections, figures)
    mlflow.log_text(report, "evaluation_report.html")
    for figure in figures.values():
        plt.close(figure)


def task_metrics(
    model: Any, frame: pd.DataFrame, features: list[str], target: str
) -> dict[str, float]:
    """A logged model's metrics on ``frame``: classification ones if it gives probabilities,
    else regression ones (threshold-free metrics are what a promotion compares)."""
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(frame[features])
        return classification_metrics(frame[target], proba, model.classes_)
    return regression_metrics(frame[target], model.predict(frame[features]))


def _decide(
    client: Any,
    spec: ModelSpec,
    version: str,
    metrics: dict[str, float],
    holdout: pd.DataFrame,
) -> registry.Decision:
    """Champion or challenger: the current champion is scored on this run's holdout."""
    import mlflow

    metric = spec.primary_metric
    current = registry.champion_version(client, spec.name)
    champion_score = None
    if current is not None and str(current.version) != version:
        info = mlflow.models.get_model_info(f"models:/{spec.name}/{current.version}")
        columns = [c.name for c in info.signature.inputs.inputs] if info.signature else []
        if columns and set(columns) <= set(holdout.columns):
            champion = mlflow.sklearn.load_model(f"models:/{spec.name}/{current.version}")
            champion_score = task_metrics(champion, holdout, columns, spec.label.target)[metric]
    return registry.decide(
        metric,
        metrics[f"holdout_{metric}"],
        str(current.version) if current is not None else None,
        champion_score,
        spec.promotion_margin,
        maximize=direction(metric) == "maximize",
    )


@dataclass
class Parent:
    """The champion a warm start continues from."""

    model: Any
    version: str
    #: the last event time its boosting saw (None: logged before it was recorded)
    train_end: pd.Timestamp | None


def _parent(spec: ModelSpec) -> Parent:
    import mlflow

    client = mlflow.MlflowClient()
    current = registry.champion_version(client, spec.name)
    if current is None:
        raise LookupError(f"--warm-start: {spec.name} has no champion to continue from")
    end = client.get_run(current.run_id).data.tags.get(TAG_PREFIX + TRAIN_END)
    model = mlflow.sklearn.load_model(f"models:/{spec.name}/{current.version}")
    return Parent(model, str(current.version), pd.Timestamp(end) if end else None)


def new_rows(segments: dict[str, pd.DataFrame], parent: Parent) -> dict[str, pd.DataFrame]:
    """The segments a warm start fits on: training rows after the parent's training window
    (the parent's trees already learned the rest; boosting them again would count them twice).
    Validation and holdout stay whole: early stopping and the evaluation see the usual rows."""
    if parent.train_end is None:
        return segments
    train = segments["train"]
    fresh = train[train["event_timestamp"] > parent.train_end].reset_index(drop=True)
    if fresh.empty:
        raise LookupError(
            f"--warm-start: no training rows after v{parent.version}'s training window "
            f"(it ends {parent.train_end:%Y-%m-%d %H:%M}, so does this training segment); "
            "nothing new to learn. Wait for new data, or train without --warm-start."
        )
    return {**segments, "train": fresh}


def _log_feast_retrieval(
    store: FeatureStore, info: ServiceInfo, entity_df: pd.DataFrame, seconds: float
) -> None:
    """Feast's own lineage tags (feast.feature_service, feast.feature_refs, feast.entity_count,
    entity dataframe columns and time range) on the active run, through its MLflow client.

    The retrieval ran before the run started (a refused training set must leave no run), so
    Feast's auto-log had no run to tag; this records the same facts, the same way.
    """
    client = store.mlflow
    if client is None:  # `mlflow.enabled: false` in feature_store.yaml
        return
    client.log_feature_retrieval(
        feature_refs=info.feature_refs,
        entity_count=len(entity_df),
        duration_seconds=seconds,
        retrieval_type="historical",
        feature_service=store.get_feature_service(info.name),
    )
    client.log_entity_df_metadata(entity_df)


def training_set(
    settings: Settings, spec: ModelSpec, store: FeatureStore | None = None
) -> tuple[ServiceInfo, pd.DataFrame, dict[str, pd.DataFrame], Any]:
    """The spec's point-in-time training set from Feast, split and checked.

    Refuses (``InputError``) before any fit or MLflow run: nothing is logged or registered.
    """
    store = store or feast_ops.load_store(settings)
    info = service_info(store, spec.feature_service)
    labels = read_labels(settings, spec)
    frame = training_frame(store, info, labels, spec.label.target)
    segments = time_split(frame, spec.split)
    checked = check_training_set(segments, info.feature_columns, spec.label.target, spec.task)
    return info, labels, segments, checked


@dataclass
class Reproduction:
    run_id: str
    spec: str
    logged: dict[str, float]
    refitted: dict[str, float]
    data_changed: list[str]

    @property
    def matches(self) -> bool:
        keys = [k for k in self.logged if k.startswith(("holdout_", "validation_"))]
        return bool(keys) and all(
            np.isclose(self.logged[k], self.refitted.get(k, np.nan), rtol=1e-9, atol=1e-12)
            or (np.isnan(self.logged[k]) and np.isnan(self.refitted.get(k, np.nan)))
            for k in keys
        )

    def summary(self) -> str:
        lines = [f"run {self.run_id} ({self.spec}): refitted from its logged spec"]
        if self.data_changed:
            lines.append(f"  published data changed since the run: {', '.join(self.data_changed)}")
        for k in sorted(self.logged):
            if k.startswith("holdout_"):
                new = self.refitted.get(k, float("nan"))
                lines.append(f"  {k:<28} logged {self.logged[k]:.6f}   refitted {new:.6f}")
        lines.append("  metrics match" if self.matches else "  metrics DIFFER")
        return "\n".join(lines)


def reproduce(settings: Settings, run_id: str) -> Reproduction:
    """Rebuild a run's training set from Feast and refit its logged spec (tuning included, in
    a scratch study with the same seed); compare the metrics. Nothing is logged or registered.
    """
    import tempfile

    import mlflow

    tracking.configure(settings)
    run = mlflow.get_run(run_id)
    name = run.data.tags.get(TAG_PREFIX + "spec")
    if not name:
        raise LookupError(f"run {run_id} is not a featurestack training run (no spec tag)")
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/spec/{name}.yaml")
    spec = ModelSpec(**yaml.safe_load(text))
    info, _, segments, _ = training_set(settings, spec)
    changed = []
    for path in {*info.source_paths, str(settings.published_table(spec.label.model))}:
        logged = run.data.tags.get(f"{TAG_PREFIX}data.{Path(path).stem}.sha256")
        if logged and logged != tracking.file_sha256(path):
            changed.append(Path(path).name)
    plugin = get_plugin(spec.plugin)
    best = None
    if spec.tuning is not None:
        with tempfile.TemporaryDirectory() as scratch:
            storage = f"sqlite:///{Path(scratch) / 'study.db'}"
            best = tune(spec, plugin, segments["train"], info.feature_columns, storage).best_params
    _, metrics = fit_and_evaluate(spec, plugin, segments, info.feature_columns, best)
    return Reproduction(run_id, spec.name, dict(run.data.metrics), metrics, sorted(changed))


#: Study attributes naming the MLflow run whose nested runs are the study's trials.
PARENT_RUN_ATTR, EXPERIMENT_ATTR = "featurestack.mlflow_run_id", "featurestack.experiment_id"


def tune_worker(settings: Settings, study: str, seed: int | None = None) -> tuple[str, int]:
    """Join the running study ``study`` from this process (any machine that reaches the same
    Optuna storage, MLflow store and published features); return (spec, trials run here).

    The training set is rebuilt here from Feast exactly as ``train`` builds it, and must give
    the same rows (the study's fingerprint); each trial is logged as a nested run of the
    training run that started the study.
    """
    import optuna

    from featurestack import services
    from models_py.spec import load_spec

    services.require_optuna(settings)
    storage = settings.optuna_storage
    try:
        existing = optuna.load_study(study_name=study, storage=storage)
    except KeyError as err:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise LookupError(
            f"no study {study!r} in the Optuna storage {storage.split('?')[0]} (studies there: "
            f"{', '.join(names) or 'none'}); start one with `featurestack train --spec NAME "
            "--workers N` on the same profile"
        ) from err
    spec_name = existing.user_attrs.get(SPEC_ATTR)
    if spec_name is None:
        raise LookupError(f"study {study!r} was not started by featurestack train (no spec)")
    stored = existing.user_attrs.get(SPEC_JSON_ATTR)
    spec = ModelSpec.model_validate(stored) if stored else load_spec(spec_name)
    experiment_id = tracking.configure(settings)
    info, _, segments, _ = training_set(settings, spec)
    parent = existing.user_attrs.get(PARENT_RUN_ATTR)
    on_trial = None
    if parent:
        on_trial = partial(
            _log_trial,
            settings.mlflow_tracking_uri,
            existing.user_attrs.get(EXPERIMENT_ATTR, experiment_id),
            parent,
            spec.name,
            spec.primary_metric,
        )
    chosen = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
    ran = join(spec, segments["train"], info.feature_columns, storage, chosen, on_trial)
    return spec.name, ran


def train(
    settings: Settings,
    spec: ModelSpec,
    storage: str | None = None,
    jobs: int = 1,
    warm_start: bool = False,
) -> TrainResult:
    """Train one spec (tuning it first when the spec has ``tuning``), log the run to MLflow,
    register a version and make it champion.

    ``storage``: the Optuna storage URL (default: SQLite in the data folder). ``jobs``:
    processes working on the study at once. ``warm_start``: continue boosting from the
    champion's booster with its parameters (no tuning); the parent version is recorded.
    """
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.models import infer_signature

    experiment_id = tracking.configure(settings)
    if spec.tuning is not None and not warm_start and storage is None:
        from featurestack import services

        services.require_optuna(settings)  # before a run is started
    store = feast_ops.load_store(settings)
    started = time.perf_counter()
    info, labels, segments, checked = training_set(settings, spec, store)
    retrieval_seconds = time.perf_counter() - started
    features = info.feature_columns
    plugin = get_plugin(spec.plugin)
    fitted_on = pd.concat([segments["train"], segments["validation"]], ignore_index=True)
    # Refused before the run starts: a warm start with nothing new leaves no run behind.
    parent = _parent(spec) if warm_start else None
    fit_segments = new_rows(segments, parent) if parent is not None else segments

    with mlflow.start_run(experiment_id=experiment_id, run_name=spec.name) as run:
        mlflow.set_tags(lineage_tags(settings, spec, info))
        mlflow.set_tag(
            TAG_PREFIX + TRAIN_END, fit_segments["train"]["event_timestamp"].max().isoformat()
        )
        entity_df = labels[[*info.join_keys, "event_timestamp", spec.label.target]]
        _log_feast_retrieval(store, info, entity_df, retrieval_seconds)
        best = None
        parent_version = parent.version if parent is not None else None
        if parent is not None:
            # the parent's hyper-parameters, more trees on top of its own
            best = {k: v for k, v in base_model(parent.model).get_params().items() if k != "task"}
            mlflow.set_tag(TAG_PREFIX + "parent_version", parent.version)
            mlflow.log_metric("warm_start_rows", len(fit_segments["train"]))
        elif spec.tuning is not None:
            study = tune(
                spec,
                plugin,
                segments["train"],
                features,
                storage or settings.optuna_storage,
                on_trial=partial(
                    _log_trial,
                    settings.mlflow_tracking_uri,
                    experiment_id,
                    run.info.run_id,
                    spec.name,
                    spec.primary_metric,
                ),
                jobs=jobs,
                attrs={
                    PARENT_RUN_ATTR: run.info.run_id,
                    EXPERIMENT_ATTR: experiment_id,
                },
            )
            _log_study(study)
            best = study.best_params
        model, metrics = fit_and_evaluate(
            spec, plugin, fit_segments, features, best, parent.model if parent else None
        )
        example = segments["holdout"][features].head(5)
        classifier = hasattr(model, "predict_proba")
        output = model.predict_proba(example) if classifier else model.predict(example)
        signature = infer_signature(example, output)
        plugin_model = base_model(model)
        params = {k: v for k, v in plugin_model.get_params().items()}
        mlflow.log_params({"plugin": spec.plugin, "task": spec.task, **params})
        mlflow.log_params({f"split.{k}": v for k, v in spec.split.model_dump().items()})
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})  # drop NaN
        mlflow.log_metric("best_iteration", getattr(plugin_model, "best_iteration_", 0))
        mlflow.log_params(
            {"calibration": spec.calibration, "threshold_objective": spec.threshold_objective}
        )
        mlflow.log_input(
            from_pandas(entity_df, name=spec.label.model, targets=spec.label.target),
            context="training",
        )
        mlflow.log_dict(spec.model_dump(mode="json"), f"spec/{spec.name}.yaml")
        if hasattr(plugin_model, "feature_importances"):
            mlflow.log_dict(plugin_model.feature_importances(), "feature_importance_gain.json")
        mlflow.log_dict({k: len(v) for k, v in segments.items()}, "split_rows.json")
        mlflow.log_dict(checked.as_dict(), "training_set_report.json")
        mlflow.log_metrics(
            {
                f"{seg}_positive_rate": rate
                for seg, rate in checked.as_dict()["positive_rate"].items()
            }
        )
        # What the model has seen: prediction inputs outside it are flagged when scoring.
        mlflow.log_dict(feature_ranges(fitted_on, features), INPUT_RANGES)
        _log_reference(model, segments, features, [*info.join_keys, "event_timestamp"], spec)
        _log_evaluation(
            spec,
            model,
            segments["holdout"],
            features,
            [*info.join_keys, "event_timestamp"],
            metrics,
            params,
        )
        model_info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pyfunc_predict_fn="predict_proba" if classifier else "predict",
            serialization_format="cloudpickle",
            registered_model_name=spec.name,
            code_paths=[str(REPO_ROOT / "models_py")],
            pip_requirements=[
                f"{pkg}=={version(pkg)}"
                for pkg in (
                    "lightgbm",
                    "xgboost",
                    "scikit-learn",
                    "pandas",
                    "numpy",
                    "cloudpickle",
                    "pydantic",
                )
            ],
        )
        # Feast's contract file: its resolver checks the service still serves these features.
        mlflow.log_text(json.dumps(info.feature_refs), FEAST_FEATURES)
    model_version = str(model_info.registered_model_version)
    client = mlflow.MlflowClient()
    for key in (TAG_PREFIX + "feature_service", FEAST_SERVICE_TAG):
        client.set_model_version_tag(spec.name, model_version, key, info.name)
    client.set_model_version_tag(spec.name, model_version, TAG_PREFIX + "run_id", run.info.run_id)
    if "threshold" in metrics:
        client.set_model_version_tag(
            spec.name, model_version, TAG_PREFIX + "threshold", f"{metrics['threshold']:.6g}"
        )
    client.set_model_version_tag(spec.name, model_version, TAG_PREFIX + "task", spec.task)
    if parent_version is not None:
        client.set_model_version_tag(
            spec.name, model_version, TAG_PREFIX + "parent_version", parent_version
        )
    decision = _decide(client, spec, model_version, metrics, segments["holdout"])
    registry.apply_decision(client, spec.name, model_version, decision)
    return TrainResult(
        spec=spec.name,
        run_id=run.info.run_id,
        model_name=spec.name,
        version=model_version,
        metrics=metrics,
        rows={k: len(v) for k, v in segments.items()},
        params=params,
        decision=decision,
    )
