"""Hyper-parameter tuning: an Optuna study over cross-validation folds of the training segment.

Trials are scored on walk-forward folds (expanding windows over dates, each validated on the
next block of dates after an embargo), never on the validation or holdout segments, which stay
for early stopping of the refit and for the final, untouched evaluation. The sampler is TPE
with a fixed seed, so a study run in one process is reproducible; trials report their running
mean after each fold and a pruner (median, or successive halving) stops hopeless ones early.
The study lives in an Optuna storage (SQLite in the data folder by default, PostgreSQL in the
scale profile, any RDB URL), so several processes can work on it at once: ``jobs`` (alias
``--workers``) spawns them on this machine, and :func:`join` lets a process on another machine
(``featurestack tune-worker --study NAME``) add trials to the same study until its budget is
reached. The study's name holds the spec's name, a hash of what its trials depend on and a
fingerprint of the training rows: two specs never share a study, new rows start a new one, and
a worker whose data differs refuses instead of mixing scores of two data sets. Each fold
applies the spec's imbalance method to its own training rows, and a threshold metric (F1 …)
is scored at the threshold the spec's objective picks, as the deployed model's is.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from models_py import splits
from models_py.encoding import encode, fit_encoder, text_columns
from models_py.imbalance import apply_imbalance, oversample
from models_py.metrics import choose_threshold, classification_metrics, regression_metrics
from models_py.plugins.base import ModelPlugin
from models_py.spec import CVSpec, ModelSpec, spec_of_model

if TYPE_CHECKING:
    import optuna

#: Metrics where lower is better; every other one is maximised.
MINIMIZE = frozenset({"log_loss", "brier", "rmse", "mae"})


def direction(metric: str) -> Literal["minimize", "maximize"]:
    return "minimize" if metric in MINIMIZE else "maximize"


def cv_folds(
    frame: pd.DataFrame, cv: CVSpec, target: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Walk-forward (or, for rows that are not a time series, stratified) folds: see
    :func:`models_py.splits.cv_folds`."""
    return splits.cv_folds(frame, cv, target)


#: Metrics that depend on the decision threshold (binary): scored at the chosen threshold.
THRESHOLD_METRICS = frozenset({"f1", "precision", "recall", "accuracy"})


def score(spec: ModelSpec, model: ModelPlugin, X: pd.DataFrame, y: pd.Series) -> float:
    """The spec's primary metric of a fitted model on (X, y).

    A threshold metric of a binary task (F1, precision, recall, accuracy) is scored at the
    threshold the spec's ``threshold_objective`` picks on these rows, as the refit picks it on
    validation: at 0.5 a rare label's F1 is 0 for every trial and the study cannot tell
    them apart.
    """
    if spec.task in ("regression", "quantile"):
        return regression_metrics(y, model.predict(X))[spec.primary_metric]
    proba = model.predict_proba(X)
    threshold = 0.5
    if spec.task == "binary" and spec.primary_metric in THRESHOLD_METRICS:
        threshold = choose_threshold(y, np.asarray(proba)[:, 1], spec.threshold_objective)
    return classification_metrics(y, proba, model.classes_, threshold)[spec.primary_metric]


@dataclass
class StudyResult:
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int
    direction: str
    history: list[dict[str, Any]] = field(default_factory=list)
    #: Optuna's fANOVA importance of each tuned parameter (empty with too few trials)
    importances: dict[str, float] = field(default_factory=dict)


def _pruner(name: str) -> optuna.pruners.BasePruner:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


