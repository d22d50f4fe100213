"""Per-feature contributions for any model: sampled Shapley values (model-agnostic).

Boosters have exact, native contributions (``contributions``: SHAP values in raw-score
units). Every other plugin, an ensemble, a calibrated or encoded pipeline gets sampled
Shapley values of its score (the positive class's probability, or the prediction): for a row
x, random feature orders and random background rows z; walking an order from z to x, each
feature is credited with the change of the score when it switches to x's value. Each walk's
credits add up to f(x) − f(z), so the contributions plus ``base`` (the mean of f over the
walks' background rows) equal the row's score exactly, whatever the number of walks; more
walks only make each feature's share less noisy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def score_function(model: object) -> Callable[[pd.DataFrame], np.ndarray]:
    """What is explained: P(positive) of a binary classifier, else the prediction."""
    if hasattr(model, "predict_proba"):

        def proba(X: pd.DataFrame) -> np.ndarray:
            p = np.asarray(model.predict_proba(X))
            return p[:, 1] if p.shape[1] == 2 else p.max(axis=1)

        return proba
    return lambda X: np.asarray(model.predict(X), dtype=float)  # type: ignore[attr-defined]


def sampled_shapley(
    model: object,
    X: pd.DataFrame,
    background: pd.DataFrame,
    walks: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(contributions, base): an (rows × features) array and each row's base value, with
    ``contributions.sum(axis=1) + base`` equal to the model's score of each row."""
    f = score_function(model)
    rng = np.random.default_rng(seed)
    n, d = X.shape
    contributions = np.zeros((n, d))
    base = np.zeros(n)
    back = background[X.columns].reset_index(drop=True)
    for i in range(n):
        x = X.iloc[[i]]
        batch = []
        orders = []
        for _ in range(walks):
            order = rng.permutation(d)
            z = back.iloc[[int(rng.integers(len(back)))]].reset_index(drop=True)
            rows = pd.concat([z] * (d + 1), ignore_index=True)
            for k in range(1, d + 1):  # row k: the first k features of the order from x
                cols = X.columns[order[:k]]
                rows.loc[k:, cols] = x[cols].to_numpy()[0]
            batch.append(rows)
            orders.append(order)
        scores = f(pd.concat(batch, ignore_index=True).astype(X.dtypes.to_dict()))
        scores = scores.reshape(walks, d + 1)
        for w, order in enumerate(orders):
            contributions[i, order] += np.diff(scores[w])
        contributions[i] /= walks
        base[i] = scores[:, 0].mean()
    return contributions, base
