"""``featurestack retrain --model M``: the one command a scheduler calls. It reads the last
monitor report (``data/reports/monitor/<M>/latest.json``) and the spec's ``retrain`` policy,
decides whether to retrain and how (full, or a warm start continuing the champion), then trains
as ``featurestack train`` does: the new version becomes champion only if it beats the current
one on the holdout (the gate of promotion), otherwise challenger; a serving server follows the
alias by hot reload.

Why full on drift or degradation and warm on age: drift means the inputs moved, degradation
that the relation moved, so the model is rebuilt (tuning included) on the recent window; a
model that is only old continues its boosting on the newer rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from featurestack.core.settings import Settings
from models_py.report_models import MonitorReport
from models_py.spec import ModelSpec, RetrainPolicy


@dataclass
class RetrainDecision:
    retrain: bool
    warm_start: bool
    reason: str


def decide(
    policy: RetrainPolicy,
    report: MonitorReport | None,
    champion_created: datetime | None,
    now: datetime,
) -> RetrainDecision:
    """Whether to retrain, how, and why (pure: the report and the champion's age decide)."""
    if champion_created is None:
        return RetrainDecision(True, False, "no champion yet: train one")
    reasons = []
    if report is not None and policy.on_drift:
        drifted = [d["feature"] for d in report.feature_drift if d["drifted"]]
        if drifted:
            reasons.append(f"{len(drifted)} feature(s) drifted ({', '.join(drifted[:5])})")
        if report.prediction_drift.get("drifted"):
            reasons.append(f"the scores drifted (PSI {report.prediction_drift['psi']})")
    if report is not None and policy.on_degradation and report.performance["degraded"]:
        perf = report.performance
        reasons.append(
            f"{perf['metric']} {perf['value']:.4f} is {perf['degradation']:.1%} below the "
            f"holdout's {perf['holdout']:.4f}"
        )
    if reasons:
        where = f" (monitor run of {report.at})" if report is not None else ""
        return RetrainDecision(True, False, "full retrain: " + "; ".join(reasons) + where)
    age = (now - champion_created).total_seconds() / 86400
    if policy.max_age_days is not None and age > policy.max_age_days:
        return RetrainDecision(
            True,
            policy.warm_start_on_age,
            f"{'warm start' if policy.warm_start_on_age else 'full retrain'}: the champion is "
            f"{age:.1f} days old, over max_age_days {policy.max_age_days:g}",
        )
    seen = "no monitor report" if report is None else f"monitor run of {report.at}: healthy"
    return RetrainDecision(False, False, f"no retrain: {seen}; the champion is {age:.1f} days old")


def last_report(settings: Settings, model: str) -> MonitorReport | None:
    path = settings.reports_dir / "monitor" / model / "latest.json"
    if not path.exists():
        return None
    return MonitorReport.model_validate(json.loads(path.read_text()))


def champion_created(settings: Settings, model: str) -> datetime | None:
    """When the serving champion version was registered (None: no champion)."""
    import mlflow

    from models_py import tracking
    from models_py.registry import champion_version

    tracking.configure(settings)
    current = champion_version(mlflow.MlflowClient(), model)
    if current is None:
        return None
    return datetime.fromtimestamp(current.creation_timestamp / 1000, UTC)


def retrain(
    settings: Settings, spec: ModelSpec, dry_run: bool = False, now: datetime | None = None
) -> tuple[RetrainDecision, Any]:
    """Decide, then train unless ``dry_run`` or nothing calls for it; returns the decision and
    the training result (None when not trained)."""
    from models_py.train import train

    verdict = decide(
        spec.retrain,
        last_report(settings, spec.name),
        champion_created(settings, spec.name),
        now or datetime.now(UTC),
    )
    if not verdict.retrain or dry_run:
        return verdict, None
    return verdict, train(settings, spec, warm_start=verdict.warm_start)
