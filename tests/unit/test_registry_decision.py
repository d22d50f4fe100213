"""Promotion decisions: champion only when the new score beats the champion's by the margin."""

from __future__ import annotations

import pytest

from models_py.registry import decide


def test_first_version_is_champion() -> None:
    d = decide("roc_auc", 0.6, None, None, 0.0, maximize=True)
    assert d.promoted and d.reason == "no champion yet"


@pytest.mark.parametrize(
    ("new", "champion", "margin", "maximize", "promoted"),
    [
        (0.62, 0.60, 0.0, True, True),
        (0.60, 0.60, 0.0, True, False),  # a tie keeps the champion
        (0.62, 0.60, 0.05, True, False),  # better, but not by the margin
        (0.40, 0.45, 0.0, False, True),  # log-loss: lower wins
        (0.46, 0.45, 0.0, False, False),
    ],
)
def test_a_new_version_must_beat_the_champion_by_the_margin(
    new: float, champion: float, margin: float, maximize: bool, promoted: bool
) -> None:
    d = decide("m", new, "3", champion, margin, maximize)
    assert d.promoted is promoted
    assert d.tags()["featurestack.decision"] == ("champion" if promoted else "challenger")
    assert d.tags()["featurestack.decision_champion_version"] == "3"
    assert float(d.tags()["featurestack.decision_champion_score"]) == champion


def test_a_champion_that_cannot_be_scored_is_not_replaced_silently() -> None:
    d = decide("roc_auc", 0.9, "2", None, 0.0, maximize=True)
    assert not d.promoted and "could not be scored" in d.reason
