"""What featurestack's training path costs over calling the library directly, and tuning speed.

1. Overhead: on one synthetic DataFrame (default 1,000,000 rows x 30 float features, a binary
   label, 10 % of values missing), `fit_and_evaluate` (the plugin: input validation, early
   stopping on validation, threshold on validation, metrics on validation and holdout) against
   the same work written directly with LightGBM's / XGBoost's scikit-learn classes (same
   parameters, same early stopping, predict_proba and the same metrics). Median of 3 each,
   alternating, in one process. Goal: ratio <= 1.15.
2. Tuning: Optuna trials per minute on the same study definition with `jobs=1` and `jobs=2`
   (`--workers`; LightGBM with one thread per trial, 3 walk-forward folds, median pruning),
   each into a fresh storage: SQLite in a temporary folder, and/or PostgreSQL (the scale
   profile's storage: a database `featurestack_bench_<random>` created on the server of
   FEATURESTACK_PG_URL and dropped afterwards); the time includes starting the worker process.

Usage: .venv/bin/python bench/train.py [--rows 1000000 --features 30 --trials 12]
       [--storage sqlite|postgresql|both] [--tuning-only]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models_py.fitting import fit_and_evaluate
from models_py.metrics import binary_metrics, choose_threshold
from models_py.plugins import get_plugin
from models_py.spec import ModelSpec
from models_py.tuning import tune

PARAMS = {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20, "n_jobs": 2}


def dataset(rows: int, features: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype("float64")
    logit = X[:, :5] @ rng.normal(size=5) + 0.3 * rng.normal(size=rows)
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype("int32")
    X[rng.uniform(size=X.shape) < 0.1] = np.nan
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(features)])
    frame["y"] = y
    days = np.sort(rng.integers(0, 750, size=rows))
    frame["event_timestamp"] = pd.Timestamp("2023-01-02", tz="UTC") + pd.to_timedelta(days, "D")
    n = rows
    return {
        "train": frame.iloc[: int(n * 0.65)],
        "validation": frame.iloc[int(n * 0.65) : int(n * 0.8)],
        "holdout": frame.iloc[int(n * 0.8) :],
    }


def spec(plugin: str, **extra: Any) -> ModelSpec:
    return ModelSpec(
        name="bench",
        feature_service="-",
        label={"model": "-", "target": "y"},
        task="binary",
        plugin=plugin,
        params=dict(PARAMS),
        threshold_objective="f1",
        **extra,
    )


def direct(plugin: str, segments: dict[str, pd.DataFrame], features: list[str]) -> float:
    """The same work, written against the library's own scikit-learn class; returns the
    holdout ROC-AUC."""
    train, valid = segments["train"], segments["validation"]
    common = dict(
        n_estimators=PARAMS["n_estimators"],
        learning_rate=PARAMS["learning_rate"],
        n_jobs=PARAMS["n_jobs"],
        random_state=42,
    )
    if plugin == "lightgbm":
        import lightgbm as lgb

        model: Any = lgb.LGBMClassifier(
            **common, deterministic=True, force_row_wise=True, verbose=-1
        )
        model.fit(
            train[features],
            train["y"],
            eval_X=(valid[features],),
            eval_y=(valid["y"],),
            callbacks=[lgb.early_stopping(PARAMS["early_stopping_rounds"], verbose=False)],
        )
    else:
        import xgboost as xgb

        model = xgb.XGBClassifier(
            **common, tree_method="hist", early_stopping_rounds=PARAMS["early_stopping_rounds"]
        )
        model.fit(
            train[features], train["y"], eval_set=[(valid[features], valid["y"])], verbose=False
        )
    threshold = choose_threshold(valid["y"], model.predict_proba(valid[features])[:, 1], "f1")
    metrics = {}
    for name in ("validation", "holdout"):
        seg = segments[name]
        metrics = binary_metrics(seg["y"], model.predict_proba(seg[features])[:, 1], threshold)
    return metrics["roc_auc"]


def overhead(plugin: str, segments: dict[str, pd.DataFrame], features: list[str]) -> tuple:
    """Median seconds of ours and of the library directly, and both holdout ROC-AUCs: the two
    fit the same rows with the same parameters, so they must learn the same signal."""
    ours, theirs = [], []
    auc = {}
    for _ in range(3):
        start = time.perf_counter()
        auc["theirs"] = direct(plugin, segments, features)
        theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        _, metrics = fit_and_evaluate(spec(plugin), get_plugin(plugin), segments, features)
        ours.append(time.perf_counter() - start)
        auc["ours"] = metrics["holdout_roc_auc"]
    return statistics.median(ours), statistics.median(theirs), auc


@contextlib.contextmanager
def fresh_storage(kind: str) -> Iterator[str]:
    """An empty Optuna storage URL of ``kind``, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'study.db'}"
        return
    import psycopg

    from featurestack.core.settings import DEFAULT_PG_URL

    base = os.environ.get("FEATURESTACK_PG_URL", DEFAULT_PG_URL)
    server, _, _ = base.rpartition("/")
    name = f"featurestack_bench_{uuid.uuid4().hex[:8]}"
    admin = server.replace("+psycopg", "") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'create database "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'drop database "{name}" with (force)')


