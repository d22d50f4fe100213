"""Class imbalance, applied the same way in every fit: the refit and each tuning fold.

``class_weight`` and ``scale_pos_weight`` set plugin parameters (from the rows being fitted,
never from validation rows); ``sample_weight`` reads a column of the label table, kept in the
training set next to the target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from models_py.spec import ModelSpec, SpecError

if TYPE_CHECKING:
    from models_py.plugins.base import ModelPlugin


def apply_imbalance(
    spec: ModelSpec, plugin: type[ModelPlugin], params: dict[str, Any], train: pd.DataFrame
) -> Any:
    """Apply the spec's class-imbalance method to ``params`` (in place) for a fit on
    ``train``; return the sample weights (None: unweighted)."""
    if spec.imbalance == "sample_weight":
        return sample_weights(spec, train)
    if spec.imbalance == "none":
        return None
    if spec.imbalance not in plugin.Params.model_fields:
        raise SpecError(
            f"imbalance {spec.imbalance!r}: plugin {plugin.name!r} has no such parameter; "
            "use sample_weight or another plugin"
        )
    if spec.imbalance == "class_weight":
        params["class_weight"] = "balanced"
    else:
        positives = int(train[spec.label.target].sum())
        params["scale_pos_weight"] = (len(train) - positives) / max(positives, 1)
    return None


def sample_weights(spec: ModelSpec, train: pd.DataFrame) -> Any:
    """The spec's ``sample_weight_column`` as float weights; a missing, null, negative or
    non-numeric column is a SpecError naming it."""
    column = spec.sample_weight_column
    assert column is not None
    if column not in train.columns:
        raise SpecError(
            f"sample_weight_column {column!r} is not a column of label table "
            f"{spec.label.model}; name one of its columns (e.g. a realised reward)"
        )
    values = pd.to_numeric(train[column], errors="coerce")
    bad = int(values.isna().sum() + (values < 0).sum())
    if bad:
        raise SpecError(
            f"sample_weight_column {column!r}: {bad} row(s) are null, negative or not numbers; "
            "weights must be ≥ 0 (fill or clip them in the label model)"
        )
    if float(values.sum()) <= 0:
        raise SpecError(f"sample_weight_column {column!r}: every weight is 0")
    return values.to_numpy(dtype="float64")
