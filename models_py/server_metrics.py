"""The model server's Prometheus metrics, in a module of their own: the server (its routes and
middleware) and the shadow process's reports (models_py/shadow_process.py) both update them,
and neither has to import the other to do so.

Scrape-time gauges (feature age, the last monitor run's drift and health) are computed when
Prometheus scrapes, from what the server saw and from ``data/reports/monitor/<model>/latest.json``
(written whole by rename, so a scrape never reads half a report).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from featurestack.core.settings import Settings
from models_py.report_models import MonitorReport

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


_VALUES_LOCK = threading.Lock()


@contextlib.contextmanager
def _values_in_this_app() -> Iterator[None]:
    """Create metric children whose values live in this process's memory.

    Importing Feast's metrics module sets ``PROMETHEUS_MULTIPROCESS_DIR``, which switches
    prometheus_client to values in files shared by every metric of the same name and labels in
    the process: two apps (tests, a reload) would add up each other's counts. Our metrics are
    the app's own, so their children are created with in-memory values whatever Feast set.
    """
    from prometheus_client import values

    with _VALUES_LOCK:
        saved = values.ValueClass
        values.ValueClass = values.MutexValue
        try:
            yield
        finally:
            values.ValueClass = saved


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one app, one registry)."""

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "version", "role"]
        self.requests = Counter(
            "featurestack_requests",
            "Prediction requests, by model, version and role.",
            labels,
            registry=self.registry,
        )
        self.entities = Counter(
            "featurestack_predictions",
            "Entities scored, by model, version and role.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "featurestack_request_seconds",
            "Time to answer a prediction request (shadow: to score a batch), seconds.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "featurestack_errors",
            "Failed requests, by model and kind.",
            ["model", "kind"],
            registry=self.registry,
        )
        self.dropped = Counter(
            "featurestack_shadow_dropped",
            "Requests the challenger in shadow did not score (its process lagged, failed or "
            "stopped), by model.",
            ["model"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "featurestack_reloads",
            "Versions swapped in by the registry watcher (hot reload), by model and role.",
            ["model", "role"],
            registry=self.registry,
        )
        self.reload_errors = Counter(
            "featurestack_reload_errors",
            "Versions the registry watcher failed to load (the previous one kept serving), by "
            "model and role.",
            ["model", "role"],
            registry=self.registry,
        )
        #: (model, role) → version served now (``featurestack_served_version`` info gauge)
        self.served_versions: dict[tuple[str, str], str] = {}
        #: model → (part → weight) of an online blend (``featurestack_blend_weight``)
        self.blend_weights: dict[str, dict[str, float]] = {}
        #: (model, view) → newest event time served (feature freshness at scrape time)
        self.served_event_time: dict[tuple[str, str], datetime] = {}
        self.registry.register(_ScrapeTimeCollector(self, settings.reports_dir / "monitor"))
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    def error(self, model: str, kind: str, n: int = 1) -> None:
        with _values_in_this_app():
            child = self.errors.labels(model, kind)
        child.inc(n)

    def reloaded(self, model: str, role: str, ok: bool) -> None:
        """One hot-reload attempt: a swap, or a version that failed to load (counted)."""
        with _values_in_this_app():
            child = (self.reloads if ok else self.reload_errors).labels(model, role)
        child.inc()

    def shadow_dropped(self, model: str, n: int) -> None:
        with _values_in_this_app():
            child = self.dropped.labels(model)
        child.inc(n)

    def observe(
        self,
        model: str,
        version: str,
        role: str,
        entities: int,
        seconds: float,
        requests: int = 1,
    ) -> None:
        """One answered request (shadow: one scored batch of ``requests``)."""
        key = (model, version, role)
        children = self._children.get(key)
        if children is None:
            with _values_in_this_app():
                children = (
                    self.requests.labels(*key),
                    self.entities.labels(*key),
                    self.latency.labels(*key),
                )
            self._children[key] = children
        children[0].inc(requests)
        children[1].inc(entities)
        children[2].observe(seconds)


class _ScrapeTimeCollector:
    """Gauges computed when Prometheus scrapes: feature age, and the last monitor run's drift
    scores and health (read from data/reports/monitor/<model>/latest.json)."""

    def __init__(self, metrics: Metrics, monitor_dir: Path) -> None:
        self.metrics, self.monitor_dir = metrics, monitor_dir

    def collect(self) -> Any:
        now = datetime.now(UTC)
        age = GaugeMetricFamily(
            "featurestack_feature_age_seconds",
            "Age of the newest feature row served, per model and feature view.",
            labels=["model", "view"],
        )
        for (model, view), ts in list(self.metrics.served_event_time.items()):
            age.add_metric([model, view], (now - ts).total_seconds())
        yield age
        psi = GaugeMetricFamily(
            "featurestack_drift_psi",
            "PSI per feature, last monitor run.",
            labels=["model", "feature"],
        )
        ks = GaugeMetricFamily(
            "featurestack_drift_ks",
            "KS per feature, last monitor run.",
            labels=["model", "feature"],
        )
        health = GaugeMetricFamily(
            "featurestack_health_score", "Health score (0-100), last monitor run.", labels=["model"]
        )
        pred = GaugeMetricFamily(
            "featurestack_prediction_drift_psi",
            "PSI of the scores against the reference, last monitor run.",
            labels=["model"],
        )
        reports = []
        for path in (
            sorted(self.monitor_dir.glob("*/latest.json")) if self.monitor_dir.exists() else []
        ):
            try:
                report = MonitorReport.model_validate(json.loads(path.read_text()))
            except (OSError, ValueError):  # unreadable, or not a monitor report we know
                continue
            reports.append(report)
            model = report.model
            for row in report.feature_drift:
                if row["psi"] is not None:
                    psi.add_metric([model, row["feature"]], row["psi"])
                if row["ks"] is not None:
                    ks.add_metric([model, row["feature"]], row["ks"])
            health.add_metric([model], report.health["score"])
            if report.prediction_drift["psi"] is not None:
                pred.add_metric([model], report.prediction_drift["psi"])
        yield from (psi, ks, health, pred)
        yield from self._monitor_extras(reports)
        served = GaugeMetricFamily(
            "featurestack_served_version",
            "1 for the version each role of a model serves now (hot reload swaps it).",
            labels=["model", "role", "version"],
        )
        for (model, role), version in sorted(self.metrics.served_versions.items()):
            served.add_metric([model, role, version], 1.0)
        yield served
        blend = GaugeMetricFamily(
            "featurestack_blend_weight",
            "Weight of each part (batch, online) of a served blend.",
            labels=["model", "part"],
        )
        for model, weights in sorted(self.metrics.blend_weights.items()):
            for part, weight in sorted(weights.items()):
                blend.add_metric([model, part], weight)
        yield blend

    @staticmethod
    def _monitor_extras(reports: list[MonitorReport]) -> Iterator[GaugeMetricFamily]:
        """The gauges the shipped alerting rules read besides drift and health
        (deploy/prometheus/featurestack.rules.yml): the KS critical value per feature, the
        primary metric against the holdout, calibration error, ensemble member disagreement
        and when the monitor last ran."""
        ks_limit = GaugeMetricFamily(
            "featurestack_drift_ks_limit",
            "KS above which a feature drifts (max of ks_max and the 1% critical value), last "
            "monitor run.",
            labels=["model", "feature"],
        )
        value = GaugeMetricFamily(
            "featurestack_performance_score",
            "The spec's primary metric on recent labelled rows, last monitor run.",
            labels=["model", "metric"],
        )
        holdout = GaugeMetricFamily(
            "featurestack_performance_holdout",
            "The spec's primary metric on the served version's holdout.",
            labels=["model", "metric"],
        )
        degradation = GaugeMetricFamily(
            "featurestack_performance_degradation",
            "Relative degradation of the primary metric against the holdout (0.05 = 5% worse), "
            "last monitor run.",
            labels=["model", "metric"],
        )
        labelled = GaugeMetricFamily(
            "featurestack_performance_labelled_rows",
            "Recent rows with a published label, last monitor run.",
            labels=["model"],
        )
        calibration = GaugeMetricFamily(
            "featurestack_calibration_error",
            "Expected calibration error on recent labelled rows (binary), last monitor run.",
            labels=["model"],
        )
        disagreement = GaugeMetricFamily(
            "featurestack_member_disagreement",
            "Ensembles: mean standard deviation of the members' outputs, last monitor run.",
            labels=["model"],
        )
        last_run = GaugeMetricFamily(
            "featurestack_monitor_last_run_timestamp_seconds",
            "When the last monitor report of the model was made (Unix time).",
            labels=["model"],
        )
        for report in reports:
            model = report.model
            for row in report.feature_drift:
                limit = row.get("ks_limit")
                if limit is not None:
                    ks_limit.add_metric([model, row["feature"]], limit)
            perf = report.performance
            metric = perf["metric"]
            labelled.add_metric([model], perf["labelled_rows"])
            if perf["value"] is not None and perf["value"] == perf["value"]:
                value.add_metric([model, metric], perf["value"])
            if perf["holdout"] is not None:
                holdout.add_metric([model, metric], perf["holdout"])
            if perf["degradation"] is not None:
                degradation.add_metric([model, metric], perf["degradation"])
            if perf.get("calibration_error") is not None:
                calibration.add_metric([model], perf["calibration_error"])
            if report.member_disagreement is not None:
                disagreement.add_metric([model], report.member_disagreement)
            try:
                at = datetime.fromisoformat(report.at).timestamp()
            except ValueError:
                continue
            last_run.add_metric([model], at)
        yield from (
            ks_limit,
            value,
            holdout,
            degradation,
            labelled,
            calibration,
            disagreement,
            last_run,
        )
