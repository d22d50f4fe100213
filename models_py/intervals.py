"""Regression models that also give prediction intervals.

``IntervalRegressor`` wraps a fitted point model and either a conformal half-width (split
conformal on held-out residuals: valid for any regressor, intervals of constant width) or two
fitted quantile models, everything clipped to the target's natural range when the spec gives
one (a count is never below 0). It is a scikit-learn estimator, so MLflow's sklearn flavor
logs it and ``predict`` gives the point prediction; ``predict_interval`` gives (low, high).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


def conformal_halfwidth(residuals: np.ndarray, coverage: float) -> float:
    """The split-conformal quantile of |residuals|: the ⌈(n+1)·coverage⌉-th smallest, which
    covers a new exchangeable point with probability at least ``coverage``."""
    r = np.sort(np.abs(np.asarray(residuals, dtype=float)))
    n = len(r)
    if n == 0:
        raise ValueError("conformal intervals need held-out residuals; the segment is empty")
    k = math.ceil((n + 1) * coverage)
    return float(r[min(k, n) - 1]) if k <= n else float("inf")


class IntervalRegressor(RegressorMixin, BaseEstimator):
    """A fitted point regressor with intervals (all parts fitted before it is built)."""

    def __init__(
        self,
        point: Any = None,
        halfwidth: float | None = None,
        low: Any = None,
        high: Any = None,
        coverage: float = 0.9,
        bounds: tuple[float | None, float | None] = (None, None),
    ) -> None:
        self.point = point
        self.halfwidth = halfwidth
        self.low = low
        self.high = high
        self.coverage = coverage
        self.bounds = bounds

    def fit(self, X: Any, y: Any) -> IntervalRegressor:  # parts arrive fitted
        self.fitted_ = True
        return self

    def _clip(self, values: np.ndarray) -> np.ndarray:
        low, high = getattr(self, "bounds", (None, None))  # absent on models logged before
        if low is None and high is None:
            return values
        return np.clip(values, low, high)

    def predict(self, X: Any) -> np.ndarray:
        return self._clip(np.asarray(self.point.predict(X), dtype=float))

    def predict_interval(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        point = self.predict(X)
        if self.halfwidth is not None:
            return self._clip(point - self.halfwidth), self._clip(point + self.halfwidth)
        low = self._clip(np.asarray(self.low.predict(X), dtype=float))
        high = self._clip(np.asarray(self.high.predict(X), dtype=float))
        # quantile models are fitted apart and can cross: order each pair, keep the point inside
        return np.minimum.reduce([low, high, point]), np.maximum.reduce([low, high, point])
