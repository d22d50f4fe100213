"""Issue 20: CatBoost as a plugin: native categories, early stopping, its own SHAP values."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import logit

from models_py.fitting import fit_and_evaluate
from models_py.plugins import get_plugin
from models_py.spec import ModelSpec
from models_py.splits import time_split


def test_text_features_are_native_categories_and_early_stopping_works() -> None:
    rng = np.random.default_rng(0)
    n = 1500
    ts = np.repeat(pd.date_range("2024-01-01", periods=50, freq="D", tz="UTC"), n // 50)
    tier = rng.choice(["gold", "silver", "bronze", None], size=n)
    x = rng.normal(size=n)
    # the label depends on the category, not on an order of its codes
    effect = pd.Series(tier).map({"gold": 1.5, "silver": -1.5, "bronze": 1.5}).fillna(0.0)
    y = (x + effect + rng.normal(scale=0.5, size=n) > 0).astype(int)
    frame = pd.DataFrame({"event_timestamp": ts, "x": x, "tier": tier, "hit": y})
    spec = ModelSpec(
        name="cats",
        feature_service="any",
        label={"model": "lbl", "target": "hit"},
        task="binary",
        plugin="catboost",
        params={"n_estimators": 300, "early_stopping_rounds": 10, "n_jobs": 1},
    )
    segments = time_split(frame, spec.split)
    model, metrics = fit_and_evaluate(spec, get_plugin("catboost"), segments, ["x", "tier"])
    booster = model.steps[-1][1]
    assert booster.cat_features == ("tier",)  # told by the fit: the text feature
    assert 1 <= booster.best_iteration_ < 300  # stopped early on validation
    assert metrics["holdout_roc_auc"] > 0.85
    X = model.steps[0][1].transform(segments["holdout"][["x", "tier"]])
    contributions = booster.contributions(X)
    raw = logit(booster.predict_proba(X)[:, 1])
    np.testing.assert_allclose(contributions.sum(axis=1), raw, rtol=1e-6, atol=1e-6)
