"""Tuning: walk-forward folds never look ahead, studies are reproducible and resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from models_py.plugins import get_plugin
from models_py.spec import CVSpec, ModelSpec
from models_py.tuning import cv_folds, tune


def daily_frame(days: int = 40, per_day: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.repeat(pd.date_range("2024-01-01", periods=days, freq="D", tz="UTC"), per_day)
    x = rng.normal(size=len(ts))
    up = (x + rng.normal(scale=1.0, size=len(ts)) > 0).astype(int)
    return pd.DataFrame(
        {"event_timestamp": ts, "f": x, "g": rng.normal(size=len(ts)), "next_day_up": up}
    )


@pytest.mark.parametrize("embargo", [0, 1, 3])
def test_walk_forward_folds_expand_and_keep_the_embargo(embargo: int) -> None:
    frame = daily_frame()
    folds = list(cv_folds(frame, CVSpec(folds=3, embargo_periods=embargo), "next_day_up"))
    assert len(folds) == 3
    days = frame["event_timestamp"]
    previous_train = 0
    for train_rows, valid_rows in folds:
        last_train, first_valid = days.iloc[train_rows].max(), days.iloc[valid_rows].min()
        gap = ((days > last_train) & (days < first_valid)).groupby(days).any().sum()
        assert first_valid > last_train and gap == embargo  # the embargo, in dates
        assert len(train_rows) > previous_train  # expanding window
        previous_train = len(train_rows)
    # validation blocks move forward and never overlap
    firsts = [days.iloc[v].min() for _, v in folds]
    lasts = [days.iloc[v].max() for _, v in folds]
    assert all(lasts[i] < firsts[i + 1] for i in range(2))


def test_too_few_dates_for_the_folds_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot make 5 walk-forward folds"):
        list(cv_folds(daily_frame(days=8), CVSpec(folds=5, embargo_periods=2), "next_day_up"))


def test_shuffled_folds_need_the_spec_to_say_rows_are_not_time_ordered() -> None:
    with pytest.raises(ValidationError, match="leak the future"):
        CVSpec(scheme="stratified_kfold")
    assert CVSpec(scheme="stratified_kfold", time_ordered=False).folds == 3


def spec(trials: int, seed: int = 7) -> ModelSpec:
    return ModelSpec(
        name="tuned",
        feature_service="any",
        label={"model": "lbl", "target": "next_day_up"},
        task="binary",
        plugin="lightgbm",
        params={"n_estimators": 30, "early_stopping_rounds": 5, "n_jobs": 1},
        cv={"folds": 3, "embargo_periods": 1},
        tuning={"trials": trials, "sampler_seed": seed, "pruner": "median"},
    )


@pytest.mark.slow  # several fits or processes: the full suite runs it
def test_a_study_is_reproducible_with_the_same_seed_and_resumes(tmp_path: Path) -> None:
    frame, plugin = daily_frame(), get_plugin("lightgbm")
    seen: list[tuple[int, list[float]]] = []
    first = tune(
        spec(8),
        plugin,
        frame,
        ["f", "g"],
        f"sqlite:///{tmp_path / 'a.db'}",
        on_trial=lambda t, folds: seen.append((t.number, folds)),
    )
    second = tune(spec(8), plugin, frame, ["f", "g"], f"sqlite:///{tmp_path / 'b.db'}")
    assert first.best_params == second.best_params and first.best_value == second.best_value
    assert first.trials == 8 and [n for n, _ in seen] == list(range(8))
    assert first.pruned >= 1  # the median pruner stopped some trials after a fold or two
    for entry in first.history:
        folds = dict(seen)[entry["number"]]
        if entry["state"] == "PRUNED":
            assert len(folds) < 3
        else:
            assert len(folds) == 3 and entry["value"] == pytest.approx(np.mean(folds))
    assert first.best_value == max(e["value"] for e in first.history if e["value"] is not None)
    # The same study again: nothing re-run; a bigger budget adds only the missing trials.
    again = tune(spec(8), plugin, frame, ["f", "g"], f"sqlite:///{tmp_path / 'a.db'}")
    assert again.trials == 8 and again.best_params == first.best_params
    more = tune(spec(10), plugin, frame, ["f", "g"], f"sqlite:///{tmp_path / 'a.db'}")
    assert more.trials == 10
    other = tune(spec(8, seed=8), plugin, frame, ["f", "g"], f"sqlite:///{tmp_path / 'a.db'}")
    assert other.study_name != first.study_name


@pytest.mark.slow  # several fits or processes: the full suite runs it
def test_parallel_jobs_share_one_study_and_its_budget(tmp_path: Path) -> None:
    result = tune(
        spec(6),
        get_plugin("lightgbm"),
        daily_frame(),
        ["f", "g"],
        f"sqlite:///{tmp_path / 'p.db'}",
        jobs=2,
    )
    # Each process stops once the study holds the budget; one may have a trial in flight.
    assert 6 <= result.trials <= 7
    assert len({t["pid"] for t in result.history}) == 2, "both processes ran trials"
    assert sorted(t["number"] for t in result.history) == list(range(result.trials))
