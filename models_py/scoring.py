"""Scoring a logged model: its anatomy, its output columns, and the compiled fast path.

What training logs is a stack (models_py/fitting.py builds it)::

    [encoder →] plugin                                  regression, or uncalibrated classes
    [encoder →] CalibratedClassifierCV(FrozenEstimator(plugin))      calibrated classes
    [encoder →] IntervalRegressor(point=plugin, [low, high])         regression with intervals

:func:`anatomy` takes it apart once, for every reader: batch and online scoring
(models_py/predict.py), the model server and its shadow process (models_py/serving.py),
monitoring, warm starts and the evaluation report. :func:`score` is the one way a frame of
features becomes the output columns (:data:`SCORE`, :data:`DECISION`, ``proba_<class>``,
:data:`INTERVAL_LOW` / :data:`INTERVAL_HIGH`, :data:`OUT_OF_RANGE`), and :func:`compile_predictor`
builds the server's fast path on the same anatomy, checked against :func:`score`'s model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models_py.encoding import split_pipeline
from models_py.intervals import IntervalRegressor
from models_py.model_inputs import check_prediction_input

SCORE = "score"
DECISION = "decision"
INTERVAL_LOW, INTERVAL_HIGH = "interval_low", "interval_high"
OUT_OF_RANGE = "out_of_range"
PROBA_PREFIX = "proba_"
#: MLflow signature types the compiled path takes as float64
NUMERIC_TYPES = frozenset({"double", "float", "long", "integer", "boolean"})


@dataclass
class LoadedVersion:
    """A registered version loaded for scoring, with what scoring needs besides the model."""

    name: str
    version: str
    run_id: str
    feature_service: str
    model: Any
    #: the model signature's inputs, as (column, MLflow type)
    inputs: list[tuple[str, str]]
    #: per feature, the [min, max] seen in training (empty for models trained before it was kept)
    ranges: dict[str, list[float | None]]
    #: the decision threshold chosen on the validation segment
    threshold: float = 0.5

    @property
    def features(self) -> list[str]:
        return [name for name, _ in self.inputs]


@dataclass
class Anatomy:
    """The parts of a logged model."""

    #: the ordinal encoder of text features in front (None: all features numeric)
    encoder: Any | None
    #: the model behind the encoder: what ``predict``/``predict_proba`` is called on
    inner: Any
    #: the plugin itself (behind calibration and intervals)
    plugin: Any
    #: the calibration wrapper, when probabilities are calibrated
    calibrated: Any | None = None
    #: the interval wrapper of a regressor with prediction intervals
    interval: IntervalRegressor | None = None
    classes: list[Any] = field(default_factory=list)

    @property
    def classifier(self) -> bool:
        return hasattr(self.inner, "predict_proba")

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` as the model behind the encoder sees it."""
        return frame if self.encoder is None else self.encoder.transform(frame)


def anatomy(model: Any) -> Anatomy:
    """Take a logged model apart (see the module docstring for the shapes)."""
    encoder, inner = split_pipeline(model)
    interval = inner if isinstance(inner, IntervalRegressor) else None
    plugin = inner.point if interval is not None else inner
    calibrated = None
    frozen = getattr(plugin, "estimator", None)
    if frozen is not None:  # CalibratedClassifierCV(FrozenEstimator(plugin))
        calibrated, plugin = plugin, getattr(frozen, "estimator", plugin)
    classes = list(getattr(inner, "classes_", []))
    return Anatomy(encoder, inner, plugin, calibrated, interval, classes)


def base_model(model: Any) -> Any:
    """The plugin inside a logged model: behind the encoder, the calibration, the intervals."""
    return anatomy(model).plugin


