"""Labels meet predictions by time (models_py/labels.py), against a brute-force reference, on
races: several events a day, labels stamped after the features (issue 18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurestack.core.settings import Settings
from models_py.labels import log_with_labels, match_labels
from models_py.prediction_log import PredictionLog, read_log
from models_py.spec import LabelSpec
from tests.races import race_frames

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def brute_force(
    frame: pd.DataFrame, labels: pd.DataFrame, keys: list[str], horizon: pd.Timedelta
) -> list[float]:
    """Row by row: the first label of the same keys at or after the instant, within horizon."""
    out = []
    for _, row in frame.iterrows():
        same = np.ones(len(labels), bool)
        for k in keys:
            same &= (labels[k] == row[k]).to_numpy()
        t = labels["event_timestamp"]
        inside = same & (t >= row["event_timestamp"]) & (t <= row["event_timestamp"] + horizon)
        hits = labels[inside].sort_values("event_timestamp", kind="stable")
        out.append(float(hits["label"].iloc[0]) if len(hits) else np.nan)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("hours", [0, 1, 6, 48])
def test_first_label_at_or_after_within_the_horizon(seed: int, hours: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 200, 120
    # coarse minutes so exact ties and horizon edges happen
    labels = pd.DataFrame(
        {
            "dog_id": rng.integers(0, 5, m),
            "track": rng.choice(["a", "b"], m),
            "event_timestamp": [
                T0 + timedelta(minutes=30 * int(x)) for x in rng.integers(0, 200, m)
            ],
            "label": rng.integers(0, 2, m).astype(float),
        }
    ).drop_duplicates(["dog_id", "track", "event_timestamp"])
    frame = pd.DataFrame(
        {
            "dog_id": rng.integers(0, 6, n),
            "track": rng.choice(["a", "b"], n),
            "event_timestamp": [
                T0 + timedelta(minutes=30 * int(x)) for x in rng.integers(-5, 200, n)
            ],
            "score": rng.random(n),
        },
        index=rng.permutation(n) + 1000,  # an index and an order of their own, kept
    )
    horizon = pd.Timedelta(hours=hours)
    out = match_labels(frame, labels, ["dog_id", "track"], horizon)
    assert out.index.equals(frame.index)
    assert out["score"].tolist() == frame["score"].tolist()
    expected = brute_force(frame, labels, ["dog_id", "track"], horizon)
    np.testing.assert_array_equal(out["label"].to_numpy(), np.array(expected))
    assert (
        out["label_time"].dropna() >= frame.loc[out["label_time"].notna(), "event_timestamp"]
    ).all()


def test_labels_stamped_after_the_features_match_within_the_horizon_only() -> None:
    form, runs = race_frames()
    # a prediction at each run, scored on the dog's newest form before the race
    rows = []
    for run in runs.itertuples():
        before = form[
            (form["dog_id"] == run.dog_id) & (form["event_timestamp"] <= run.event_timestamp)
        ]
        if len(before):
            rows.append({"dog_id": run.dog_id, "race_id": run.race_id,
                         "event_timestamp": before["event_timestamp"].max()})  # fmt: skip
    predictions = pd.DataFrame(rows)
    labels = runs.rename(columns={"won": "label"}).assign(event_timestamp=runs["result_at"])
    exact = match_labels(predictions, labels, ["dog_id"])
    assert exact["label"].isna().all()  # the old equality join: nothing ever matched
    wide = match_labels(predictions, labels, ["dog_id"], pd.Timedelta(days=3))
    by_race = match_labels(predictions, labels, ["dog_id"], join_on=["race_id"])
    truth = predictions.merge(labels, on=["dog_id", "race_id"])["label"]
    assert by_race["label"].tolist() == truth.tolist()
    assert wide["label"].notna().all()
    assert wide["label"].tolist() == truth.tolist()  # the next result is this race's


def test_logged_predictions_meet_labels_published_later(tmp_path: Path) -> None:
    """Through the prediction log and a published label table, as monitor and shadow read them."""
    settings = Settings(tmp_path, tmp_path / "raw", f"sqlite:///{tmp_path / 'mlflow.db'}")
    feature_time = datetime(2024, 5, 2, 14, 10, tzinfo=UTC)
    log = PredictionLog(tmp_path / "prediction_log")
    log.append(
        [
            ("r1", feature_time + timedelta(hours=1), "m", "1", "champion", {"dog_id": 3},
             {"rating": 50.0, "race_id": 7}, feature_time, 0.8, True, None, None, []),
            ("r2", feature_time + timedelta(hours=1), "m", "1", "champion", {"dog_id": 4},
             {"rating": 40.0, "race_id": 7}, feature_time, 0.3, False, None, None, []),
        ]
    )  # fmt: skip
    log.flush(final=True)
    table = settings.published_table("lbl_won")
    table.mkdir(parents=True)
    pd.DataFrame(
        {
            "dog_id": [3, 4, 3],
            "race_id": [7, 7, 9],
            "event_timestamp": [feature_time + timedelta(hours=2, minutes=m) for m in (5, 6, 50)],
            "won": [1, 0, 0],
        }
    ).to_parquet(table / "2024-05.parquet")
    read = read_log(settings.prediction_log_dir, "m")
    same_time = log_with_labels(settings, read, LabelSpec(model="lbl_won", target="won"))
    assert same_time["label"].isna().all()
    spec = LabelSpec(model="lbl_won", target="won", horizon="3h")
    assert log_with_labels(settings, read, spec)["label"].tolist() == [1.0, 0.0]
    spec = LabelSpec(model="lbl_won", target="won", join_on=["race_id"])
    assert log_with_labels(settings, read, spec)["label"].tolist() == [1.0, 0.0]


def test_a_horizon_that_is_not_a_duration_is_refused() -> None:
    with pytest.raises(ValueError, match=r"label\.horizon 'soon' is not a duration"):
        LabelSpec(model="l", target="t", horizon="soon")
