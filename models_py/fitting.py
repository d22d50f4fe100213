"""Fitting and evaluating a spec's plugin: pure functions of the training frames.

Nothing here reads Feast or writes MLflow: :mod:`models_py.train` builds the training set,
calls these, and hands the results to :mod:`models_py.run_log` and :mod:`models_py.registry`.
Classification: calibration and the decision threshold are fitted on the validation segment,
never on the holdout. Regression: prediction intervals (split-conformal on validation
residuals, or two quantile models). Text features are ordinal-encoded in front of the plugin
(models_py/encoding.py). The logged model's shape is documented in models_py/scoring.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from featurestack.core.errors import NotFound
from models_py.encoding import encode, fit_encoder, split_pipeline, text_columns, with_encoder
from models_py.imbalance import apply_imbalance, oversample
from models_py.intervals import IntervalRegressor, conformal_halfwidth
from models_py.metrics import (
    choose_threshold,
    classification_metrics,
    interval_metrics,
    regression_metrics,
)
from models_py.plugins.base import ModelPlugin
from models_py.scoring import base_model, model_scores
from models_py.spec import ModelSpec, SpecError

#: rows of each segment (fitted rows, holdout) kept in the monitoring reference at most
REFERENCE_ROWS = 5000


def imbalance(
    spec: ModelSpec, plugin: type[ModelPlugin], params: dict[str, Any], train: pd.DataFrame
) -> Any:
    """Apply the spec's class-imbalance method: plugin parameters, or the sample weights."""
    return apply_imbalance(spec, plugin, params, train)


def native_categories(
    plugin: type[ModelPlugin], params: dict[str, Any], train: pd.DataFrame, features: list[str]
) -> None:
    """A plugin with native categorical features (``cat_features``, CatBoost) is told which
    features are text, unless the spec names them."""
    if "cat_features" in plugin.Params.model_fields and not params.get("cat_features"):
        params["cat_features"] = tuple(text_columns(train, features))


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
    native_categories(plugin, params, train, features)
    weights = imbalance(spec, plugin, params, train)
    parent_encoder, _ = split_pipeline(parent) if parent is not None else (None, None)
    encoder = parent_encoder if parent is not None else fit_encoder(train, features)
    X = {name: encode(encoder, seg, features) for name, seg in segments.items()}
    model: Any = plugin.from_params(spec.task, params)
    X_fit, y_fit = X["train"], train[target]
    if spec.imbalance == "smote":  # the training rows only: never validation or holdout
        X_fit, y_fit = oversample(spec, X_fit, y_fit, text_columns(train, features))
    model.fit(
        X_fit,
        y_fit,
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
            # how much the scores vary: 0 for a degenerate model (models_py/gates.py)
            values["score_spread"] = float(np.std(proba[:, 1] if proba.shape[1] == 2 else proba))
            metrics.update({f"{name}_{k}": v for k, v in values.items()})
        return with_encoder(encoder, model), metrics
    if spec.interval is not None:
        model = _with_interval(spec, plugin, params, model, X, segments, weights)
    for name in ("validation", "holdout"):
        y = segments[name][target]
        predicted = model.predict(X[name])
        values = regression_metrics(y, predicted)
        values["score_spread"] = float(np.std(predicted))
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
        raise SpecError(
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


def task_metrics(
    model: Any, frame: pd.DataFrame, features: list[str], target: str, threshold: float = 0.5
) -> dict[str, float]:
    """A logged model's metrics on ``frame``: classification ones if it gives probabilities
    (threshold metrics at ``threshold``: the version's own, as it was logged and is served),
    else regression ones."""
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(frame[features])
        return classification_metrics(frame[target], proba, model.classes_, threshold)
    return regression_metrics(frame[target], model.predict(frame[features]))


@dataclass
class Parent:
    """The champion a warm start continues from."""

    model: Any
    version: str
    #: the last event time its boosting saw (None: logged before it was recorded)
    train_end: pd.Timestamp | None


def new_rows(segments: dict[str, pd.DataFrame], parent: Parent) -> dict[str, pd.DataFrame]:
    """The segments a warm start fits on: training rows after the parent's training window
    (the parent's trees already learned the rest; boosting them again would count them twice).
    Validation and holdout stay whole: early stopping and the evaluation see the usual rows."""
    if parent.train_end is None:
        return segments
    train = segments["train"]
    fresh = train[train["event_timestamp"] > parent.train_end].reset_index(drop=True)
    if fresh.empty:
        raise NotFound(
            f"--warm-start: no training rows after v{parent.version}'s training window "
            f"(it ends {parent.train_end:%Y-%m-%d %H:%M}, so does this training segment); "
            "nothing new to learn. Wait for new data, or train without --warm-start."
        )
    return {**segments, "train": fresh}


def reference_sample(
    model: Any,
    segments: dict[str, pd.DataFrame],
    features: list[str],
    keys: list[str],
    target: str,
    seed: int,
) -> pd.DataFrame:
    """Up to :data:`REFERENCE_ROWS` rows of the fitted rows (``segment`` = fit) and of the
    holdout (``holdout``): keys, features, ``label`` and the model's ``score``."""
    parts = []
    for name, members in (("fit", ["train", "validation"]), ("holdout", ["holdout"])):
        frame = pd.concat([segments[m] for m in members], ignore_index=True)
        if len(frame) > REFERENCE_ROWS:
            frame = frame.sample(REFERENCE_ROWS, random_state=seed).sort_index()
        part = frame[[*keys, *features]].copy()
        part["label"] = frame[target].to_numpy()
        part["score"] = model_scores(model, frame[features])
        part["segment"] = name
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