def model_scores(model: Any, X: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class (binary), of the most probable class (multiclass), or
    the prediction (regression): the one number per row that drift and metrics compare."""
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        return np.asarray(proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1), dtype=float)
    return np.asarray(model.predict(X), dtype=float)


def score(loaded: LoadedVersion, features: pd.DataFrame, has_features: pd.Series) -> pd.DataFrame:
    """The output columns for ``features``: the input is conformed to the signature first
    (InputError if it cannot be); rows with an infinite value or no feature at all are not
    scored.

    Binary classifiers: ``score`` (probability) and ``decision`` (score ≥ the version's
    threshold). Multiclass: ``decision`` (the most probable class), ``score`` (its
    probability) and ``proba_<class>`` per class. Regressors: ``score`` (the prediction) and,
    with intervals, ``interval_low/high``. Always ``out_of_range``: per row, the features
    outside the range seen in training.
    """
    frame, scorable, flags = check_prediction_input(features, loaded.inputs, loaded.ranges)
    rows = scorable & has_features
    out = pd.DataFrame({SCORE: np.nan}, index=features.index)
    model = loaded.model
    parts = anatomy(model)
    if parts.classifier and len(parts.classes) > 2:
        classes = parts.classes
        proba = pd.DataFrame(np.nan, index=features.index, columns=classes)
        if rows.any():
            proba.loc[rows] = model.predict_proba(frame.loc[rows])
        out[SCORE] = proba.max(axis=1, skipna=False)
        best = proba.fillna(-1.0).to_numpy().argmax(axis=1)
        out[DECISION] = pd.Series(np.asarray(classes, dtype=object)[best], index=out.index)
        out[DECISION] = out[DECISION].where(out[SCORE].notna())
        for c in classes:
            out[f"{PROBA_PREFIX}{c}"] = proba[c]
    elif parts.classifier:
        if rows.any():
            out.loc[rows, SCORE] = model.predict_proba(frame.loc[rows])[:, 1]
        out[DECISION] = (out[SCORE] >= loaded.threshold).astype("boolean")
        out[DECISION] = out[DECISION].where(out[SCORE].notna())
    else:
        if parts.interval is not None:
            out[INTERVAL_LOW], out[INTERVAL_HIGH] = np.nan, np.nan
        if rows.any():
            out.loc[rows, SCORE] = model.predict(frame.loc[rows])
            if parts.interval is not None:
                low, high = parts.interval.predict_interval(parts.encode(frame.loc[rows]))
                out.loc[rows, INTERVAL_LOW], out.loc[rows, INTERVAL_HIGH] = low, high
    out[OUT_OF_RANGE] = flags
    return out


def output_items(scored: pd.DataFrame) -> list[dict[str, Any]]:
    """:func:`score`'s frame as one JSON-ready dict per row (the model server's shape):
    ``score``, ``out_of_range``, and ``decision`` / ``interval`` where the model has them."""
    items = []
    for i in range(len(scored)):
        value = scored[SCORE].iat[i]
        item: dict[str, Any] = {
            SCORE: None if pd.isna(value) else float(value),
            OUT_OF_RANGE: list(scored[OUT_OF_RANGE].iat[i]),
        }
        if DECISION in scored:
            d = scored[DECISION].iat[i]
            item[DECISION] = None if pd.isna(d) else bool(d)
        if INTERVAL_LOW in scored:
            low, high = scored[INTERVAL_LOW].iat[i], scored[INTERVAL_HIGH].iat[i]
            item["interval"] = None if pd.isna(low) else {"low": float(low), "high": float(high)}
        items.append(item)
    return items


# -- the compiled fast path ------------------------------------------------------------------


@dataclass
class CompiledScorer:
    """``X`` (float64, signature order) → the server's output items, without pandas or
    scikit-learn's per-call input validation (≈ 1.3 ms of a one-row request)."""

    features: list[str]
    predict: Callable[[np.ndarray], np.ndarray]
    low: np.ndarray
    high: np.ndarray
    threshold: float
    classifier: bool

    def items(self, X: np.ndarray) -> list[dict[str, Any]]:
        """As :func:`output_items` of :func:`score` gives them (checked at compile time)."""
        finite = np.isfinite(X)
        infinite = np.isinf(X)
        scorable = ~infinite.any(axis=1) & (finite.any(axis=1))
        outside = infinite | (self.low > X) | (self.high < X)
        scores = np.full(len(X), np.nan)
        if scorable.any():
            scores[scorable] = self.predict(X[scorable])
        out = []
        flagged = outside.any(axis=1)
        for i in range(len(X)):
            s = scores[i]
            item: dict[str, Any] = {
                SCORE: None if math.isnan(s) else float(s),
                OUT_OF_RANGE: [self.features[j] for j in np.flatnonzero(outside[i])]
                if flagged[i]
                else [],
            }
            if self.classifier:
                item[DECISION] = None if math.isnan(s) else bool(s >= self.threshold)
            out.append(item)
        return out