@dataclass
class _Search:
    """What a process needs to run trials of one study (picklable: sent to worker processes)."""

    spec: ModelSpec
    frame: pd.DataFrame
    features: list[str]
    storage: str
    on_trial: Callable[[Any, list[float]], None] | None
    #: the study's name (:func:`study_name`: spec, its identity and the data's fingerprint)
    name: str = ""

    def study(self, seed: int) -> optuna.Study:
        import optuna

        assert self.spec.tuning is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.create_study(
            study_name=self.name,
            storage=self.storage,
            load_if_exists=True,
            direction=direction(self.spec.primary_metric),
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=_pruner(self.spec.tuning.pruner),
        )

    def run(self, seed: int, n_trials: int | None, budget: int | None) -> optuna.Study:
        """Run trials: ``n_trials`` of them, or (parallel) until the study holds ``budget``."""
        import optuna

        from models_py.plugins import get_plugin

        spec, frame, features = self.spec, self.frame, self.features
        assert spec.tuning is not None
        plugin = get_plugin(spec.plugin)
        target = spec.label.target
        folds = list(cv_folds(frame, spec.cv, target))
        if spec.task in ("binary", "multiclass"):
            # A fold whose training rows hold one class cannot be fitted (a rare label's early
            # periods): skipped, as long as another fold is left to score trials on.
            usable = [f for f in folds if frame[target].iloc[f[0]].nunique() >= 2]
            if not usable:
                raise ValueError(
                    f"no walk-forward fold of {spec.name} has both classes of {target} in its "
                    f"training rows ({len(folds)} folds): use fewer cv.folds, or more data"
                )
            folds = usable

        def objective(trial: optuna.Trial) -> float:
            params = {**spec.params, **plugin.search_space(trial)}
            if "random_state" in plugin.Params.model_fields:
                params.setdefault("random_state", spec.seed)
            scores: list[float] = []
            trial.set_user_attr("pid", os.getpid())  # which process ran it (--jobs)
            for step, (train_rows, valid_rows) in enumerate(folds):
                train, valid = frame.iloc[train_rows], frame.iloc[valid_rows]
                encoder = fit_encoder(train, features)
                X_train, X_valid = (
                    encode(encoder, train, features),
                    encode(encoder, valid, features),
                )
                fold_params = dict(params)  # the imbalance method, from this fold's rows
                if "cat_features" in plugin.Params.model_fields and not params.get("cat_features"):
                    fold_params["cat_features"] = tuple(text_columns(train, features))
                weights = apply_imbalance(spec, plugin, fold_params, train)
                model = plugin.from_params(spec.task, fold_params)
                y_train = train[target]
                if spec.imbalance == "smote":  # this fold's training rows only
                    X_train, y_train = oversample(
                        spec, X_train, y_train, text_columns(train, features)
                    )
                model.fit(
                    X_train,
                    y_train,
                    sample_weight=weights,
                    eval_set=(X_valid, valid[target]),
                )
                scores.append(score(spec, model, X_valid, valid[target]))
                trial.set_user_attr("fold_scores", scores)
                trial.report(float(np.mean(scores)), step)
                if step < len(folds) - 1 and trial.should_prune():  # a finished trial counts
                    raise optuna.TrialPruned()
            return float(np.mean(scores))

        def log(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if self.on_trial is not None:
                self.on_trial(trial, list(trial.user_attrs.get("fold_scores", [])))

        callbacks: list[Any] = [log]
        if budget is not None:  # counts every trial in the study, whichever process runs it
            callbacks.insert(0, optuna.study.MaxTrialsCallback(budget, states=None))
        study = self.study(seed)
        study.optimize(
            objective, n_trials=n_trials, timeout=spec.tuning.timeout_s, callbacks=callbacks
        )
        return study


def _work(search: _Search, seed: int, budget: int) -> None:
    search.run(seed, n_trials=None, budget=budget)


#: Study user attributes that let another process join: which spec (its name and the whole
#: validated spec, so a worker elsewhere needs no copy of the file), on which rows.
SPEC_ATTR, DATA_ATTR = "featurestack.spec", "featurestack.training_rows_sha256"
SPEC_JSON_ATTR = "featurestack.spec_json"
#: Study attributes naming the MLflow run whose nested runs are the study's trials.
PARENT_RUN_ATTR, EXPERIMENT_ATTR = "featurestack.mlflow_run_id", "featurestack.experiment_id"


def fingerprint(frame: pd.DataFrame, columns: list[str]) -> str:
    """SHA-256 of the rows a study scores trials on (values and order of ``columns``)."""
    hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def fingerprint_columns(spec: ModelSpec, features: list[str]) -> list[str]:
    """The columns a study's trials depend on: features, target, time (and the weights)."""
    extra = [spec.sample_weight_column] if spec.sample_weight_column else []
    return [*features, spec.label.target, "event_timestamp", *extra]


def spec_identity(spec: ModelSpec) -> str:
    """A short hash of what makes two studies' trials comparable: features, label, task,
    plugin (its search space), metric, fixed parameters, folds, imbalance and threshold."""
    import json

    what = {
        "feature_service": spec.feature_service,
        "label": [spec.label.model, spec.label.target],
        "task": spec.task,
        "plugin": spec.plugin,
        "metric": spec.primary_metric,
        "params": spec.params,
        "cv": spec.cv.model_dump(mode="json"),
        "imbalance": [spec.imbalance, spec.sample_weight_column],
        "threshold": spec.threshold_objective,
    }
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def study_name(spec: ModelSpec, data_sha256: str) -> str:
    """``<spec>-<plugin>-<identity>-<data>-seed<seed>``: two specs (even of one name) never
    share a study, and new training rows start a new one instead of reusing trials scored on
    the old rows; the same spec on the same rows continues its study."""
    assert spec.tuning is not None
    return (
        f"{spec.name}-{spec.plugin}-{spec_identity(spec)}-{data_sha256[:8]}"
        f"-seed{spec.tuning.sampler_seed}"
    )


def join(
    spec: ModelSpec,
    frame: pd.DataFrame,
    features: list[str],
    storage: str,
    seed: int,
    on_trial: Callable[[Any, list[float]], None] | None = None,
    name: str | None = None,
) -> int:
    """Run trials of the spec's existing study in this process until the study holds the
    spec's trial budget; return how many this process ran.

    Refuses when the study was tuned on other rows (the fingerprint differs) or does not
    exist yet (``featurestack train`` creates it). ``name``: the study (default: the one
    :func:`study_name` gives for these rows).
    """
    import optuna

    assert spec.tuning is not None
    ours = fingerprint(frame, fingerprint_columns(spec, features))
    name = name or study_name(spec, ours)
    try:
        existing = optuna.load_study(study_name=name, storage=storage)
    except KeyError as err:
        prefix = f"{spec.name}-{spec.plugin}-{spec_identity(spec)}-"
        others = [n for n in optuna.get_all_study_names(storage) if n.startswith(prefix)]
        if others:  # the spec's study exists, on other rows: this worker reads other data
            raise ValueError(
                f"no study {name}: this spec's study ({', '.join(others)}) was tuned on other "
                f"training rows (here sha256 {ours[:12]}…): this worker's data differs. Point "
                "it at the same published features (FEATURESTACK_DATA_DIR / the same offline "
                "store) before joining"
            ) from err
        raise LookupError(
            f"no study {name} in {storage.split('?')[0]}: start it with `featurestack train "
            f"--spec {spec_of_model(spec.name)} --workers N`, then join it"
        ) from err
    theirs = existing.user_attrs.get(DATA_ATTR)
    if theirs is not None and theirs != ours:
        raise ValueError(
            f"study {name} was tuned on other training rows (sha256 {theirs[:12]}…, here "
            f"{ours[:12]}…): this worker's data differs. Point it at the same published "
            "features (FEATURESTACK_DATA_DIR / the same offline store) before joining"
        )
    done = sum(t.state.is_finished() for t in existing.trials)
    if done >= spec.tuning.trials:
        return 0
    search = _Search(spec, frame, features, storage, on_trial, name)
    study = search.run(seed, n_trials=None, budget=spec.tuning.trials)
    pid = os.getpid()
    return sum(t.user_attrs.get("pid") == pid for t in study.trials if t.state.is_finished())


def tune(
    spec: ModelSpec,
    plugin: type[ModelPlugin],
    frame: pd.DataFrame,
    features: list[str],
    storage: str,
    on_trial: Callable[[Any, list[float]], None] | None = None,
    jobs: int = 1,
    attrs: dict[str, str] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run (or continue) the spec's study on ``frame`` (the training segment) and return the
    best parameters, merged over the spec's fixed ``params``.

    ``on_trial(trial, fold_scores)`` is called after each finished or pruned trial (MLflow
    logging; it must be picklable when ``jobs > 1``). The study name holds the spec name, its
    identity, the training rows' fingerprint and the seed (:func:`study_name`): re-running on
    the same rows continues it, new rows start a new study. ``on_start(name)`` is called with
    the name before any trial (train prints it, for ``tune-worker --study``). ``jobs > 1``
    starts ``jobs - 1`` worker processes on the same study (their samplers seeded
    ``seed + i``), until the study holds ``tuning.trials`` trials; that is faster but,
    unlike one process, not reproducible trial for trial. ``attrs`` are stored on the study
    (the MLflow run that :func:`join`'s workers log their trials under).
    """
    import optuna

    assert spec.tuning is not None
    tuning = spec.tuning
    data_sha256 = fingerprint(frame, fingerprint_columns(spec, features))
    name = study_name(spec, data_sha256)
    if on_start is not None:
        on_start(name)
    search = _Search(spec, frame, features, storage, on_trial, name)
    created = search.study(tuning.sampler_seed)
    recorded = created.user_attrs.get(DATA_ATTR)
    if recorded is not None and recorded != data_sha256:  # a prefix collision: never mix
        raise ValueError(
            f"study {name} holds trials scored on other rows (sha256 {recorded[:12]}…); "
            "delete it from the Optuna storage or change tuning.sampler_seed"
        )
    created.set_user_attr(SPEC_ATTR, spec.name)
    created.set_user_attr(SPEC_JSON_ATTR, spec.model_dump(mode="json"))
    created.set_user_attr(DATA_ATTR, data_sha256)
    for key, value in (attrs or {}).items():
        created.set_user_attr(key, value)
    done = sum(t.state.is_finished() for t in created.trials)
    remaining = max(tuning.trials - done, 0)
    if remaining and jobs <= 1:
        # Until the study holds the budget, not `remaining` trials of its own: workers joining
        # from elsewhere (`tune-worker`) then shorten this run; alone it is the same sequence.
        study = search.run(tuning.sampler_seed, n_trials=None, budget=tuning.trials)
    elif remaining:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs - 1, mp_context=ctx) as pool:
            workers = [
                pool.submit(_work, search, tuning.sampler_seed + i, tuning.trials)
                for i in range(1, jobs)
            ]
            study = search.run(tuning.sampler_seed, n_trials=None, budget=tuning.trials)
            for w in workers:
                w.result()
        study = search.study(tuning.sampler_seed)  # reload: the workers' trials too
    else:
        study = search.study(tuning.sampler_seed)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {study.study_name}: no trial completed (all pruned or failed)")
    best = study.best_trial
    # The best trial's suggestions, turned into plugin parameters the way the objective did.
    fixed = optuna.trial.FixedTrial(best.params)
    params = {**spec.params, **plugin.search_space(fixed)}
    history = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value if t.value is not None and math.isfinite(t.value) else None,
            "params": t.params,
            "pid": t.user_attrs.get("pid"),
        }
        for t in study.trials
    ]
    try:
        importances = {
            k: float(v)
            for k, v in optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            ).items()
        }
    except (RuntimeError, ValueError):  # fewer than two completed trials, or nothing varied
        importances = {}
    return StudyResult(
        study_name=study.study_name,
        importances=importances,
        best_params=params,
        best_value=float(best.value or 0.0),
        trials=len(study.trials),
        pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        direction=study.direction.name.lower(),
        history=history,
    )
