"""`featurestack shadow-report`: champion against challenger on the logged traffic.

Shadow rows (the challenger scored on the same request, never returned) pair one to one with
the champion's rows by request id and entity, so agreement is measured on identical inputs.
Split traffic (``challenger`` rows) has no pairs: the two arms are compared by their score
distributions and, once the label model has rows for them, by the spec's metrics on each arm.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurestack.core.errors import NotFound
from featurestack.core.reports import stamp
from featurestack.core.reports import write_report as write_json
from featurestack.core.settings import Settings
from featurestack.core.stats import ks, psi
from models_py.contract import THRESHOLD, spec_from_run, tag
from models_py.labels import log_with_labels
from models_py.report_models import ShadowReport
from models_py.spec import ModelSpec


def _scores(frame: pd.DataFrame) -> np.ndarray:
    values = frame["score"].to_numpy(dtype="float64")
    return values[np.isfinite(values)]


def _summary(values: np.ndarray) -> dict[str, Any]:
    if not len(values):
        return {"rows": 0}
    q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "rows": len(values),
        "mean": float(values.mean()),
        "std": float(values.std()),
        **{f"p{p}": float(v) for p, v in zip((5, 25, 50, 75, 95), q, strict=True)},
    }


def compare_arms(log: pd.DataFrame) -> dict[str, Any]:
    """Agreement of paired shadow predictions and the score distributions of each arm."""
    champion = log[log["role"] == "champion"]
    other = log[log["role"].isin(["shadow", "challenger"])]
    out: dict[str, Any] = {
        "rows": {role: int(n) for role, n in log["role"].value_counts().items()},
        "versions": {
            role: sorted(log.loc[log["role"] == role, "version"].unique().tolist())
            for role in log["role"].unique()
        },
        "champion_scores": _summary(_scores(champion)),
        "challenger_scores": _summary(_scores(other)),
    }
    a, b = _scores(champion), _scores(other)
    if len(a) >= 2 and len(b) >= 2:
        out["score_psi"] = psi(b, a, 10)
        out["score_ks"] = ks(b, a)
    shadow = log[log["role"] == "shadow"]
    if len(shadow):
        pairs = champion.merge(
            shadow, on=["request_id", "entity"], suffixes=("_champion", "_challenger")
        ).dropna(subset=["score_champion", "score_challenger"])
        agreement: dict[str, Any] = {"pairs": len(pairs)}
        if len(pairs):
            diff = pairs["score_challenger"] - pairs["score_champion"]
            agreement["mean_abs_score_difference"] = float(diff.abs().mean())
            agreement["max_abs_score_difference"] = float(diff.abs().max())
            if len(pairs) > 1 and pairs["score_champion"].std() > 0:
                agreement["score_correlation"] = float(
                    np.corrcoef(pairs["score_champion"], pairs["score_challenger"])[0, 1]
                )
            decided = pairs.dropna(subset=["decision_champion", "decision_challenger"])
            if len(decided):
                agreement["decision_agreement"] = float(
                    (
                        decided["decision_champion"].astype(bool)
                        == decided["decision_challenger"].astype(bool)
                    ).mean()
                )
        out["agreement"] = agreement
    return out


def arm_metrics(labelled: pd.DataFrame, task: str, threshold: dict[str, float]) -> dict[str, Any]:
    """Per role, the task's metrics on the rows that have a label."""
    from models_py.metrics import binary_metrics, regression_metrics

    out = {}
    for role, frame in labelled.dropna(subset=["label", "score"]).groupby("role"):
        if task in ("binary", "multiclass"):
            out[str(role)] = binary_metrics(
                frame["label"], frame["score"], threshold.get(str(role), 0.5)
            )
        else:
            out[str(role)] = regression_metrics(frame["label"], frame["score"])
    return out


def shadow_report(settings: Settings, model: str, days: float) -> ShadowReport:
    """Compare champion and challenger on the last ``days`` of logged traffic."""
    import mlflow

    from models_py import tracking
    from models_py.prediction_log import read_log

    since = datetime.now(UTC) - timedelta(days=days)
    log = read_log(settings.prediction_log_dir, model, since=since)
    if log.empty:
        raise NotFound(
            f"no logged predictions of {model} in the last {days:g} days under "
            f"{settings.prediction_log_dir}; serve it first: featurestack serve"
        )
    report = ShadowReport(
        model=model, at=datetime.now(UTC).isoformat(), window_days=days, **compare_arms(log)
    )
    if not log["role"].isin(["shadow", "challenger"]).any():
        report.note = (
            "no challenger predictions in the log: serve with a challenger "
            "(featurestack serve --challenger shadow, or --challenger split --share 0.1)"
        )
    tracking.configure(settings)
    client = mlflow.MlflowClient()
    thresholds: dict[str, float] = {}
    spec: ModelSpec | None = None
    for role, versions in report.versions.items():
        mv = client.get_model_version(model, versions[-1])
        thresholds[role] = float(mv.tags.get(tag(THRESHOLD), 0.5))
        if spec is None:
            spec = spec_from_run(client.get_run(str(mv.run_id)), default_name=model)
    assert spec is not None
    labelled = log_with_labels(settings, log, spec.label)
    report.labelled_rows = int(labelled["label"].notna().sum())
    report.metrics = arm_metrics(labelled, spec.task, thresholds)
    if not report.metrics:
        report.metrics_note = (
            f"no logged prediction has a published label in {spec.label.model} yet (a label "
            f"is the first one at or after the features' event time within label.horizon "
            f"{spec.label.horizon}"
            + (f", or the one with the same {spec.label.join_on}" if spec.label.join_on else "")
            + "); re-run when they are published, or widen label.horizon if labels are stamped "
            'later than that (docs/features.md "The time model")'
        )
    return report


def write_report(settings: Settings, report: ShadowReport) -> Path:
    """``data/reports/shadow/<model>/<stamp>.json``."""
    folder = settings.reports_dir / "shadow" / report.model
    return write_json(folder, report, stamp(), latest=False)


def summary(report: ShadowReport) -> str:
    """A few lines for the terminal."""
    lines = [f"{report.model}: {report.rows} logged rows, versions {report.versions}"]
    for arm in ("champion_scores", "challenger_scores"):
        s = getattr(report, arm)
        if s.get("rows"):
            lines.append(
                f"  {arm.split('_')[0]:<10} scores: mean {s['mean']:.4f}, median {s['p50']:.4f}, "
                f"p5–p95 {s['p5']:.4f}–{s['p95']:.4f} ({s['rows']} rows)"
            )
    if report.score_psi is not None and report.score_ks is not None:
        lines.append(f"  score distributions: PSI {report.score_psi:.4f}, KS {report.score_ks:.4f}")
    agreement = report.agreement
    if agreement:
        lines.append(
            f"  shadow pairs {agreement['pairs']}: decision agreement "
            f"{agreement.get('decision_agreement', float('nan')):.1%}, mean |Δscore| "
            f"{agreement.get('mean_abs_score_difference', float('nan')):.4f}"
        )
    for role, metrics in report.metrics.items():
        shown = ", ".join(
            f"{k} {metrics[k]:.4f}"
            for k in ("roc_auc", "log_loss", "f1", "rmse", "mae")
            if k in metrics
        )
        lines.append(f"  {role:<10} on {int(metrics['rows'])} labelled rows: {shown}")
    for note in (report.note, report.metrics_note):
        if note:
            lines.append(f"  {note}")
    return "\n".join(lines)
