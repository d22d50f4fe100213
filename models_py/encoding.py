"""Text features as numbers: the one preprocessing step featurestack adds in front of a plugin.

Feature views can hold text (a customer's segment); plugins take numbers. Each text column is
ordinal-encoded with the categories seen in the training rows, sorted; a category never seen,
or a missing value, becomes NaN, which every plugin accepts. The encoder is part of the logged
model (a scikit-learn Pipeline in front of it), so scoring encodes exactly as training did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def text_columns(frame: pd.DataFrame, features: list[str]) -> list[str]:
    return [
        f
        for f in features
        if not (pd.api.types.is_numeric_dtype(frame[f]) or pd.api.types.is_bool_dtype(frame[f]))
    ]


def fit_encoder(frame: pd.DataFrame, features: list[str]) -> Any | None:
    """A fitted encoder for the text features of ``frame`` (None when all are numeric)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    text = text_columns(frame, features)
    if not text:
        return None
    encoder = ColumnTransformer(
        [
            (
                "text",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                ),
                text,
            )
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    return encoder.fit(frame[features])


def encode(encoder: Any | None, frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """``frame[features]`` as the plugin sees it (same column order as the encoder's output)."""
    return frame[features] if encoder is None else encoder.transform(frame[features])


def with_encoder(encoder: Any | None, model: Any) -> Any:
    """The model to log: the encoder in front of the fitted model, or the model alone."""
    if encoder is None:
        return model
    from sklearn.pipeline import Pipeline

    return Pipeline([("encode", encoder), ("model", model)])


def split_pipeline(model: Any) -> tuple[Any | None, Any]:
    """(encoder or None, the model behind it)."""
    steps = getattr(model, "steps", None)
    if steps and steps[0][0] == "encode":
        return steps[0][1], steps[-1][1]
    return None, model
