"""Published labels joined to what a model scored: monitoring and shadow reports measure the
spec's metric on the rows whose labels have arrived.

A label row belongs to the entity and the features' event time it was built for (the dbt label
model stamps it at the time of the features it follows), so the join is on the entity keys and
that event time; a row whose label is not published yet gets NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from featurestack.core.settings import Settings
from models_py.prediction_log import expand


def join_labels(
    settings: Settings, frame: pd.DataFrame, keys: list[str], label_model: str, target: str
) -> pd.DataFrame:
    """``frame`` (keys and ``event_timestamp``: the features' event time) with a ``label``
    column from the published label model; NaN where it has no row (yet)."""
    path = settings.published_table(label_model)
    if not path.exists() or frame.empty:
        return frame.assign(label=np.nan)
    labels = pd.read_parquet(path, columns=[*keys, "event_timestamp", target])
    labels = labels.rename(columns={target: "label"})
    left = frame.copy()
    for side in (left, labels):
        side["event_timestamp"] = pd.to_datetime(side["event_timestamp"], utc=True).astype(
            "datetime64[ns, UTC]"
        )
    return left.merge(labels, on=[*keys, "event_timestamp"], how="left")


def log_with_labels(
    settings: Settings, log: pd.DataFrame, label_model: str, target: str
) -> pd.DataFrame:
    """Prediction-log rows with a ``label`` column: each row's entity and the event time of
    the features it was scored on, joined with the published label model."""
    if log.empty:
        return log.assign(label=np.nan)
    entity = expand(log, "entity")
    frame = pd.concat([log, entity], axis=1).assign(event_timestamp=log["feature_time"])
    return join_labels(settings, frame, list(entity.columns), label_model, target)
