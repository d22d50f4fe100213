"""Monitoring the champion: feature and prediction drift against the version's own training
reference, performance once labels arrive, a health score with recommendations.

The reference is what the version saw: training stores a seeded sample of its fitted rows and
of its holdout, with the label and the model's score, as the run artifact
``monitoring/reference.parquet`` (:func:`reference_sample`). The recent side is either the
logged requests (``data/prediction_log``, what the server actually scored) or the service's
recent published features joined point-in-time by Feast and scored with the champion.
PSI and KS are the gate's own (featurestack/core/stats.py); a feature drifts when its PSI is over
``psi_max`` or its KS is over ``ks_max`` and over the 1 % critical value for the two sample
sizes (so a few hundred rows of noise do not page anyone). Performance is the spec's primary
metric on the recent rows whose labels are published (the dbt label model, met by the spec's
rule: models_py/labels.py), compared with the version's holdout value.

The instants: a logged request's is the event time of the features it was scored on (the log's
``feature_time``); with ``--source features``, the entity dataframe is every (keys, event time)
row of the last ``days`` of the service's first feature view's published table (before its
newest event), each looked up point-in-time as of its own event time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from featurestack.core.errors import NotFound
from featurestack.core.reports import stamp, write_atomic
from featurestack.core.reports import write_report as write_json
from featurestack.core.settings import Settings
from featurestack.core.stats import finite, ks, ks_critical, psi
from models_py.contract import MONITORING_REFERENCE, SPEC, spec_from_run, tag
from models_py.labels import join_labels
from models_py.registry import load_model_version
from models_py.report_models import MonitorReport
from models_py.scoring import LoadedVersion, score
from models_py.spec import ModelSpec, spec_of_model

__all__ = ["MonitorConfig", "compare", "feature_drift", "ks_critical", "monitor"]


class MonitorConfig(BaseModel):
    """Thresholds of ``featurestack monitor`` (command-line options set them)."""

    model_config = ConfigDict(extra="forbid")

    days: float = Field(7, gt=0)
    source: Literal["auto", "requests", "features"] = "auto"
    psi_max: float = Field(0.25, gt=0)
    ks_max: float = Field(0.2, gt=0, le=1)
    prediction_psi_max: float = Field(0.25, gt=0)
    #: relative degradation of the primary metric against the holdout that raises an alert
    degradation_max: float = Field(0.05, gt=0)
    bins: int = Field(10, ge=2)
    #: fewer recent values than this: a feature is not compared
    min_rows: int = Field(100, ge=2)
    #: fewer labelled recent rows than this: performance is not judged
    min_labels: int = Field(50, ge=2)
    exclude: list[str] = []


# -- pure measures ---------------------------------------------------------------------------


def compare(recent: Any, reference: Any, config: MonitorConfig) -> dict[str, Any]:
    """PSI, KS and the verdict for one column."""
    new, ref = finite(recent), finite(reference)
    row: dict[str, Any] = {"recent_rows": len(new), "reference_rows": len(ref)}
    if len(new) < config.min_rows or len(ref) < config.min_rows:
        return {**row, "psi": None, "ks": None, "drifted": False, "note": "too few rows"}
    p, k = psi(new, ref, config.bins), ks(new, ref)
    ks_limit = max(config.ks_max, ks_critical(len(new), len(ref)))
    return {
        **row,
        "psi": round(p, 6),
        "ks": round(k, 6),
        "ks_limit": round(ks_limit, 6),
        "drifted": bool(p > config.psi_max or k > ks_limit),
    }


def feature_drift(
    reference: pd.DataFrame, recent: pd.DataFrame, features: list[str], config: MonitorConfig
) -> list[dict[str, Any]]:
    """One row per numeric feature (text features are named, not compared)."""
    out = []
    for name in features:
        if name in config.exclude:
            continue
        if name not in recent or not pd.api.types.is_numeric_dtype(reference[name]):
            out.append(
                {
                    "feature": name,
                    "psi": None,
                    "ks": None,
                    "drifted": False,
                    "note": "not numeric" if name in recent else "not in the recent rows",
                }
            )
            continue
        out.append({"feature": name, **compare(recent[name], reference[name], config)})
    return out


def performance(
    scored: pd.DataFrame,
    task: str,
    metric: str,
    holdout_value: float | None,
    maximize: bool,
    threshold: float,
    config: MonitorConfig,
) -> dict[str, Any]:
    """The primary metric on labelled recent rows (``score``, ``label``, ``event_timestamp``),
    overall and per day, against the holdout; degradation relative to the holdout value."""
    from models_py.metrics import binary_metrics, regression_metrics

    rows = scored.dropna(subset=["label", "score"])
    out: dict[str, Any] = {"metric": metric, "holdout": holdout_value, "labelled_rows": len(rows)}
    if len(rows) < config.min_labels:
        out.update(value=None, degradation=None, degraded=False, by_day=[])
        return out

    def measure(frame: pd.DataFrame) -> float:
        if task in ("binary", "multiclass"):
            values = binary_metrics(frame["label"], frame["score"], threshold)
        else:
            values = regression_metrics(frame["label"], frame["score"])
        return float(values.get(metric, float("nan")))

    value = measure(rows)
    by_day = []
    for day, frame in rows.groupby(rows["event_timestamp"].dt.date):
        if len(frame) >= 5:
            v = measure(frame)
            if v == v:
                by_day.append({"day": day.isoformat(), "value": v, "rows": len(frame)})
    degradation = None
    if holdout_value is not None and value == value and holdout_value != 0:
        gap = holdout_value - value if maximize else value - holdout_value
        degradation = gap / abs(holdout_value)
    out.update(
        value=value,
        degradation=degradation,
        degraded=bool(degradation is not None and degradation > config.degradation_max),
        by_day=by_day,
    )
    if task == "binary":
        out["calibration_error"] = calibration_error(rows["label"], rows["score"], config.bins)
    return out


def calibration_error(labels: Any, scores: Any, bins: int = 10) -> float:
    """Expected calibration error: the row-weighted mean gap between the mean score and the
    share of positives in equal-count score bins (0 = perfectly calibrated). A calibrated
    model drifting away from its probabilities is caught here before its ranking metric moves."""
    y = np.asarray(labels, dtype="float64")
    p = np.asarray(scores, dtype="float64")
    order = np.argsort(p, kind="stable")
    total = 0.0
    for part in np.array_split(order, min(bins, len(order))):
        if len(part):
            total += len(part) * abs(float(p[part].mean()) - float(y[part].mean()))
    return round(total / max(len(order), 1), 6)


def member_disagreement(loaded: LoadedVersion, frame: pd.DataFrame) -> float | None:
    """For an ensemble (stacking, blending): the mean over rows of the standard deviation of
    its members' outputs. Members that start to disagree on recent rows are a sign that the
    inputs left the region they were trained on; None for other models or no rows."""
    from models_py.scoring import anatomy

    parts = anatomy(loaded.model)
    ensemble = getattr(parts.plugin, "estimator_", None)
    if ensemble is None or not hasattr(ensemble, "members") or not hasattr(ensemble, "outputs"):
        return None
    rows = frame.dropna(subset=[f for f in loaded.features if f in frame], how="all")
    if rows.empty or not set(loaded.features) <= set(rows.columns):
        return None
    X = parts.encode(rows[loaded.features])
    X = parts.plugin._check_X(X, reset=False)
    out = np.asarray(ensemble.outputs(ensemble.members, X), dtype="float64")
    return round(float(np.nanmean(out.std(axis=1))), 6)


def health(
    drift: list[dict[str, Any]],
    prediction: dict[str, Any] | None,
    perf: dict[str, Any],
    config: MonitorConfig,
    spec_name: str,
    label_model: str,
) -> dict[str, Any]:
    """A 0–100 score (40 for features, 20 for predictions, 40 for performance) and what to do."""
    compared = [d for d in drift if d.get("psi") is not None]
    drifted = [d for d in compared if d["drifted"]]
    share = len(drifted) / len(compared) if compared else 0.0
    penalty = 40 * share
    if prediction and prediction.get("drifted"):
        penalty += 20
    if perf.get("degradation") is not None and perf["degradation"] > 0:
        penalty += 40 * min(1.0, perf["degradation"] / (2 * config.degradation_max))
    score = round(100 - penalty, 1)
    advice = []
    if perf.get("degraded"):
        advice.append(
            f"retrain: {perf['metric']} is {perf['value']:.4f} on recent labelled rows against "
            f"{perf['holdout']:.4f} on the holdout ({perf['degradation']:.1%} worse); run "
            f"`featurestack train --spec {spec_of_model(spec_name)}` and compare it in shadow "
            "(`featurestack serve --challenger shadow`)"
        )
    if drifted:
        names = ", ".join(d["feature"] for d in sorted(drifted, key=lambda d: -(d["psi"] or 0))[:5])
        advice.append(
            f"{len(drifted)} of {len(compared)} features drifted ({names}): check their upstream "
            "data (`featurestack validate` drift report); "
            + (
                "retrain on recent data if the shift is real"
                if share > 0.3
                else "if the shift is expected, exclude them (--exclude) or retrain"
            )
        )
    if prediction and prediction.get("drifted"):
        advice.append(
            f"the score distribution moved (PSI {prediction['psi']:.3f}): decisions at the fixed "
            "threshold will change in frequency; watch performance as labels arrive"
        )
    if perf.get("value") is None:
        advice.append(
            f"performance not judged: {perf['labelled_rows']} recent rows have published labels "
            f"({label_model}), fewer than {config.min_labels}; re-run when labels arrive"
        )
    if not advice or (len(advice) == 1 and perf.get("value") is None and score >= 80):
        advice.append("no action needed")
    status = "healthy" if score >= 80 else "degraded" if score >= 50 else "critical"
    return {"score": score, "status": status, "recommendations": advice}


# -- I/O edges ------------------------------------------------------------------------------


@dataclass
class Baseline:
    """A served version and its stored reference."""

    name: str
    version: str
    run_id: str
    features: list[str]
    keys: list[str]
    reference: pd.DataFrame
    metrics: dict[str, float]
    spec: ModelSpec
    champion: LoadedVersion = field(repr=False)


def load_baseline(settings: Settings, model: str) -> Baseline:
    """The champion, its reference sample and holdout metrics, and its spec (from the run)."""
    import mlflow

    champion = load_model_version(settings, model)
    run = mlflow.get_run(champion.run_id)
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=champion.run_id, artifact_path=MONITORING_REFERENCE
        )
    except Exception as exc:
        raise NotFound(
            f"{model} v{champion.version} has no {MONITORING_REFERENCE} (it was trained before "
            f"monitoring references were stored); retrain it: featurestack train --spec "
            f"{run.data.tags.get(tag(SPEC), model)}"
        ) from exc
    reference = pd.read_parquet(path)
    spec = spec_from_run(run)
    features = champion.features
    keys = [c for c in reference.columns if c not in {*features, "label", "score", "segment"}]
    keys = [k for k in keys if k != "event_timestamp"]
    return Baseline(
        model,
        champion.version,
        champion.run_id,
        features,
        keys,
        reference,
        dict(run.data.metrics),
        spec,
        champion,
    )


def recent_requests(settings: Settings, base: Baseline, days: float) -> pd.DataFrame:
    """The champion's logged predictions of the last ``days``: keys, ``event_timestamp``
    (the features' event time), features and ``score``."""
    from models_py.prediction_log import expand, read_log

    since = datetime.now(UTC) - timedelta(days=days)
    log = read_log(settings.prediction_log_dir, base.name, since=since)
    log = log[(log["role"] == "champion") & (log["version"] == base.version)]
    if log.empty:
        return pd.DataFrame(columns=[*base.keys, "event_timestamp", *base.features, "score"])
    frame = pd.concat([expand(log, "entity"), expand(log, "features")], axis=1)
    frame["event_timestamp"] = log["feature_time"]
    frame["score"] = log["score"].to_numpy()
    return frame.reset_index(drop=True)


def recent_features(settings: Settings, base: Baseline, days: float) -> pd.DataFrame:
    """The service's features for every entity and event time of the last ``days`` of
    published data (Feast's point-in-time join), scored with the champion."""
    from featurestack.infra import feast_ops
    from models_py.dataset import service_info

    store = feast_ops.load_store(settings)
    info = service_info(store, base.champion.feature_service)
    if info.request_fields:
        raise NotFound(
            f"{base.name}: its features need request values {info.request_fields}, which "
            "published features alone do not have; monitor the logged requests "
            "(--source requests) once the server has answered some"
        )
    # a view carrying every join key (with a composite key, a view keyed by part of it is not)
    import pyarrow.dataset as ds

    source = next(
        (
            p
            for p in info.source_paths
            if set(info.join_keys) <= set(ds.dataset(p, format="parquet").schema.names)
        ),
        info.source_paths[0],
    )
    first = pd.read_parquet(source, columns=[*info.join_keys, "event_timestamp"])
    newest = first["event_timestamp"].max()
    entity_df = first[first["event_timestamp"] > newest - pd.Timedelta(days=days)]
    entity_df = entity_df.drop_duplicates().reset_index(drop=True)
    frame = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(info.name)
    ).to_df()
    has = frame[base.features].notna().any(axis=1)
    frame["score"] = score(base.champion, frame[base.features], has)["score"].to_numpy()
    return frame


