"""The shipped Prometheus alerting rules (deploy/prometheus/): valid for promtool, unit-tested
by promtool with cases that fire and cases that stay silent, and reading only metrics the
model server exposes on /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from featurestack.core.settings import Settings
from models_py.monitor import calibration_error
from models_py.report_models import MonitorReport
from models_py.server_metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "featurestack.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "featurestack.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "featurestack.dashboard.json"


def _promtool() -> str:
    """promtool, or a skip naming it: the rules are checked in `make test` where promtool is
    installed (issue 21); the metrics the rules read are checked below without it."""
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not installed: the alerting rules are checked with it. Install "
            "Prometheus's tools (Debian/Ubuntu: apt-get install -y prometheus)"
        )
    return found


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.slow  # promtool evaluates days of series (several seconds on a busy machine)
def test_promtool_unit_tests_fire_and_stay_silent() -> None:
    done = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        cwd=RULE_TESTS.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # every alert of the rules file is tested, and some test expects silence
    alerts = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert alerts == tested
    assert "exp_alerts: []" in RULE_TESTS.read_text()


def _report(model: str) -> MonitorReport:
    return MonitorReport(
        model=model,
        version="3",
        run_id="r",
        at="2026-12-07T10:00:00+00:00",
        source="requests",
        window_days=7,
        recent_rows=500,
        recent_event_times=None,
        reference_rows={"fit": 500, "holdout": 200},
        thresholds={},
        feature_drift=[
            {"feature": "ret_1d", "psi": 0.3, "ks": 0.25, "ks_limit": 0.2, "drifted": True}
        ],
        prediction_drift={"psi": 0.1, "ks": 0.05, "drifted": False},
        performance={
            "metric": "roc_auc",
            "holdout": 0.6,
            "labelled_rows": 300,
            "value": 0.54,
            "degradation": 0.1,
            "degraded": True,
            "by_day": [],
            "calibration_error": 0.07,
        },
        health={"score": 40.0, "status": "critical", "recommendations": []},
        alerts=[],
        member_disagreement=0.2,
    )


def test_every_metric_the_rules_read_is_on_metrics(tmp_path: Path) -> None:
    settings = Settings(tmp_path, tmp_path, "sqlite://")
    folder = settings.reports_dir / "monitor" / "m"
    folder.mkdir(parents=True)
    (folder / "latest.json").write_text(_report("m").model_dump_json())
    metrics = Metrics(settings)
    # what a server that answered, failed, dropped shadow requests and reloaded would count
    metrics.observe("m", "3", "champion", 2, 0.004)
    metrics.error("m", "store_unavailable")
    metrics.shadow_dropped("m", 1)
    metrics.reloaded("m", "champion", ok=False)
    from datetime import UTC, datetime

    metrics.served_event_time[("m", "daily")] = datetime.now(UTC)
    exposed = generate_latest(metrics.registry).decode()
    names = set(re.findall(r"^(featurestack_\w+?)(?:\{| )", exposed, flags=re.M))
    read = set(re.findall(r"\b(featurestack_\w+)", RULES.read_text()))
    read = {n for n in read if not n.endswith("_rules")}
    assert read, "the rules read no featurestack metric"
    assert read <= names, f"rules read metrics /metrics lacks: {sorted(read - names)}"
    # and the report's values reach the gauges
    assert 'featurestack_calibration_error{model="m"} 0.07' in exposed
    assert 'featurestack_performance_degradation{metric="roc_auc",model="m"} 0.1' in exposed
    assert 'featurestack_member_disagreement{model="m"} 0.2' in exposed
    # the dashboard charts the same metrics
    panels = json.loads(DASHBOARD.read_text())["panels"]
    charted = {
        n
        for p in panels
        for t in p.get("targets", [])
        for n in re.findall(r"featurestack_\w+", t["expr"])
    }
    charted = {re.sub(r"_(bucket|total)$", "", n) for n in charted}
    assert {re.sub(r"_(bucket|total)$", "", n) for n in read} <= charted


def test_calibration_error_is_zero_when_calibrated_and_large_when_not() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20_000)
    y = (rng.uniform(size=p.size) < p).astype(float)
    assert calibration_error(y, p) < 0.02
    assert calibration_error(y, 1 - p) > 0.3
