"""Time-based splits: train | validation | holdout, and the walk-forward folds of tuning.

Both cut the rows by *periods* of the event time: calendar days (UTC) by default, so an
embargo of one period drops a whole day even when a day holds several events (races, orders),
or hours, weeks, or each distinct timestamp (``period: timestamp``). Rows of one period always
land in the same segment or fold, and no training label (which looks ahead) overlaps what
follows it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from models_py.spec import CVSpec, SplitSpec


def period_keys(ts: pd.Series, period: str) -> pd.Series:
    """Each row's period: the start of its calendar day / hour / ISO week, or the timestamp."""
    ts = pd.to_datetime(ts)
    if period == "timestamp":
        return ts
    if period == "hour":
        return ts.dt.floor("h")
    day = ts.dt.floor("D")
    if period == "week":
        return day - pd.to_timedelta(day.dt.weekday, unit="D")
    return day


def time_split(frame: pd.DataFrame, split: SplitSpec) -> dict[str, pd.DataFrame]:
    """Train / validation / holdout by distinct periods, with ``embargo_periods`` whole
    periods dropped before validation and before the holdout."""
    from featurestack.core.errors import CheckFailed

    keys = period_keys(frame["event_timestamp"], split.period)
    periods = np.sort(keys.unique())
    n = len(periods)
    n_hold = max(1, round(n * split.holdout_fraction))
    n_valid = max(1, round(n * split.validation_fraction))
    emb = split.embargo_periods
    hold_start = n - n_hold
    valid_start = hold_start - emb - n_valid
    train_end = valid_start - emb
    if train_end < 1:
        raise CheckFailed(
            f"only {n} distinct {split.period} periods: too few for a "
            f"{split.validation_fraction:.0%} validation and {split.holdout_fraction:.0%} "
            f"holdout split with an embargo of {emb}; give a finer split.period or more data"
        )
    segments = {
        "train": keys < periods[train_end],
        "validation": (keys >= periods[valid_start]) & (keys < periods[valid_start + n_valid]),
        "holdout": keys >= periods[hold_start],
    }
    return {name: frame.loc[mask].reset_index(drop=True) for name, mask in segments.items()}


def cv_folds(
    frame: pd.DataFrame, cv: CVSpec, target: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) index arrays per fold.

    Walk-forward: the frame's distinct periods are cut into ``folds + 1`` blocks; fold k trains
    on blocks 0..k and validates on block k+1 minus its first ``embargo_periods`` periods, so
    no training label (which looks ahead) overlaps the periods it is scored on.
    """
    if cv.scheme == "stratified_kfold":
        from sklearn.model_selection import StratifiedKFold

        splitter = StratifiedKFold(n_splits=cv.folds, shuffle=True, random_state=0)
        yield from splitter.split(frame, frame[target])
        return
    keys = period_keys(frame["event_timestamp"], cv.period).to_numpy()
    periods = np.sort(pd.unique(keys))
    blocks = np.array_split(np.arange(len(periods)), cv.folds + 1)
    if min(len(b) for b in blocks) <= cv.embargo_periods:
        raise ValueError(
            f"{len(periods)} distinct {cv.period} periods cannot make {cv.folds} walk-forward "
            f"folds with an embargo of {cv.embargo_periods}; use fewer folds (cv.folds)"
        )
    for k in range(cv.folds):
        train_end = periods[blocks[k][-1]]
        valid = blocks[k + 1][cv.embargo_periods :]
        train_rows = np.flatnonzero(keys <= train_end)
        valid_rows = np.flatnonzero((keys >= periods[valid[0]]) & (keys <= periods[valid[-1]]))
        yield train_rows, valid_rows