def monitor(settings: Settings, model: str, config: MonitorConfig) -> MonitorReport:
    """Measure everything and return the report; :func:`write_report` saves it."""
    from models_py.tuning import direction

    base = load_baseline(settings, model)
    source = config.source
    recent = pd.DataFrame()
    if source in ("auto", "requests"):
        recent = recent_requests(settings, base, config.days)
        too_few = source == "auto" and len(recent) < config.min_rows
        source = "features" if too_few else "requests"
    if source == "features":
        recent = recent_features(settings, base, config.days)
    fit = base.reference[base.reference["segment"] == "fit"]
    holdout = base.reference[base.reference["segment"] == "holdout"]
    drift = feature_drift(fit, recent, base.features, config)
    pred = compare(recent.get("score", pd.Series(dtype=float)), holdout["score"], config)
    pred["drifted"] = bool(pred.get("psi") is not None and pred["psi"] > config.prediction_psi_max)
    metric = base.spec.primary_metric
    labelled = join_labels(settings, recent, base.keys, base.spec.label)
    perf = performance(
        labelled,
        base.spec.task,
        metric,
        base.metrics.get(f"holdout_{metric}"),
        direction(metric) == "maximize",
        base.champion.threshold,
        config,
    )
    verdict = health(drift, pred, perf, config, base.spec.name, base.spec.label.model)
    alerts = [
        {"kind": "feature_drift", "subject": d["feature"], "psi": d["psi"], "ks": d["ks"]}
        for d in drift
        if d["drifted"]
    ]
    if pred["drifted"]:
        alerts.append({"kind": "prediction_drift", "subject": "score", "psi": pred["psi"]})
    if perf["degraded"]:
        alerts.append(
            {"kind": "performance", "subject": metric, "degradation": perf["degradation"]}
        )
    times = pd.to_datetime(recent["event_timestamp"], utc=True) if len(recent) else None
    report = MonitorReport(
        model=model,
        version=base.version,
        run_id=base.run_id,
        at=datetime.now(UTC).isoformat(),
        source=source,
        window_days=config.days,
        recent_rows=len(recent),
        recent_event_times=None
        if times is None
        else [times.min().isoformat(), times.max().isoformat()],
        reference_rows={"fit": len(fit), "holdout": len(holdout)},
        thresholds=config.model_dump(),
        feature_drift=drift,
        prediction_drift=pred,
        performance=perf,
        health=verdict,
        alerts=alerts,
    )
    if len(recent):
        try:
            disagreement = member_disagreement(base.champion, recent)
        except (ValueError, TypeError, KeyError):  # rows the members cannot take: not measured
            disagreement = None
        if disagreement is not None:  # written only for ensembles
            report.member_disagreement = disagreement
    report._frames = (fit, holdout, recent)
    return report


