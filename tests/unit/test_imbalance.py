"""Issue 20: SMOTE / SMOTE-NC on the rows of one fit only; weights from the label table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models_py.imbalance import oversample, sample_weights
from models_py.spec import ModelSpec, SpecError


def spec(**extra: object) -> ModelSpec:
    return ModelSpec(
        name="events",
        feature_service="any",
        label={"model": "lbl", "target": "hit"},
        task="binary",
        plugin="lightgbm",
        **extra,  # type: ignore[arg-type]
    )


def rows(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"f": rng.normal(size=n), "g": rng.normal(size=n)})
    X.loc[::17, "g"] = np.nan  # missing values stay missing in the original rows
    y = pd.Series((rng.random(n) < 0.08).astype(int), name="hit")
    return X, y


def test_smote_adds_minority_rows_and_keeps_the_originals() -> None:
    X, y = rows()
    X_res, y_res = oversample(spec(imbalance="smote"), X, y, [])
    assert y_res.value_counts()[0] == y_res.value_counts()[1] == (y == 0).sum()
    pd.testing.assert_frame_equal(X_res.iloc[: len(X)], X)  # originals first, unchanged
    assert y_res.iloc[: len(y)].tolist() == y.tolist()
    assert not X_res.iloc[len(X) :].isna().any().any()
    # synthetic rows lie between minority rows: within their range
    minority = X[y == 1]
    assert X_res.iloc[len(X) :]["f"].between(minority["f"].min(), minority["f"].max()).all()


def test_smote_nc_keeps_encoded_categories_whole() -> None:
    X, y = rows()
    X["tier"] = (np.arange(len(X)) % 3).astype(float)  # an encoded text feature
    X_res, _ = oversample(spec(imbalance="smote"), X, y, ["tier"])
    assert set(X_res["tier"].unique()) <= {0.0, 1.0, 2.0}


def test_smote_without_enough_minority_rows_is_a_clear_error() -> None:
    X, y = rows(40)
    y[:] = 0
    y.iloc[0] = 1
    with pytest.raises(SpecError, match="at least 2 rows of every class"):
        oversample(spec(imbalance="smote"), X, y, [])


def test_smote_is_fitted_on_training_rows_only() -> None:
    from models_py.fitting import fit_and_evaluate
    from models_py.plugins import get_plugin
    from models_py.splits import time_split

    rng = np.random.default_rng(1)
    ts = np.repeat(pd.date_range("2024-01-01", periods=40, freq="D", tz="UTC"), 25)
    f = rng.normal(size=len(ts))
    hit = (rng.random(len(ts)) < 1 / (1 + np.exp(-(-2.5 + 1.5 * f)))).astype(int)
    frame = pd.DataFrame({"event_timestamp": ts, "f": f, "g": rng.normal(size=len(ts)), "hit": hit})
    s = spec(imbalance="smote", params={"n_estimators": 20, "n_jobs": 1})
    segments = time_split(frame, s.split)
    plugin = get_plugin("lightgbm")
    fitted: list[int] = []
    original = plugin.fit

    def counting_fit(self: object, X: pd.DataFrame, y: pd.Series, **kw: object) -> object:
        fitted.append(len(X))
        return original(self, X, y, **kw)  # type: ignore[arg-type]

    plugin.fit = counting_fit  # type: ignore[method-assign]
    try:
        _, metrics = fit_and_evaluate(s, plugin, segments, ["f", "g"])
    finally:
        plugin.fit = original  # type: ignore[method-assign]
    positives = int(segments["train"]["hit"].sum())
    assert fitted == [len(segments["train"]) + (len(segments["train"]) - 2 * positives)]
    assert metrics["validation_rows"] == len(segments["validation"])
    assert metrics["holdout_rows"] == len(segments["holdout"])
    assert metrics["holdout_roc_auc"] > 0.6


def test_sample_weights_are_checked() -> None:
    s = spec(imbalance="sample_weight", sample_weight_column="reward")
    frame = pd.DataFrame({"reward": [1.0, 2.0, 0.0]})
    assert sample_weights(s, frame).tolist() == [1.0, 2.0, 0.0]
    with pytest.raises(SpecError, match="not a column of label table lbl"):
        sample_weights(s, pd.DataFrame({"other": [1.0]}))
    with pytest.raises(SpecError, match="1 row\\(s\\) are null, negative"):
        sample_weights(s, pd.DataFrame({"reward": [1.0, -2.0]}))