def range_bounds(loaded: LoadedVersion) -> tuple[np.ndarray, np.ndarray]:
    """Per feature in signature order, the training [low, high] (±inf where unknown)."""
    low = [loaded.ranges.get(f, [None, None])[0] for f in loaded.features]
    high = [loaded.ranges.get(f, [None, None])[1] for f in loaded.features]
    return (
        np.array([-np.inf if v is None else v for v in low], dtype="float64"),
        np.array([np.inf if v is None else v for v in high], dtype="float64"),
    )


def compile_predictor(loaded: LoadedVersion) -> CompiledScorer | None:
    """The fast path for a LightGBM plugin (optionally behind a one-calibrator
    ``CalibratedClassifierCV``), checked against the model itself on rows spread over the
    training ranges (agreement to 1e-9); None when the model is of another shape (other
    plugins, text features, intervals, multiclass) or the check fails."""
    from models_py.plugins.base import ModelPlugin

    if any(t not in NUMERIC_TYPES for _, t in loaded.inputs):
        return None
    parts = anatomy(loaded.model)
    if parts.encoder is not None or parts.interval is not None:
        return None
    calibrator = None
    if parts.calibrated is not None:
        fitted = parts.calibrated.calibrated_classifiers_
        if len(fitted) != 1 or len(fitted[0].calibrators) != 1:
            return None
        calibrator = fitted[0].calibrators[0]
    plugin = parts.plugin
    if not isinstance(plugin, ModelPlugin):
        return None
    booster = getattr(getattr(plugin, "estimator_", None), "booster_", None)
    if booster is None or type(booster).__module__ != "lightgbm.basic":
        return None
    if parts.classifier and len(getattr(plugin, "classes_", [])) != 2:
        return None

    calibrate = _calibration(calibrator)

    def predict(X: np.ndarray) -> np.ndarray:
        return calibrate(np.asarray(booster.predict(X, num_threads=1)))

    sample = _probe_rows(loaded)
    frame = pd.DataFrame(sample, columns=loaded.features)
    expected = model_scores(loaded.model, frame)
    if not np.allclose(predict(sample), expected, rtol=1e-9, atol=1e-12, equal_nan=True):
        return None
    low, high = range_bounds(loaded)
    return CompiledScorer(loaded.features, predict, low, high, loaded.threshold, parts.classifier)


def _calibration(calibrator: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Platt scaling as the formula scikit-learn's ``_SigmoidCalibration.predict`` computes
    (without its per-call input validation); any other calibrator through its ``predict``.
    Either way :func:`compile_predictor` checks the result against the model."""
    from scipy.special import expit

    if calibrator is None:
        return lambda raw: raw
    if type(calibrator).__name__ == "_SigmoidCalibration":
        a, b = float(calibrator.a_), float(calibrator.b_)
        return lambda raw: expit(-(a * raw + b))
    return lambda raw: np.asarray(calibrator.predict(raw))


def _probe_rows(loaded: LoadedVersion, n: int = 256) -> np.ndarray:
    """Rows spread over (and a little beyond) each feature's training range, some missing."""
    rng = np.random.default_rng(0)
    columns = []
    for name in loaded.features:
        low, high = loaded.ranges.get(name, [None, None])
        low = -1.0 if low is None else low
        high = 1.0 if high is None else high
        span = (high - low) or 1.0
        values = rng.uniform(low - 0.1 * span, high + 0.1 * span, n)
        values[rng.random(n) < 0.1] = np.nan
        columns.append(values)
    return np.column_stack(columns)


def flag_summary(frame: pd.DataFrame) -> str:
    """One line on the inputs outside what the model saw in training (column out_of_range)."""
    flagged = frame["out_of_range"].map(len) > 0
    if not flagged.any():
        return "all inputs within the ranges the model was trained on"
    counts: dict[str, int] = {}
    for names in frame.loc[flagged, "out_of_range"]:
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    top = ", ".join(f"{k} ({v})" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:5])
    return (
        f"{int(flagged.sum())} row(s) flagged: inputs outside the training range "
        f"(column out_of_range): {top}"
    )