def write_report(settings: Settings, report: MonitorReport) -> tuple[Path, Path]:
    """JSON and a self-contained HTML page with plots under data/reports/monitor/<model>/;
    ``latest.json`` (replaced whole) is what the server's /metrics exposes."""
    import matplotlib.pyplot as plt

    from models_py.report import html_report

    if report._frames is None:
        raise ValueError("a monitor report read back from JSON has no frames to draw")
    fit, holdout, recent = report._frames
    folder = settings.reports_dir / "monitor" / report.model
    name = stamp()
    json_path = write_json(folder, report, name)
    figures = _figures(report, fit, holdout, recent)
    perf, verdict = report.performance, report.health
    sections: dict[str, dict[str, Any]] = {
        "Health": {
            "score": verdict["score"],
            "status": verdict["status"],
            **{f"recommendation {i + 1}": r for i, r in enumerate(verdict["recommendations"])},
        },
        "What was compared": {
            "model": f"{report.model} v{report.version} (run {report.run_id})",
            "recent": f"{report.recent_rows} rows from {report.source}, last "
            f"{report.window_days} days",
            "reference": f"{report.reference_rows['fit']} fitted rows, "
            f"{report.reference_rows['holdout']} holdout rows (scores)",
        },
        "Alerts": {f"{a['kind']} {a['subject']}": json.dumps(a) for a in report.alerts}
        or {"none": ""},
        "Performance": {k: v for k, v in perf.items() if k != "by_day"},
        "Prediction drift": dict(report.prediction_drift),
        "Feature drift": {
            d["feature"]: f"PSI {d['psi']}, KS {d['ks']}" + (" DRIFTED" if d["drifted"] else "")
            for d in report.feature_drift
        },
    }
    html_path = write_atomic(
        folder / f"{name}.html", html_report(f"{report.model}: monitoring", sections, figures)
    )
    for figure in figures.values():
        plt.close(figure)
    return json_path, html_path


