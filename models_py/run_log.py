"""What a training run records in MLflow: lineage, the Optuna study, the fitted model and its
evaluation, and the tags of the registered version.

Every name written here is in models_py/contract.py; the functions log to the active run (or
the given version) and compute nothing that decides the model: the fit and the evaluation
happen before, in models_py/fitting.py.
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from featurestack.core.settings import Settings
from models_py import tracking
from models_py.contract import (
    DBT_MANIFEST_SHA256,
    FEAST_FEATURES,
    FEAST_SERVICE_TAG,
    FEATURE_REFS,
    FEATURE_SERVICE,
    GIT_COMMIT,
    INPUT_RANGES,
    LABEL_MODEL,
    MODEL,
    MONITORING_REFERENCE,
    PARENT_VERSION,
    RUN_ID,
    SEED,
    SPEC,
    TASK,
    THRESHOLD,
    TRAIN_END,
    TRIAL,
    data_tag,
    spec_artifact,
    tag,
    version_tag,
)
from models_py.dataset import ServiceInfo, TrainingSet
from models_py.encoding import encode
from models_py.fitting import reference_sample
from models_py.model_inputs import feature_ranges
from models_py.scoring import anatomy
from models_py.spec import ModelSpec
from models_py.tuning import StudyResult

if TYPE_CHECKING:
    from feast import FeatureStore

#: the packages pinned in a logged model's requirements (its pickle needs their versions)
MODEL_REQUIREMENTS = (
    "lightgbm",
    "xgboost",
    "scikit-learn",
    "pandas",
    "numpy",
    "cloudpickle",
    "pydantic",
)


def lineage_tags(settings: Settings, spec: ModelSpec, info: ServiceInfo) -> dict[str, str]:
    """Everything needed to trace a model back to its data and code."""
    tags = {
        tag(FEATURE_SERVICE): info.name,
        tag(FEATURE_REFS): ",".join(info.feature_refs),
        tag(SPEC): spec.name,
        tag(LABEL_MODEL): spec.label.model,
        tag(GIT_COMMIT): tracking.git_commit(settings.project.root),
        tag(SEED): str(spec.seed),
    }
    manifest = settings.project.manifest
    if manifest.exists():
        tags[tag(DBT_MANIFEST_SHA256)] = tracking.file_sha256(manifest)
    for path in read_paths(settings, spec, info):
        tags[data_tag(Path(path).stem)] = tracking.file_sha256(path)
    tags.update({version_tag(k): v for k, v in tracking.package_versions().items()})
    return tags


def read_paths(settings: Settings, spec: ModelSpec, info: ServiceInfo) -> set[str]:
    """The published tables a training run reads: the service's sources and the labels."""
    return {*info.source_paths, str(settings.published_table(spec.label.model))}


def log_trial(
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
        mlflow.set_tags({tag(TRIAL): str(trial.number), "state": trial.state.name})
        mlflow.log_params(trial.params)
        for step, value in enumerate(fold_scores):
            mlflow.log_metric(f"cv_{metric}", value, step=step)
        if trial.value is not None:
            mlflow.log_metric(f"cv_mean_{metric}", trial.value)


def log_study(study: StudyResult) -> None:
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


def log_reference(
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
    import mlflow

    frame = reference_sample(model, segments, features, keys, spec.label.target, spec.seed)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / Path(MONITORING_REFERENCE).name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(MONITORING_REFERENCE).parent))


