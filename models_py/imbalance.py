"""Class imbalance, applied the same way in every fit: the refit and each tuning fold.

``class_weight`` and ``scale_pos_weight`` set plugin parameters (from the rows being fitted,
never from validation rows); ``sample_weight`` reads a column of the label table, kept in the
training set next to the target; ``smote`` adds synthetic minority rows to the rows being
fitted only (SMOTE, or SMOTE-NC with text features; imbalanced-learn).
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
    if spec.imbalance in ("none", "smote"):  # smote: rows are added instead (oversample)
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


def oversample(
    spec: ModelSpec, X: pd.DataFrame, y: pd.Series, categorical: list[str]
) -> tuple[pd.DataFrame, pd.Series]:
    """``imbalance: smote``: synthetic minority rows (imbalanced-learn's SMOTE, SMOTE-NC when
    there are text features, given here as their encoded ``categorical`` columns) appended to
    the rows of one fit: the training segment or a tuning fold's training rows, never the
    rows it is validated, calibrated or scored on. The original rows are kept as they are
    (missing values too); the synthetic ones are drawn from a median-filled copy, as SMOTE
    needs complete rows."""
    from imblearn.over_sampling import SMOTE, SMOTENC

    counts = y.value_counts()
    minority = int(counts.min()) if len(counts) > 1 else 0
    if minority < 2:
        raise SpecError(
            f"imbalance: smote needs at least 2 rows of every class in the rows being fitted; "
            f"{spec.label.target} has {minority} of its rarest class there. Use class_weight, "
            "or a split with more training rows"
        )
    filled = X.fillna(X.median(numeric_only=True)).fillna(0.0)
    k = min(5, minority - 1)
    cat_idx = [X.columns.get_loc(c) for c in categorical if c in X.columns]
    sampler = (
        SMOTENC(categorical_features=cat_idx, k_neighbors=k, random_state=spec.seed)
        if cat_idx
        else SMOTE(k_neighbors=k, random_state=spec.seed)
    )
    X_res, y_res = sampler.fit_resample(filled, y)
    synthetic = X_res.iloc[len(X) :]  # imbalanced-learn appends the new rows after the originals
    X_out = pd.concat([X, synthetic.astype(X.dtypes.to_dict())], ignore_index=True)
    y_out = pd.concat([y.reset_index(drop=True), pd.Series(y_res[len(X) :], name=y.name)])
    return X_out, y_out.reset_index(drop=True)
