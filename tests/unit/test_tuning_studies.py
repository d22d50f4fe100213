"""Issue 20: tuning a rare label on F1, studies that never mix specs or data, splits by day."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from models_py.plugins import get_plugin
from models_py.spec import CVSpec, ModelSpec, SplitSpec
from models_py.splits import time_split
from models_py.tuning import DATA_ATTR, cv_folds, tune


def rare_frame(
    days: int = 60, per_day: int = 25, rate: float = 0.045, seed: int = 0
) -> pd.DataFrame:
    """A 7 %-positive label that two features explain in part (the demo's upper_circuit)."""
    rng = np.random.default_rng(seed)
    ts = np.repeat(pd.date_range("2024-01-01", periods=days, freq="D", tz="UTC"), per_day)
    f, g = rng.normal(size=len(ts)), rng.normal(size=len(ts))
    logit = np.log(rate / (1 - rate)) + 1.2 * f + 0.4 * g
    y = (rng.random(len(ts)) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"event_timestamp": ts, "f": f, "g": g, "hit": y})


def spec_for(plugin: str, trials: int = 4, metric: str = "f1", **extra: object) -> ModelSpec:
    params = {
        "logreg": {},
        "lightgbm": {"n_estimators": 20, "n_jobs": 1, "early_stopping_rounds": 5},
        "xgboost": {"n_estimators": 20, "n_jobs": 1, "early_stopping_rounds": 5},
    }[plugin]
    return ModelSpec(
        name="events",
        feature_service="any",
        label={"model": "lbl", "target": "hit"},
        task="binary",
        primary_metric=metric,
        plugin=plugin,
        params=params,
        cv={"folds": 2, "embargo_periods": 1},
        tuning={"trials": trials, "sampler_seed": 3, "pruner": "none"},
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.slow  # five trials of three fits: the full suite runs it
def test_an_f1_study_of_a_rare_label_scores_trials_at_their_threshold(tmp_path: Path) -> None:
    """At a 0.5 threshold every trial of a 7 % label scored F1 0.0: the study learnt nothing."""
    frame = rare_frame()
    assert 0.04 < frame["hit"].mean() < 0.1
    result = tune(
        spec_for("logreg", trials=5, imbalance="class_weight"),
        get_plugin("logreg"),
        frame,
        ["f", "g"],
        f"sqlite:///{tmp_path / 's.db'}",
    )
    values = [t["value"] for t in result.history if t["value"] is not None]
    assert len(values) == 5
    # better than predicting every row positive (F1 = 2p / (1 + p)), and not all alike
    p = frame["hit"].mean()
    assert min(values) > 0 and result.best_value > 2 * p / (1 + p)
    assert len({round(v, 9) for v in values}) > 1, values


@pytest.mark.slow  # several fits: the full suite runs it
def test_the_imbalance_method_is_applied_inside_each_fold(tmp_path: Path) -> None:
    """scale_pos_weight from each fold's own training rows: the trials' parameters say so."""
    seen: list[float] = []
    plugin = get_plugin("lightgbm")
    original = plugin.from_params

    def spy(task: str, params: dict) -> object:
        seen.append(params.get("scale_pos_weight", 0.0))
        return original(task, params)

    plugin.from_params = spy  # type: ignore[method-assign]
    try:
        tune(
            spec_for("lightgbm", trials=1, metric="roc_auc", imbalance="scale_pos_weight"),
            plugin,
            rare_frame(),
            ["f", "g"],
            f"sqlite:///{tmp_path / 'w.db'}",
        )
    finally:
        plugin.from_params = original  # type: ignore[method-assign]
    assert len(seen) == 2 and all(w > 5 for w in seen), seen  # ~13 negatives per positive
    assert seen[0] != seen[1]  # each fold's own rows


@pytest.mark.slow  # several fits: the full suite runs it
def test_two_specs_of_one_name_never_share_a_study(tmp_path: Path) -> None:
    """An XGBoost spec then a LightGBM spec named alike: the LightGBM one failed on the
    XGBoost trials (`num_leaves not found … FixedTrial`)."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    frame = rare_frame(days=40)
    first = tune(
        spec_for("xgboost", 2, "roc_auc"), get_plugin("xgboost"), frame, ["f", "g"], storage
    )
    second = tune(
        spec_for("lightgbm", 2, "roc_auc"), get_plugin("lightgbm"), frame, ["f", "g"], storage
    )
    assert first.study_name != second.study_name
    assert "num_leaves" in second.best_params and "num_leaves" not in first.best_params
    assert first.study_name.startswith("events-xgboost-")
    assert second.trials == 2


@pytest.mark.slow  # several fits: the full suite runs it
def test_new_training_rows_start_a_new_study(tmp_path: Path) -> None:
    """Retraining on new data re-tuned nothing: the old study's trials filled the budget."""
    storage = f"sqlite:///{tmp_path / 'retrain.db'}"
    spec, plugin = spec_for("logreg", 3, "roc_auc"), get_plugin("logreg")
    old = tune(spec, plugin, rare_frame(days=40), ["f", "g"], storage)
    new = tune(spec, plugin, rare_frame(days=45, seed=1), ["f", "g"], storage)
    assert new.study_name != old.study_name
    assert new.trials == 3 and all(t["value"] is not None for t in new.history)
    studies = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    assert set(studies) == {old.study_name, new.study_name}
    kept = optuna.load_study(study_name=old.study_name, storage=storage)
    fresh = optuna.load_study(study_name=new.study_name, storage=storage)
    assert kept.user_attrs[DATA_ATTR] != fresh.user_attrs[DATA_ATTR]
    # the same rows again continue their study: nothing re-run
    again = tune(spec, plugin, rare_frame(days=40), ["f", "g"], storage)
    assert again.study_name == old.study_name and again.trials == 3


def races(days: int = 30, per_day: int = 4) -> pd.DataFrame:
    """Several events a day, at different hours (races)."""
    starts = pd.date_range("2024-03-01 12:00", periods=days, freq="D", tz="UTC")
    ts = [s + pd.Timedelta(hours=2 * k) for s in starts for k in range(per_day)]
    return pd.DataFrame({"event_timestamp": ts, "hit": np.arange(len(ts)) % 2})


def test_the_embargo_is_a_calendar_day_with_several_events_a_day() -> None:
    frame = races()
    seg = time_split(frame, SplitSpec(validation_fraction=0.2, holdout_fraction=0.2))
    days = {k: v["event_timestamp"].dt.floor("D") for k, v in seg.items()}
    # whole days in each segment, and one whole day dropped between them
    assert (days["train"].value_counts() == 4).all() and (days["holdout"].value_counts() == 4).all()
    assert (days["validation"].min() - days["train"].max()).days == 2
    assert (days["holdout"].min() - days["validation"].max()).days == 2
    assert sum(len(s) for s in seg.values()) == len(frame) - 2 * 4
    # the old unit, one distinct timestamp, stays available
    old = time_split(
        frame, SplitSpec(validation_fraction=0.2, holdout_fraction=0.2, period="timestamp")
    )
    assert sum(len(s) for s in old.values()) == len(frame) - 2


def test_walk_forward_folds_embargo_whole_days() -> None:
    frame = races()
    stamps = frame["event_timestamp"]
    for train_rows, valid_rows in cv_folds(frame, CVSpec(folds=3, embargo_periods=1), "hit"):
        last_train = stamps.iloc[train_rows].max().floor("D")
        first_valid = stamps.iloc[valid_rows].min().floor("D")
        assert (first_valid - last_train).days == 2
        assert stamps.iloc[valid_rows].dt.floor("D").value_counts().eq(4).all()


@pytest.mark.parametrize("period", ["hour", "week"])
def test_other_periods(period: str) -> None:
    frame = races(days=70)
    seg = time_split(frame, SplitSpec(period=period))  # type: ignore[arg-type]
    assert seg["train"]["event_timestamp"].max() < seg["validation"]["event_timestamp"].min()


def test_folds_without_both_classes_in_training_are_skipped(tmp_path: Path) -> None:
    """A rare label whose first periods hold no positive: that fold cannot be fitted."""
    frame = rare_frame(days=40)
    early = frame["event_timestamp"] < pd.Timestamp("2024-01-12", tz="UTC")
    frame.loc[early, "hit"] = 0
    result = tune(
        spec_for("logreg", trials=2, metric="roc_auc").model_copy(
            update={"cv": CVSpec(folds=3, embargo_periods=0)}
        ),
        get_plugin("logreg"),
        frame,
        ["f", "g"],
        f"sqlite:///{tmp_path / 'skip.db'}",
    )
    assert [t["state"] for t in result.history] == ["COMPLETE", "COMPLETE"]
    frame["hit"] = 0
    frame.loc[frame.index[-5:], "hit"] = 1  # positives only after every fold's training rows
    with pytest.raises(ValueError, match="no walk-forward fold of events has both classes"):
        tune(
            spec_for("logreg", trials=1, metric="roc_auc"),
            get_plugin("logreg"),
            frame,
            ["f", "g"],
            f"sqlite:///{tmp_path / 'none.db'}",
        )