def log_evaluation(
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

    parts = anatomy(model)
    plugin_model, encoder = parts.plugin, parts.encoder
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
        X = parts.encode(holdout[features])
        bounds = parts.interval.predict_interval(X) if parts.interval is not None else None
        figures = regression_figures(y, parts.inner.predict(X), bounds, importance, contributions)
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


def log_feast_retrieval(
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


def log_run_start(
    settings: Settings,
    spec: ModelSpec,
    data: TrainingSet,
    fit_segments: dict[str, pd.DataFrame],
    store: FeatureStore,
    retrieval_seconds: float,
) -> None:
    """Lineage tags, the end of the fitted window, and Feast's retrieval facts."""
    import mlflow

    mlflow.set_tags(lineage_tags(settings, spec, data.info))
    mlflow.set_tag(tag(TRAIN_END), fit_segments["train"]["event_timestamp"].max().isoformat())
    log_feast_retrieval(store, data.info, data.entity_df(spec), retrieval_seconds)


def log_parent(parent_version: str, rows: int) -> None:
    """A warm start: which version it continues and on how many new training rows."""
    import mlflow

    mlflow.set_tag(tag(PARENT_VERSION), parent_version)
    mlflow.log_metric("warm_start_rows", rows)


def log_fit(
    spec: ModelSpec, data: TrainingSet, model: Any, metrics: dict[str, float]
) -> dict[str, Any]:
    """Parameters, metrics and every artifact of a fitted model but the model itself; returns
    the plugin's parameters."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    segments, features = data.segments, data.info.feature_columns
    keys = [*data.info.join_keys, "event_timestamp"]
    plugin_model = anatomy(model).plugin
    params = dict(plugin_model.get_params().items())
    mlflow.log_params({"plugin": spec.plugin, "task": spec.task, **params})
    mlflow.log_params({f"split.{k}": v for k, v in spec.split.model_dump().items()})
    mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})  # drop NaN
    mlflow.log_metric("best_iteration", getattr(plugin_model, "best_iteration_", 0))
    mlflow.log_params(
        {"calibration": spec.calibration, "threshold_objective": spec.threshold_objective}
    )
    mlflow.log_input(
        from_pandas(data.entity_df(spec), name=spec.label.model, targets=spec.label.target),
        context="training",
    )
    mlflow.log_dict(spec.model_dump(mode="json"), spec_artifact(spec.name))
    if hasattr(plugin_model, "feature_importances"):
        mlflow.log_dict(plugin_model.feature_importances(), "feature_importance_gain.json")
    mlflow.log_dict({k: len(v) for k, v in segments.items()}, "split_rows.json")
    report = data.checked.as_dict()
    mlflow.log_dict(report, "training_set_report.json")
    mlflow.log_metrics({f"{seg}_positive_rate": r for seg, r in report["positive_rate"].items()})
    # What the model has seen: prediction inputs outside it are flagged when scoring.
    fitted_on = pd.concat([segments["train"], segments["validation"]], ignore_index=True)
    mlflow.log_dict(feature_ranges(fitted_on, features), INPUT_RANGES)
    log_reference(model, segments, features, keys, spec)
    log_evaluation(spec, model, segments["holdout"], features, keys, metrics, params)
    return params


def log_model(spec: ModelSpec, model: Any, data: TrainingSet) -> str:
    """The model (signature, input example, pinned requirements, our code) registered under
    the spec's name, and Feast's contract file; returns the new version."""
    import mlflow
    from mlflow.models import infer_signature

    example = data.segments["holdout"][data.info.feature_columns].head(5)
    classifier = hasattr(model, "predict_proba")
    output = model.predict_proba(example) if classifier else model.predict(example)
    model_info = mlflow.sklearn.log_model(
        model,
        name=MODEL,
        signature=infer_signature(example, output),
        input_example=example,
        pyfunc_predict_fn="predict_proba" if classifier else "predict",
        serialization_format="cloudpickle",
        registered_model_name=spec.name,
        code_paths=[str(Path(__file__).resolve().parent)],  # this package, as it is now
        pip_requirements=[f"{pkg}=={version(pkg)}" for pkg in MODEL_REQUIREMENTS],
    )
    # Feast's contract file: its resolver checks the service still serves these features.
    mlflow.log_text(json.dumps(data.info.feature_refs), FEAST_FEATURES)
    return str(model_info.registered_model_version)


def tag_version(
    client: Any,
    spec: ModelSpec,
    version: str,
    run_id: str,
    service: str,
    metrics: dict[str, float],
    parent_version: str | None,
) -> None:
    """What scoring reads from the version itself: its service, run, threshold and task."""
    for key in (tag(FEATURE_SERVICE), FEAST_SERVICE_TAG):
        client.set_model_version_tag(spec.name, version, key, service)
    client.set_model_version_tag(spec.name, version, tag(RUN_ID), run_id)
    if "threshold" in metrics:
        client.set_model_version_tag(
            spec.name, version, tag(THRESHOLD), f"{metrics['threshold']:.6g}"
        )
    client.set_model_version_tag(spec.name, version, tag(TASK), spec.task)
    if parent_version is not None:
        client.set_model_version_tag(spec.name, version, tag(PARENT_VERSION), parent_version)
