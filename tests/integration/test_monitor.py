"""`featurestack monitor` on the session pipeline: the training reference stored with the
version, drift that fires on a shifted distribution and not on a resample of the reference,
the exit code, the reports and the drift gauges the server exposes."""

from __future__ import annotations

import json

import pandas as pd
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import PipelineRun, copy_of_pipeline

MODEL = "next_day_up"


def test_training_stores_a_reference_and_drift_fires_only_on_a_shift(
    pipeline: PipelineRun,
) -> None:
    from models_py.monitor import MonitorConfig, compare, feature_drift, load_baseline

    base = load_baseline(pipeline.settings, MODEL)
    assert base.version == pipeline.summary["model"]["version"]
    reference = base.reference
    assert set(reference["segment"]) == {"fit", "holdout"}
    assert {"symbol", "event_timestamp", "label", "score", *base.features} <= set(reference)
    fit = reference[reference["segment"] == "fit"]
    config = MonitorConfig()

    resample = fit.sample(frac=1.0, replace=True, random_state=3)
    calm = feature_drift(fit, resample, base.features, config)
    assert not [d["feature"] for d in calm if d["drifted"]]
    assert not compare(resample["score"], fit["score"], config)["drifted"]

    shifted = resample.assign(
        volume_ma_7d=resample["volume_ma_7d"] * 3,
        return_1d=resample["return_1d"] + 2 * resample["return_1d"].std(),
    )
    drifted = {
        d["feature"] for d in feature_drift(fit, shifted, base.features, config) if d["drifted"]
    }
    assert drifted == {"volume_ma_7d", "return_1d"}


def test_monitor_exits_non_zero_on_drift_writes_reports_and_feeds_metrics(
    pipeline: PipelineRun, tmp_path
) -> None:
    """Logged requests whose volume_ma_7d arrives 4× too large (a unit change upstream)."""
    from datetime import UTC, datetime

    from featurestack.cli import app
    from models_py.monitor import load_baseline
    from models_py.prediction_log import PredictionLog
    from models_py.server import create_app
    from models_py.serving import ServeConfig

    settings = copy_of_pipeline(pipeline, tmp_path)
    base = load_baseline(settings, MODEL)
    fit = base.reference[base.reference["segment"] == "fit"]
    served = fit.sample(300, random_state=5).reset_index(drop=True)
    served["volume_ma_7d"] *= 4
    log = PredictionLog(settings.prediction_log_dir)
    now = datetime.now(UTC)
    log.append(
        [
            (
                f"r{i}",
                now,
                MODEL,
                base.version,
                "champion",
                {"symbol": row["symbol"]},
                {f: None if pd.isna(row[f]) else float(row[f]) for f in base.features},
                row["event_timestamp"].to_pydatetime(),
                float(row["score"]),
                None,
                None,
                None,
                [],
            )
            for i, row in served.iterrows()
        ]
    )
    log.close()
    # Levels and market-wide moves of a resample are the reference's own; compare a few.
    keep = {"volume_ma_7d", "volume_zscore_20d", "return_1d"}
    exclude = [x for f in base.features if f not in keep for x in ("--exclude", f)]
    env = {k: str(v) for k, v in settings.environ().items()}
    args = ["monitor", "--model", MODEL, "--days", "1", "--source", "requests", *exclude]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    assert "feature_drift:volume_ma_7d" in result.output
    folder = settings.reports_dir / "monitor" / MODEL
    report = json.loads((folder / "latest.json").read_text())
    assert report["source"] == "requests" and report["recent_rows"] == 300
    drifted = {d["feature"] for d in report["feature_drift"] if d["drifted"]}
    assert drifted == {"volume_ma_7d"}
    assert {d["feature"] for d in report["feature_drift"]} == keep  # the rest excluded
    perf = report["performance"]
    assert perf["labelled_rows"] == 300 and perf["value"] is not None  # labels are published
    assert report["health"]["score"] < 100 and report["health"]["recommendations"]
    pages = sorted(folder.glob("*.html"))
    assert pages and "distribution_volume_ma_7d" in pages[-1].read_text()

    with TestClient(create_app(settings, ServeConfig())) as http:
        metrics = http.get("/metrics").text
    assert f'featurestack_drift_psi{{feature="volume_ma_7d",model="{MODEL}"}}' in metrics
    assert f'featurestack_health_score{{model="{MODEL}"}} {report["health"]["score"]}' in metrics
