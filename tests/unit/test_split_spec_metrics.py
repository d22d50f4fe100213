import numpy as np
import pandas as pd
import pytest

from models_py.dataset import time_split
from models_py.metrics import binary_metrics
from models_py.plugins import available, get_plugin
from models_py.spec import ModelSpec, SpecError, SplitSpec, all_specs, load_spec


def _frame(n_days: int, per_day: int = 3) -> pd.DataFrame:
    days = pd.date_range("2024-01-01", periods=n_days, freq="D", tz="UTC")
    return pd.DataFrame({"event_timestamp": np.repeat(days, per_day), "x": range(n_days * per_day)})


def test_time_split_is_ordered_disjoint_and_embargoed() -> None:
    frame = _frame(100)
    seg = time_split(
        frame, SplitSpec(validation_fraction=0.2, holdout_fraction=0.2, embargo_periods=2)
    )
    tr, va, ho = (seg[k]["event_timestamp"] for k in ("train", "validation", "holdout"))
    assert tr.max() < va.min() and va.max() < ho.min()
    days = np.sort(frame["event_timestamp"].unique())
    pos = {d: i for i, d in enumerate(days)}
    assert pos[va.min()] - pos[tr.max()] == 3  # two embargoed days in between
    assert pos[ho.min()] - pos[va.max()] == 3
    assert ho.nunique() == 20 and va.nunique() == 20
    used = sum(len(s) for s in seg.values())
    assert used == len(frame) - 2 * 2 * 3  # only embargoed rows are dropped


def test_time_split_refuses_too_few_dates() -> None:
    with pytest.raises(ValueError, match="too few"):
        time_split(_frame(3), SplitSpec())


def test_shipped_specs_are_valid_and_name_known_plugins() -> None:
    specs = all_specs()
    assert {s.name for s in specs} >= {"next_day_up"}
    for spec in specs:
        plugin = get_plugin(spec.plugin)
        plugin.from_params(spec.task, spec.params)  # raises if params are invalid


def test_invalid_specs_and_params_are_rejected_with_the_field_name(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nfeature_service: s\nlabel: {model: m, target: t}\ntask: binary\n"
        "plugin: lightgbm\nsplit: {holdout_fraction: 0.5, validation_fraction: 0.45}\n"
    )
    with pytest.raises(SpecError, match="leave"):
        load_spec(str(bad))
    with pytest.raises(SpecError, match="no model spec"):
        load_spec("does_not_exist")
    lgbm = get_plugin("lightgbm")
    with pytest.raises(ValueError, match="num_leaves"):
        lgbm.from_params("binary", {"num_leaves": 1})
    with pytest.raises(ValueError, match="not_a_param"):
        lgbm.from_params("binary", {"not_a_param": 1})
    with pytest.raises(ValueError, match="does not support task 'quantile'"):
        get_plugin("logreg").from_params("quantile", {})
    with pytest.raises(KeyError, match=r"available: .*lightgbm"):
        get_plugin("nope")
    assert "lightgbm" in available()


def test_binary_metrics_on_known_cases() -> None:
    y = np.array([0, 0, 1, 1])
    perfect = binary_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect["roc_auc"] == 1.0 and perfect["f1"] == 1.0
    constant = binary_metrics(y, np.full(4, 0.5))
    assert constant["roc_auc"] == 0.5
    assert constant["log_loss"] == pytest.approx(constant["log_loss_constant"])
    assert perfect["log_loss"] < constant["log_loss_constant"]


def test_spec_consistency_rules_and_multi_target_expansion() -> None:
    from pydantic import ValidationError

    from models_py.spec import ModelSpec

    base = {"name": "m", "feature_service": "s", "plugin": "lightgbm"}
    label = {"model": "l", "target": "y"}
    with pytest.raises(ValidationError, match=r"exactly one of label\.target or label\.targets"):
        ModelSpec(**base, label={"model": "l", "target": "y", "targets": ["z"]}, task="binary")
    with pytest.raises(ValidationError, match="does not fit task 'regression'"):
        ModelSpec(**base, label=label, task="regression")  # default metric roc_auc
    with pytest.raises(ValidationError, match="interval is for regression"):
        ModelSpec(**base, label=label, task="binary", interval={"coverage": 0.8})
    with pytest.raises(ValidationError, match="needs sample_weight_column"):
        ModelSpec(**base, label=label, task="binary", imbalance="sample_weight")
    multi = ModelSpec(
        **base,
        label={"model": "l", "targets": ["a", "b"]},
        task="regression",
        primary_metric="rmse",
    )
    expanded = multi.expand()
    assert [s.name for s in expanded] == ["m__a", "m__b"]
    assert [s.label.target for s in expanded] == ["a", "b"]
    assert all(not s.label.targets for s in expanded)


def test_label_bounds_clip_predictions_and_intervals() -> None:
    from sklearn.dummy import DummyRegressor

    from models_py.intervals import IntervalRegressor

    X = np.zeros((4, 1))
    point = DummyRegressor(strategy="constant", constant=0.5).fit(X, np.zeros(4))
    clipped = IntervalRegressor(point, 2.0, bounds=(0.0, None)).fit(None, None)
    low, high = clipped.predict_interval(X)
    assert (low == 0.0).all() and (high == 2.5).all()
    free = IntervalRegressor(point, 2.0).fit(None, None)
    assert (free.predict_interval(X)[0] == -1.5).all()
    capped = IntervalRegressor(point, 2.0, bounds=(None, 0.25)).fit(None, None)
    assert (capped.predict(X) == 0.25).all()


def test_label_bounds_are_checked_and_follow_their_target() -> None:
    base = {"name": "m", "feature_service": "s", "plugin": "lightgbm", "task": "regression"}
    label = {"model": "l", "targets": ["a", "b"], "bounds": {"b": [0, None]}}
    spec = ModelSpec(**base, primary_metric="rmse", label=label)
    a, b = spec.expand()
    assert a.label.bounds == {} and b.label.bounds == {"b": (0, None)}
    with pytest.raises(ValueError, match="not targets"):
        ModelSpec(**base, primary_metric="rmse", label={**label, "bounds": {"c": [0, 1]}})
    with pytest.raises(ValueError, match="lower bound"):
        ModelSpec(**base, primary_metric="rmse", label={**label, "bounds": {"b": [1, 0]}})