def _figures(
    report: MonitorReport, fit: pd.DataFrame, holdout: pd.DataFrame, recent: pd.DataFrame
) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    compared = [d for d in report.feature_drift if d.get("psi") is not None]
    psi_max = report.thresholds["psi_max"]
    if compared:
        compared = sorted(compared, key=lambda d: d["psi"] or 0.0)
        fig, ax = plt.subplots(figsize=(6, 0.28 * len(compared) + 1.2))
        colors = ["C3" if d["drifted"] else "C0" for d in compared]
        values = [d["psi"] or 0.0 for d in compared]
        ax.barh([d["feature"] for d in compared], values, color=colors)
        ax.axvline(psi_max, color="grey", ls="--", lw=1, label=f"PSI limit {psi_max}")
        ax.set(xlabel="PSI (recent vs training reference)", title="Feature drift")
        ax.legend(loc="lower right")
        fig.tight_layout()
        figures["drift_scores"] = fig
        for d in sorted(compared, key=lambda d: -(d["psi"] or 0.0))[:4]:
            fig, ax = plt.subplots(figsize=(5, 3.4))
            ref, new = finite(fit[d["feature"]]), finite(recent[d["feature"]])
            bins = list(np.histogram_bin_edges(np.concatenate([ref, new]), bins=30))
            ax.hist(ref, bins=bins, density=True, alpha=0.5, label="training reference")
            ax.hist(new, bins=bins, density=True, alpha=0.5, label="recent")
            ax.set(title=f"{d['feature']} (PSI {d['psi']:.3f}, KS {d['ks']:.3f})")
            ax.legend()
            fig.tight_layout()
            figures[f"distribution_{d['feature']}"] = fig
    if len(recent) and "score" in recent:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        ref, new = finite(holdout["score"]), finite(recent["score"])
        if len(new):
            bins = list(np.histogram_bin_edges(np.concatenate([ref, new]), bins=30))
            ax.hist(ref, bins=bins, density=True, alpha=0.5, label="holdout scores")
            ax.hist(new, bins=bins, density=True, alpha=0.5, label="recent scores")
            ax.legend()
        ax.set(title="Prediction distribution", xlabel="score")
        fig.tight_layout()
        figures["prediction_distribution"] = fig
    perf = report.performance
    if perf.get("by_day"):
        fig, ax = plt.subplots(figsize=(6, 3.4))
        days = [pd.Timestamp(d["day"]) for d in perf["by_day"]]
        ax.plot(days, [d["value"] for d in perf["by_day"]], marker="o", label="recent, per day")
        holdout_value = perf.get("holdout")
        if holdout_value is not None:
            ax.axhline(holdout_value, color="grey", ls="--", label="holdout")
        ax.set(title=f"{perf['metric']} over time", ylabel=perf["metric"])
        ax.legend()
        fig.autofmt_xdate()
        fig.tight_layout()
        figures["metric_over_time"] = fig
    return figures
