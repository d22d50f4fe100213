"""Gates at the model's edges: the training set before fitting, prediction inputs before scoring.

The published tables have passed the gate, but a training set is a point-in-time join of them
(a feature can be entirely null for the labels' dates) and a prediction input is whatever the
stores hold at scoring time (a feature service can have changed since the model was trained).
These checks are plain pandas, not Great Expectations: they run inside every training and
scoring call, where a 5-second import would be paid each time, and each is one vectorised
expression whose failure message is written for the person who has to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from featurestack.core.errors import CheckFailed

#: Tasks whose label is a class; the others are numbers.
CLASS_TASKS = ("binary", "multiclass")


class InputError(CheckFailed):
    """The frame cannot be used as it is; the message lists every problem found.

    In the model server this is the server's problem, not the client's (the online store
    holds values the model cannot take): a 500, not a 4xx."""

    http_status = 500


@dataclass
class TrainingSetReport:
    """What the training-set gate saw: logged with the run, printed on failure."""

    rows: dict[str, int]
    label: str
    label_dtype: str
    #: segment → class → row count (classification tasks)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: feature → share of null values over all segments
    null_share: dict[str, float] = field(default_factory=dict)
    #: rows where every feature is null (entities the stores knew nothing about yet)
    rows_without_features: int = 0
    problems: list[str] = field(default_factory=list)
    #: features left out of the model: null throughout the published data (the raw data
    #: lacks an optional column they need), so the model cannot learn from them
    dropped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dropped_features": self.dropped,
            "rows": self.rows,
            "label": self.label,
            "label_dtype": self.label_dtype,
            "class_counts": self.class_counts,
            # binary labels only: a multiclass label has no single positive class
            "positive_rate": {
                seg: counts.get("1", 0) / max(sum(counts.values()), 1)
                for seg, counts in self.class_counts.items()
                if set(counts) <= {"0", "1"}
            },
            "null_share": self.null_share,
            "rows_without_features": self.rows_without_features,
            "problems": self.problems,
        }


def _label_problems(label: pd.Series, name: str, task: str) -> list[str]:
    problems = []
    if label.isna().any():
        problems.append(f"label {name} has {int(label.isna().sum())} null value(s)")
    values = label.dropna()
    if task == "binary":
        if not (pd.api.types.is_integer_dtype(label) or pd.api.types.is_bool_dtype(label)):
            problems.append(
                f"label {name} is {label.dtype}; a binary label must be integer or boolean"
            )
        elif not set(values.astype(int).unique()) <= {0, 1}:
            found = sorted(int(v) for v in set(values.astype(int).unique()) - {0, 1})[:5]
            problems.append(f"label {name} holds values other than 0 and 1: {found}")
    elif task == "multiclass":
        if pd.api.types.is_float_dtype(label):
            problems.append(f"label {name} is {label.dtype}; a class label must not be a float")
    else:
        if not pd.api.types.is_numeric_dtype(label) or pd.api.types.is_bool_dtype(label):
            problems.append(f"label {name} is {label.dtype}; a {task} label must be numeric")
        elif not np.isfinite(values.to_numpy(dtype="float64")).all():
            problems.append(f"label {name} holds NaN or infinite values")
    return problems


def check_training_set(
    segments: dict[str, pd.DataFrame],
    features: list[str],
    label: str,
    task: str,
    absent: frozenset[str] = frozenset(),
) -> TrainingSetReport:
    """Refuse a training set a model cannot learn from honestly; report its class balance.

    Raises :class:`InputError` naming every problem: the label missing, null or of the wrong
    type for the task; a feature column missing or entirely null; an infinite feature value;
    a training segment holding a single class. ``absent``: features null throughout the
    published data (an optional raw column is missing): an entirely null one of them is
    dropped from the model (``report.dropped``) rather than refused.
    """
    frames = list(segments.values())
    whole = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    report = TrainingSetReport(
        rows={name: len(frame) for name, frame in segments.items()},
        label=label,
        label_dtype=str(whole[label].dtype) if label in whole else "missing",
    )
    problems = report.problems
    if label not in whole:
        problems.append(f"label column {label} is not in the training set")
    else:
        problems.extend(_label_problems(whole[label], label, task))
    missing = [f for f in features if f not in whole]
    if missing:
        problems.append(f"feature column(s) missing from the training set: {missing}")
    present = [f for f in features if f in whole]
    if not whole.empty and present:
        nulls = whole[present].isna()
        report.null_share = {f: float(nulls[f].mean()) for f in present}
        report.rows_without_features = int(nulls.all(axis=1).sum())
        empty = [f for f in present if nulls[f].all()]
        report.dropped = [f for f in empty if f in absent]
        refused = [f for f in empty if f not in absent]
        if refused:
            problems.append(f"feature column(s) entirely null in the training set: {refused}")
        numeric = [f for f in present if pd.api.types.is_numeric_dtype(whole[f])]
        values = whole[numeric].to_numpy(dtype="float64", na_value=np.nan)
        infinite = [f for f, bad in zip(numeric, np.isinf(values).any(axis=0), strict=True) if bad]
        if infinite:
            problems.append(f"feature column(s) with infinite values: {infinite}")
    if whole.empty:
        problems.append("the training set is empty")
    if task in CLASS_TASKS and label in whole:
        for name, frame in segments.items():
            counts = frame[label].value_counts(dropna=True).sort_index()
            report.class_counts[name] = {str(k): int(v) for k, v in counts.items()}
        train_classes = len(report.class_counts.get("train", {}))
        if train_classes < 2 and not problems:
            problems.append(
                f"the training segment holds {train_classes} class(es) of {label}; "
                "a classifier needs at least two"
            )
    if problems:
        raise InputError("training set refused:\n" + "\n".join(f"  - {p}" for p in problems))
    return report


# -- prediction inputs ----------------------------------------------------------------------

#: MLflow signature type → what a frame column may hold for it.
_KINDS = {
    "double": "numeric",
    "float": "numeric",
    "long": "numeric",
    "integer": "numeric",
    "boolean": "boolean",
    "string": "string",
    "datetime": "datetime",
}


def _kind(series: pd.Series) -> str:
    """What a column holds, looking inside object columns (an online read gives floats and
    None in one object column)."""
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred == "empty":
        return "null"  # every value null: fits any type (the model sees NaN)
    if inferred in ("floating", "integer", "mixed-integer-float", "decimal"):
        return "numeric"
    return {"boolean": "boolean", "datetime": "datetime"}.get(inferred, "string")


def feature_ranges(frame: pd.DataFrame, features: list[str]) -> dict[str, list[float | None]]:
    """Per numeric feature, the [min, max] the model was fitted on (None where all null)."""
    out: dict[str, list[float | None]] = {}
    for f in features:
        if f in frame and pd.api.types.is_numeric_dtype(frame[f]):
            values = frame[f].dropna()
            out[f] = [float(values.min()), float(values.max())] if len(values) else [None, None]
    return out


def check_prediction_input(
    frame: pd.DataFrame,
    inputs: list[tuple[str, str]],
    ranges: dict[str, list[float | None]] | None = None,
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Conform ``frame`` to the model signature; flag what the model has not seen.

    ``inputs`` is the signature as (column, MLflow type) pairs. A missing column or one of
    another kind (text where a number is expected) raises :class:`InputError`. Returns the
    signature's columns as float64 (numeric inputs), a boolean Series ``scorable`` (no
    infinite value: such a row is not scored) and a Series of lists ``out_of_range`` naming,
    per row, the features outside the range seen in training or not finite.
    """
    problems = []
    missing = [name for name, _ in inputs if name not in frame]
    if missing:
        problems.append(f"column(s) the model was trained on are missing: {missing}")
    for name, mlflow_type in inputs:
        if name not in frame:
            continue
        want, have = _KINDS.get(mlflow_type, mlflow_type), _kind(frame[name])
        if have != want and not (have == "null" or (want == "numeric" and have == "boolean")):
            problems.append(
                f"column {name} is {frame[name].dtype}; the model expects {mlflow_type}"
            )
    if problems:
        raise InputError("prediction input refused:\n" + "\n".join(f"  - {p}" for p in problems))
    columns = [name for name, _ in inputs]
    numeric = [n for n, t in inputs if _KINDS.get(t) == "numeric"]
    out = frame[columns].copy()
    for name in numeric:
        out[name] = pd.to_numeric(out[name]).astype("float64")
    flags: list[list[str]] = [[] for _ in range(len(out))]
    scorable = np.ones(len(out), dtype=bool)
    for name in numeric:
        values = out[name].to_numpy()
        bad = np.isinf(values)
        scorable &= ~bad
        low, high = (ranges or {}).get(name, [None, None])
        outside = bad.copy()
        if low is not None:
            outside |= values < low
        if high is not None:
            outside |= values > high
        for i in np.flatnonzero(outside):
            flags[i].append(name)
    return (
        out,
        pd.Series(scorable, index=frame.index, name="scorable"),
        pd.Series(flags, index=frame.index, name="out_of_range", dtype=object),
    )
