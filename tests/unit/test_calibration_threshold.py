"""Calibration and the decision threshold are fitted on validation, never on the holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from models_py.fitting import fit_and_evaluate
from models_py.metrics import choose_threshold
from models_py.plugins import get_plugin
from models_py.scoring import base_model
from models_py.spec import ModelSpec


def segments(seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(n: int) -> pd.DataFrame:
        x = rng.normal(size=n)
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-2 * x))).astype(int)
        return pd.DataFrame({"x": x, "noise": rng.normal(size=n), "y": y})

    return {"train": frame(3000), "validation": frame(1500), "holdout": frame(1500)}


def spec(**extra: object) -> ModelSpec:
    return ModelSpec(
        name="m",
        feature_service="s",
        label={"model": "l", "target": "y"},
        task="binary",
        plugin="lightgbm",
        params={"n_estimators": 200, "num_leaves": 31, "min_child_samples": 5},
        **extra,
    )


@pytest.mark.slow  # several fits or processes: the full suite runs it
def test_isotonic_calibration_never_worsens_the_validation_brier_score() -> None:
    segs = segments()
    raw, raw_metrics = fit_and_evaluate(spec(), get_plugin("lightgbm"), segs, ["x", "noise"])
    cal, cal_metrics = fit_and_evaluate(
        spec(calibration="isotonic"), get_plugin("lightgbm"), segs, ["x", "noise"]
    )
    assert cal_metrics["validation_brier"] <= raw_metrics["validation_brier"]
    assert base_model(cal).get_params() == raw.get_params()  # the same plugin inside
    # monotone: calibration does not change the ranking much
    assert cal_metrics["holdout_roc_auc"] == pytest.approx(raw_metrics["holdout_roc_auc"], abs=0.02)


def test_the_threshold_is_chosen_on_validation_and_applied_to_the_holdout() -> None:
    segs = segments()
    model, metrics = fit_and_evaluate(
        spec(threshold_objective="youden"), get_plugin("lightgbm"), segs, ["x", "noise"]
    )
    valid = segs["validation"]
    expected = choose_threshold(
        valid["y"], model.predict_proba(valid[["x", "noise"]])[:, 1], "youden"
    )
    assert metrics["threshold"] == expected
    hold = segs["holdout"]
    pred = model.predict_proba(hold[["x", "noise"]])[:, 1] >= expected
    assert metrics["holdout_f1"] == pytest.approx(skm.f1_score(hold["y"], pred))


def test_threshold_objectives() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.8, 0.9])
    assert choose_threshold(y, p, "fixed") == 0.5
    assert choose_threshold(y, p, "youden") == 0.7  # TPR 3/4, FPR 0: J 0.75 (at 0.4: 0.67)
    assert choose_threshold(y, p, "f1") == 0.4  # recall 1, precision 4/5: F1 0.89
    assert choose_threshold(np.zeros(4), p[:4], "f1") == 0.5  # one class: nothing to choose


def rare(seed: int = 3) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(n: int) -> pd.DataFrame:
        x = rng.normal(size=n)
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(3 * x - 4)))).astype(int)  # ≈ 8 % positive
        return pd.DataFrame({"x": x, "noise": rng.normal(size=n), "y": y, "w": 1.0 + 9 * y})

    return {"train": frame(4000), "validation": frame(1500), "holdout": frame(1500)}


def rare_spec(plugin: str, **extra: object) -> ModelSpec:
    return ModelSpec(
        name="r",
        feature_service="s",
        label={"model": "l", "target": "y"},
        task="binary",
        plugin=plugin,
        primary_metric="pr_auc",
        params={"n_estimators": 50} if plugin == "xgboost" else {},
        **extra,
    )


@pytest.mark.slow  # several fits or processes: the full suite runs it
def test_imbalance_methods_reach_the_plugin() -> None:
    segs = rare()
    positives = int(segs["train"]["y"].sum())
    ratio = (len(segs["train"]) - positives) / positives
    xgb, _ = fit_and_evaluate(
        rare_spec("xgboost", imbalance="scale_pos_weight"), get_plugin("xgboost"), segs, ["x"]
    )
    assert base_model(xgb).get_params()["scale_pos_weight"] == pytest.approx(ratio)
    plain, _ = fit_and_evaluate(rare_spec("logreg"), get_plugin("logreg"), segs, ["x"])
    weighted, _ = fit_and_evaluate(
        rare_spec("logreg", imbalance="class_weight"), get_plugin("logreg"), segs, ["x"]
    )
    assert base_model(weighted).get_params()["class_weight"] == "balanced"
    by_column, _ = fit_and_evaluate(
        rare_spec("logreg", imbalance="sample_weight", sample_weight_column="w"),
        get_plugin("logreg"),
        segs,
        ["x"],
    )
    x = segs["holdout"][["x"]]
    # up-weighting the rare class raises its predicted probability on average
    assert weighted.predict_proba(x)[:, 1].mean() > 2 * plain.predict_proba(x)[:, 1].mean()
    assert by_column.predict_proba(x)[:, 1].mean() > 2 * plain.predict_proba(x)[:, 1].mean()
    with pytest.raises(ValueError, match="plugin 'logreg' has no such parameter"):
        fit_and_evaluate(
            rare_spec("logreg", imbalance="scale_pos_weight"), get_plugin("logreg"), segs, ["x"]
        )


def test_text_features_are_encoded_in_front_of_the_plugin() -> None:
    segs = segments()
    for seg in segs.values():
        seg["tier"] = np.where(seg["x"] > 0, "gold", "bronze")
    seg = segs["holdout"].copy()
    seg.loc[seg.index[0], "tier"] = "platinum"  # never seen in training: encoded as missing
    model, metrics = fit_and_evaluate(spec(), get_plugin("lightgbm"), segs, ["tier", "noise"])
    assert metrics["holdout_roc_auc"] > 0.7  # the tier carries the signal
    p = model.predict_proba(seg[["tier", "noise"]])[:, 1]
    assert np.isfinite(p).all()
