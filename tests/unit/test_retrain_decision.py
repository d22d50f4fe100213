"""`featurestack retrain`'s decision: drift and degradation retrain in full, age alone warm
starts, a healthy young champion is left alone (models_py/retrain.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models_py.report_models import MonitorReport
from models_py.retrain import decide
from models_py.spec import RetrainPolicy

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def _report(drifted: bool = False, degraded: bool = False) -> MonitorReport:
    return MonitorReport(
        model="m",
        version="2",
        run_id="r",
        at="2026-12-06T06:30:00+00:00",
        source="requests",
        window_days=7,
        recent_rows=500,
        recent_event_times=None,
        reference_rows={"fit": 500, "holdout": 200},
        thresholds={},
        feature_drift=[{"feature": "ret_1d", "psi": 0.4, "ks": 0.3, "drifted": drifted}],
        prediction_drift={"psi": 0.01, "ks": 0.01, "drifted": False},
        performance={
            "metric": "roc_auc",
            "holdout": 0.6,
            "labelled_rows": 300,
            "value": 0.5 if degraded else 0.6,
            "degradation": 0.17 if degraded else 0.0,
            "degraded": degraded,
            "by_day": [],
        },
        health={"score": 90.0, "status": "healthy", "recommendations": []},
        alerts=[],
    )


def test_drift_or_degradation_retrains_in_full_and_says_why() -> None:
    young = NOW - timedelta(days=1)
    drift = decide(RetrainPolicy(), _report(drifted=True), young, NOW)
    assert drift.retrain and not drift.warm_start and "ret_1d" in drift.reason
    worse = decide(RetrainPolicy(), _report(degraded=True), young, NOW)
    assert worse.retrain and not worse.warm_start and "roc_auc" in worse.reason
    ignored = decide(RetrainPolicy(on_drift=False), _report(drifted=True), young, NOW)
    assert not ignored.retrain and "healthy" in ignored.reason


def test_age_alone_warm_starts_and_a_young_healthy_champion_stays() -> None:
    old = decide(RetrainPolicy(max_age_days=7), _report(), NOW - timedelta(days=9), NOW)
    assert old.retrain and old.warm_start and "9.0 days old" in old.reason
    full = RetrainPolicy(max_age_days=7, warm_start_on_age=False)
    assert not decide(full, None, NOW - timedelta(days=9), NOW).warm_start
    stay = decide(RetrainPolicy(), None, NOW - timedelta(days=2), NOW)
    assert not stay.retrain and "no monitor report" in stay.reason
    assert decide(RetrainPolicy(), None, None, NOW).retrain  # no champion yet