def trials_per_minute(
    segments: dict[str, pd.DataFrame],
    features: list[str],
    jobs: int,
    trials: int,
    storage_kind: str = "sqlite",
) -> tuple[float, int, int]:
    # One thread per trial, so N processes use N cores without oversubscribing them.
    tuned = spec(
        "lightgbm",
        cv={"folds": 3, "embargo_periods": 1},
        tuning={"trials": trials, "sampler_seed": 1, "pruner": "median"},
    ).model_copy(update={"params": {**PARAMS, "n_jobs": 1}})
    with fresh_storage(storage_kind) as storage:
        start = time.perf_counter()
        result = tune(
            tuned, get_plugin("lightgbm"), segments["train"], features, storage, jobs=jobs
        )
        elapsed = time.perf_counter() - start
    return result.trials / elapsed * 60, result.pruned, result.trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--tuning-rows", type=int, default=200_000)
    parser.add_argument("--storage", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--tuning-only", action="store_true", help="skip the overhead runs")
    parser.add_argument(
        "--rounds", type=int, default=1, help="1 then 2 workers, this many times (median)"
    )
    args = parser.parse_args()
    features = [f"f{i}" for i in range(args.features)]
    if not args.tuning_only:
        segments = dataset(args.rows, args.features)
        print(
            f"{args.rows:,} rows x {args.features} features "
            "(train 65 %, validation 15 %, holdout 20 %)"
        )
        print(
            "\n| plugin | featurestack fit_and_evaluate | library directly | ratio (goal <= 1.15) |"
        )
        print("|---|---|---|---|")
        for plugin in ("lightgbm", "xgboost"):
            ours, theirs, auc = overhead(plugin, segments, features)
            print(f"| {plugin} | {ours:.2f} s | {theirs:.2f} s | {ours / theirs:.3f} |")
            if abs(auc["ours"] - auc["theirs"]) > 0.02:
                raise SystemExit(f"{plugin}: holdout ROC-AUC {auc} differ: not the same work")

    small = dataset(args.tuning_rows, args.features, seed=1)
    print(
        f"\nOptuna, LightGBM, {args.tuning_rows:,} training rows, 3 walk-forward folds, "
        f"{args.trials} trials, median pruning:"
    )
    kinds = ["sqlite", "postgresql"] if args.storage == "both" else [args.storage]
    # Alternating 1 and 2 workers per round, so load from elsewhere weighs on both alike.
    rates: dict[tuple[str, int], list[float]] = {}
    print("\n| storage | round | workers (`--jobs`) | trials per minute | pruned | load avg |")
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        for round_ in range(1, args.rounds + 1):
            for jobs in (1, 2):
                rate, pruned, trials = trials_per_minute(small, features, jobs, args.trials, kind)
                # workers check the budget after each trial: each may start one more
                if not args.trials <= trials < args.trials + jobs:
                    raise SystemExit(f"{trials} trials ran, {args.trials} were asked for")
                rates.setdefault((kind, jobs), []).append(rate)
                load = os.getloadavg()[0]
                print(
                    f"| {kind} | {round_} | {jobs} | {rate:.1f} | {pruned} | {load:.1f} |",
                    flush=True,
                )
    print("\n| storage | 1 worker (median) | 2 workers (median) | speed-up |")
    print("|---|---|---|---|")
    for kind in kinds:
        one, two = statistics.median(rates[(kind, 1)]), statistics.median(rates[(kind, 2)])
        print(f"| {kind} | {one:.1f} trials/min | {two:.1f} trials/min | {two / one:.2f}x |")


if __name__ == "__main__":
    main()
