"""Drift statistics shared by the gate (new rows against published ones) and monitoring (served
rows against a version's training reference): one definition, so both judge alike.

Written with NumPy rather than taken from scipy.stats: ``ks_2samp`` computes a p-value we do
not use, and neither library has a PSI over the reference's quantile bins.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def finite(values: Any) -> np.ndarray:
    """Finite values only, as float64 (NULLs from DuckDB arrive as a masked array, from pandas
    as NaN or None; text that is not a number is dropped)."""
    if isinstance(values, np.ma.MaskedArray):
        values = np.ma.filled(values.astype("float64"), np.nan)
    try:
        array = np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        import pandas as pd

        array = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype="float64")
    return array[np.isfinite(array)]


def psi(new: np.ndarray, reference: np.ndarray, bins: int) -> float:
    """Population stability index over the reference's quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    ref_share = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1
    )
    new_share = np.bincount(np.searchsorted(edges, new, side="right"), minlength=len(edges) + 1)
    floor = 1e-4  # an empty bin would make the index infinite
    p = np.maximum(new_share / len(new), floor)
    q = np.maximum(ref_share / len(reference), floor)
    return float(np.sum((p - q) * np.log(p / q)))


def ks(new: np.ndarray, reference: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic (largest gap between the two ECDFs)."""
    a, b = np.sort(new), np.sort(reference)
    points = np.concatenate([a, b])
    gap = np.searchsorted(a, points, side="right") / len(a)
    gap -= np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(gap)))


def ks_critical(n: int, m: int, alpha: float = 0.01) -> float:
    """The two-sample KS statistic a pure resample exceeds with probability ``alpha``."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))
