"""Published labels joined to what a model scored: monitoring, shadow reports and the per-arm
metrics measure the spec's metric on the rows whose labels have arrived.

One rule, :func:`match_labels`, used by every consumer (docs/features.md "The time model"):

* a prediction's instant is the event time of the features it was scored on (the log's
  ``feature_time``; ``monitor --source features``: the entity dataframe's time);
* its label is the **first label row of the same entity at or after that instant, at most
  ``label.horizon`` later** (``0s``, the default: stamped at the features' event time, as the
  demo's label models do; a race's result, stamped when the race is run, needs a horizon as
  long as the gap between a runner's features and its next race);
* or, when the spec names ``label.join_on`` (a race id the label row carries and the
  prediction's entity or request values carry too), the label of the same keys and values,
  whatever its time (the earliest one if there are several).

A row whose label is not published yet gets NaN. The join is pandas' ``merge_asof`` (forward,
by the entity keys, with the horizon as tolerance): a sort-merge, no Python loop per row, and
the same semantics as DuckDB's ASOF join without a second engine for a frame already in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from featurestack.core.errors import UsageError
from featurestack.core.settings import Settings
from models_py.prediction_log import expand
from models_py.spec import LabelSpec

TIME = "event_timestamp"


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


def match_labels(
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    keys: Sequence[str],
    horizon: pd.Timedelta | str = "0s",
    join_on: Sequence[str] = (),
) -> pd.DataFrame:
    """``frame`` (keys, ``event_timestamp``: each prediction's instant, and any ``join_on``
    columns) with ``label`` and ``label_time`` from ``labels`` (keys, ``event_timestamp``,
    ``label``, ``join_on`` columns), by the rule of the module docstring. Same rows, same order,
    same index as ``frame``; NaN / NaT where no label matches."""
    keys, join_on = list(keys), list(join_on)
    missing = [c for c in [*keys, *join_on] if c not in frame.columns]
    if missing:
        raise UsageError(
            f"the predictions lack {missing}, needed to meet their labels (label.join_on names "
            "columns that the prediction's entity or request values must carry)"
        )
    right = labels[[*keys, *join_on, TIME, "label"]].rename(columns={TIME: "label_time"})
    right["label_time"] = _utc(right["label_time"])
    for key in [*keys, *join_on]:  # JSON gives int64 / object; the table may say int32
        if right[key].dtype != frame[key].dtype:
            right[key] = right[key].astype(frame[key].dtype)
    left = frame.copy()
    left[TIME] = _utc(left[TIME])
    if join_on:
        first = right.sort_values("label_time", kind="stable").drop_duplicates(
            [*keys, *join_on], keep="first"
        )
        out = left.merge(first, on=[*keys, *join_on], how="left", validate="many_to_one")
        out.index = frame.index
        return out
    left["_row"] = np.arange(len(left))
    timed = left[left[TIME].notna()].sort_values(TIME, kind="stable")
    right["_at"] = right["label_time"]
    right = right.dropna(subset=["_at"]).sort_values("_at", kind="stable")
    merged = pd.merge_asof(
        timed,
        right,
        left_on=TIME,
        right_on="_at",
        by=keys or None,
        direction="forward",
        tolerance=pd.Timedelta(horizon),
        allow_exact_matches=True,
    ).drop(columns="_at")
    untimed = left[left[TIME].isna()].assign(label=np.nan, label_time=pd.NaT)
    out = pd.concat([merged, untimed]).sort_values("_row").drop(columns="_row")
    out.index = frame.index
    return out


def read_labels(
    settings: Settings, label: LabelSpec, keys: Sequence[str], target: str | None = None
) -> pd.DataFrame | None:
    """The published label table's keys, time, ``join_on`` columns and target (as ``label``);
    None when it is not published."""
    path = settings.published_table(label.model)
    if not path.exists():
        return None
    target = target or label.target
    wanted = list(dict.fromkeys([*keys, *label.join_on, TIME, target]))
    return pd.read_parquet(path, columns=wanted).rename(columns={target: "label"})


def join_labels(
    settings: Settings, frame: pd.DataFrame, keys: list[str], label: LabelSpec
) -> pd.DataFrame:
    """``frame`` (keys and ``event_timestamp``: the features' event time) with ``label`` and
    ``label_time`` from the published label model by the spec's rule; NaN where none (yet)."""
    labels = read_labels(settings, label, keys) if not frame.empty else None
    if labels is None:
        return frame.assign(label=np.nan, label_time=pd.NaT)
    return match_labels(frame, labels, keys, label.horizon_delta, label.join_on)


def log_with_labels(settings: Settings, log: pd.DataFrame, label: LabelSpec) -> pd.DataFrame:
    """Prediction-log rows with a ``label`` column: each row's entity, its instant (the event
    time of the features it was scored on) and the ``join_on`` values among its entity and
    request values, met with the published label model."""
    if log.empty:
        return log.assign(label=np.nan, label_time=pd.NaT)
    entity = expand(log, "entity")
    frame = pd.concat([log, entity], axis=1).assign(event_timestamp=log["feature_time"])
    extra = [c for c in label.join_on if c not in entity.columns]
    if extra:
        inputs = expand(log, "features")
        for column in extra:
            if column in inputs:
                frame[column] = inputs[column]
    return join_labels(settings, frame, list(entity.columns), label)
