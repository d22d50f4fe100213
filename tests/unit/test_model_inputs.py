"""The gates at the model's edges: bad training sets are refused, odd prediction inputs flagged."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from models_py.model_inputs import (
    InputError,
    check_prediction_input,
    check_training_set,
    feature_ranges,
)

FEATURES = ["return_1d", "volume_ma_7d"]


def segments(**overrides: object) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)

    def frame(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "symbol": ["AAA"] * n,
                "return_1d": rng.normal(0, 0.01, n),
                "volume_ma_7d": rng.uniform(1e5, 2e5, n),
                "next_day_up": (np.arange(n) % 3 == 0).astype("int32"),
            }
        )

    out = {"train": frame(60), "validation": frame(20), "holdout": frame(20)}
    for name, value in overrides.items():
        for seg in out.values():
            seg[name] = value if not callable(value) else value(seg)
    return out


def test_a_good_training_set_passes_and_reports_class_balance() -> None:
    report = check_training_set(segments(), FEATURES, "next_day_up", "binary").as_dict()
    assert report["rows"] == {"train": 60, "validation": 20, "holdout": 20}
    assert report["class_counts"]["train"] == {"0": 40, "1": 20}
    assert report["positive_rate"]["train"] == pytest.approx(1 / 3)
    assert report["null_share"] == {"return_1d": 0.0, "volume_ma_7d": 0.0}
    assert report["problems"] == []


def test_a_missing_label_is_refused() -> None:
    segs = {k: v.drop(columns="next_day_up") for k, v in segments().items()}
    with pytest.raises(InputError, match="label column next_day_up is not in the training set"):
        check_training_set(segs, FEATURES, "next_day_up", "binary")


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (lambda s: s["next_day_up"].astype("float64"), "is float64; a binary label must be"),
        (lambda s: s["next_day_up"] * 2, "values other than 0 and 1: [2]"),
        (lambda s: s["next_day_up"].astype("object").where(s.index > 0, None), "null value"),
    ],
    ids=["float", "not 0/1", "null"],
)
def test_a_binary_label_of_the_wrong_type_or_values_is_refused(label: object, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        check_training_set(segments(next_day_up=label), FEATURES, "next_day_up", "binary")


def test_a_feature_entirely_null_is_refused_and_named() -> None:
    with pytest.raises(InputError, match=r"entirely null in the training set: \['return_1d'\]"):
        check_training_set(segments(return_1d=np.nan), FEATURES, "next_day_up", "binary")


def test_an_infinite_feature_is_refused() -> None:
    segs = segments()
    segs["train"].loc[3, "volume_ma_7d"] = np.inf
    with pytest.raises(InputError, match=r"infinite values: \['volume_ma_7d'\]"):
        check_training_set(segs, FEATURES, "next_day_up", "binary")


def test_a_single_class_in_training_is_refused() -> None:
    with pytest.raises(InputError, match="holds 1 class"):
        check_training_set(segments(next_day_up=0), FEATURES, "next_day_up", "binary")


def test_a_regression_label_must_be_numeric_and_finite() -> None:
    with pytest.raises(InputError, match="NaN or infinite"):
        check_training_set(segments(profit=np.inf), FEATURES, "profit", "regression")
    with pytest.raises(InputError, match="must be numeric"):
        check_training_set(segments(profit="x"), FEATURES, "profit", "regression")


SIGNATURE = [("return_1d", "double"), ("volume_ma_7d", "double")]
RANGES = {"return_1d": [-0.1, 0.1], "volume_ma_7d": [1e5, 2e5]}


def test_prediction_inputs_outside_the_training_range_are_flagged_not_refused() -> None:
    frame = pd.DataFrame(
        {
            "symbol": ["A", "B", "C", "D"],
            "return_1d": [0.0, 0.5, np.inf, None],
            "volume_ma_7d": [1.5e5, 1.5e5, 1.5e5, 3e5],
        }
    )
    out, scorable, flags = check_prediction_input(frame, SIGNATURE, RANGES)
    assert list(out.columns) == ["return_1d", "volume_ma_7d"]
    assert list(scorable) == [True, True, False, True]  # infinity is never scored
    assert list(flags) == [[], ["return_1d"], ["return_1d"], ["volume_ma_7d"]]


def test_online_values_in_object_columns_are_accepted_as_numbers() -> None:
    frame = pd.DataFrame({"return_1d": [0.01, None], "volume_ma_7d": [None, None]}, dtype=object)
    out, scorable, flags = check_prediction_input(frame, SIGNATURE, RANGES)
    assert out.dtypes.tolist() == ["float64", "float64"]
    assert scorable.all() and flags.map(len).sum() == 0


def test_prediction_inputs_missing_a_column_or_of_another_type_are_refused() -> None:
    frame = pd.DataFrame({"return_1d": ["0.01", "up"]})
    with pytest.raises(InputError) as err:
        check_prediction_input(frame, SIGNATURE, RANGES)
    assert "missing: ['volume_ma_7d']" in str(err.value)
    assert "column return_1d is object; the model expects double" in str(err.value)


def test_feature_ranges_are_the_fitted_min_and_max() -> None:
    frame = pd.DataFrame({"a": [3.0, -1.0, None], "b": [np.nan] * 3, "s": ["x", "y", "z"]})
    assert feature_ranges(frame, ["a", "b", "s"]) == {"a": [-1.0, 3.0], "b": [None, None]}
