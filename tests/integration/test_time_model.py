"""The time model on a project whose events are not daily (issue 18): request-time features in
training sets, labels met by time, entity lists, leakage checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurestack.core.errors import UsageError
from models_py.dataset import service_info, training_frame
from tests.races import races_store


def _last_rating(form: pd.DataFrame, dog: int, at: pd.Timestamp) -> float:
    """Brute force: the dog's newest rating at or before ``at`` within the 3-day TTL."""
    rows = form[(form["dog_id"] == dog) & (form["event_timestamp"] <= at)]
    rows = rows[rows["event_timestamp"] >= at - pd.Timedelta(days=3)]
    return float(rows.sort_values("event_timestamp")["rating"].iloc[-1]) if len(rows) else np.nan


def test_on_demand_view_is_computed_in_training_sets_as_online(tmp_path: Path) -> None:
    races = races_store(tmp_path)
    info = service_info(races.store, "race_v1")
    assert info.join_keys == ["dog_id"]
    assert info.request_fields == ["odds"]
    assert info.feature_columns == ["rating", "odds_x_rating"]

    frame = training_frame(races.store, info, races.runs, "won", {"odds": "odds_at_start"})
    assert len(frame) == len(races.runs)
    runs = races.runs.sort_values(["event_timestamp", "dog_id"], kind="stable")
    expected = [
        _last_rating(races.form, d, t)
        for d, t in zip(runs["dog_id"], runs["event_timestamp"], strict=True)
    ]
    np.testing.assert_array_equal(frame["rating"].to_numpy(), np.array(expected))
    np.testing.assert_array_equal(
        frame["odds_x_rating"].to_numpy(), runs["odds_at_start"].to_numpy() * np.array(expected)
    )

    # Online, the same function on the same inputs gives the same value.
    races.store.materialize(
        races.form["event_timestamp"].min().to_pydatetime(),
        races.form["event_timestamp"].max().to_pydatetime(),
    )
    online = races.store.get_online_features(
        features=races.store.get_feature_service("race_v1"),
        entity_rows=[{"dog_id": 1, "odds": 4.0}],
    ).to_dict()
    newest = races.form[races.form["dog_id"] == 1].sort_values("event_timestamp").iloc[-1]
    assert online["odds_x_rating"][0] == 4.0 * newest["rating"]


def test_an_unmapped_request_field_names_the_spec_field(tmp_path: Path) -> None:
    races = races_store(tmp_path)
    info = service_info(races.store, "race_v1")
    with pytest.raises(UsageError, match=r"request_columns.*odds: <column>"):
        training_frame(races.store, info, races.runs, "won")
    with pytest.raises(UsageError, match="odds_now"):
        training_frame(races.store, info, races.runs, "won", {"odds": "odds_now"})
