"""Hyper-parameter tuning: an Optuna study over cross-validation folds of the training segment.

Trials are scored on walk-forward folds (expanding windows over dates, each validated on the
next block of dates after an embargo), never on the validation or holdout segments, which stay
for early stopping of the refit and for the final, untouched evaluation. The sampler is TPE
with a fixed seed, so a study run in one process is reproducible; trials report their running
mean after each fold and a pruner (median, or successive halving) stops hopeless ones early.
The study lives in an Optuna storage (SQLite in the data folder by default, any RDB URL), so
several processes can work on it at once (``jobs``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from models_py.metrics import binary_metrics
from models_py.plugins.base import ModelPlugin
from models_py.spec import CVSpec, ModelSpec

if TYPE_CHECKING:
    import optuna

#: Metrics where lower is better; every other one is maximised.
MINIMIZE = frozenset({"log_loss", "brier", "rmse", "mae"})


def direction(metric: str) -> Literal["minimize", "maximize"]:
    return "minimize" if metric in MINIMIZE else "maximize"


def cv_folds(
    frame: pd.DataFrame, cv: CVSpec, target: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) index arrays per fold.

    Walk-forward: the frame's distinct dates are cut into ``folds + 1`` blocks; fold k trains
    on blocks 0..k and validates on block k+1 minus its first ``embargo_periods`` dates, so no
    training label (which looks ahead) overlaps the dates it is scored on.
    """
    if cv.scheme == "stratified_kfold":
        from sklearn.model_selection import StratifiedKFold

        splitter = StratifiedKFold(n_splits=cv.folds, shuffle=True, random_state=0)
        yield from splitter.split(frame, frame[target])
        return
    dates = np.sort(frame["event_timestamp"].unique())
    blocks = np.array_split(np.arange(len(dates)), cv.folds + 1)
    if min(len(b) for b in blocks) <= cv.embargo_periods:
        raise ValueError(
            f"{len(dates)} distinct dates cannot make {cv.folds} walk-forward folds with an "
            f"embargo of {cv.embargo_periods}; use fewer folds"
        )
    ts = frame["event_timestamp"].to_numpy()
    for k in range(cv.folds):
        train_end = dates[blocks[k][-1]]
        valid = blocks[k + 1][cv.embargo_periods :]
        train_rows = np.flatnonzero(ts <= train_end)
        valid_rows = np.flatnonzero((ts >= dates[valid[0]]) & (ts <= dates[valid[-1]]))
        yield train_rows, valid_rows


def score(spec: ModelSpec, model: ModelPlugin, X: pd.DataFrame, y: pd.Series) -> float:
    """The spec's primary metric of a fitted model on (X, y)."""
    if spec.task != "binary":
        raise NotImplementedError(f"tuning for task {spec.task!r} is not implemented yet")
    return binary_metrics(y, model.predict_proba(X)[:, 1])[spec.primary_metric]


@dataclass
class StudyResult:
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int
    direction: str
    history: list[dict[str, Any]] = field(default_factory=list)


def _pruner(name: str) -> optuna.pruners.BasePruner:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def tune(
    spec: ModelSpec,
    plugin: type[ModelPlugin],
    frame: pd.DataFrame,
    features: list[str],
    storage: str,
    on_trial: Callable[[optuna.trial.FrozenTrial, list[float]], None] | None = None,
) -> StudyResult:
    """Run (or continue) the spec's study on ``frame`` (the training segment) and return the
    best parameters, merged over the spec's fixed ``params``.

    ``on_trial(trial, fold_scores)`` is called after each finished or pruned trial (MLflow
    logging). The study name holds the spec name and seed: re-running continues it.
    """
    import optuna

    assert spec.tuning is not None
    tuning = spec.tuning
    target = spec.label.target
    folds = list(cv_folds(frame, spec.cv, target))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"{spec.name}-seed{tuning.sampler_seed}",
        storage=storage,
        load_if_exists=True,
        direction=direction(spec.primary_metric),
        sampler=optuna.samplers.TPESampler(seed=tuning.sampler_seed),
        pruner=_pruner(tuning.pruner),
    )

    def objective(trial: optuna.Trial) -> float:
        params = {**spec.params, **plugin.search_space(trial)}
        if "random_state" in plugin.Params.model_fields:
            params.setdefault("random_state", spec.seed)
        scores: list[float] = []
        trial.set_user_attr("fold_scores", scores)
        for step, (train_rows, valid_rows) in enumerate(folds):
            train, valid = frame.iloc[train_rows], frame.iloc[valid_rows]
            model = plugin.from_params(spec.task, params)
            model.fit(train[features], train[target], eval_set=(valid[features], valid[target]))
            scores.append(score(spec, model, valid[features], valid[target]))
            trial.set_user_attr("fold_scores", scores)
            trial.report(float(np.mean(scores)), step)
            if step < len(folds) - 1 and trial.should_prune():  # a finished trial counts
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(trial, list(trial.user_attrs.get("fold_scores", [])))

    done = sum(t.state.is_finished() for t in study.trials)
    remaining = max(tuning.trials - done, 0)
    if remaining:
        study.optimize(
            objective, n_trials=remaining, timeout=tuning.timeout_s, callbacks=[callback]
        )
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
        }
        for t in study.trials
    ]
    return StudyResult(
        study_name=study.study_name,
        best_params=params,
        best_value=float(best.value or 0.0),
        trials=len(study.trials),
        pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        direction=study.direction.name.lower(),
        history=history,
    )
