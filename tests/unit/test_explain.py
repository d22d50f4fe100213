"""Issue 20: contributions for models without native ones add up to each prediction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models_py.explain import sampled_shapley
from models_py.plugins import get_plugin


@pytest.mark.parametrize(
    ("plugin", "task"), [("logreg", "binary"), ("random_forest", "regression")]
)
def test_sampled_shapley_adds_up_to_the_score(plugin: str, task: str) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "noise"])
    y = 2 * X["a"] - X["b"] + 0.1 * rng.normal(size=300)
    target = (y > 0).astype(int) if task == "binary" else y
    params = {"n_estimators": 20, "n_jobs": 1} if plugin == "random_forest" else {}
    model = get_plugin(plugin).from_params(task, params).fit(X, target)
    rows = X.iloc[:5]
    contributions, base = sampled_shapley(model, rows, X.iloc[100:], walks=24)
    score = model.predict_proba(rows)[:, 1] if task == "binary" else model.predict(rows)
    np.testing.assert_allclose(contributions.sum(axis=1) + base, score, atol=1e-9)
    # the feature the label ignores gets the smallest share
    share = np.abs(contributions).mean(axis=0)
    assert share[2] < share[0] and share[2] < share[1]
