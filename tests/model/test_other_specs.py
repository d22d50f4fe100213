"""The other demo specs: a multi-target regression with intervals, and a rare event."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from typer.testing import CliRunner

from featurestack.cli import app
from tests.conftest import PipelineRun, copy_of_pipeline

TARGETS = ["next_day_net_profit", "next_day_gross_profit", "next_day_trade_count"]


def test_account_profit_trains_one_regressor_per_target_with_intervals(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    settings = copy_of_pipeline(pipeline, tmp_path)
    env = {k: str(v) for k, v in settings.environ().items()}
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--spec", "account_profit"], env=env)
    assert result.exit_code == 0, result.output[-3000:]

    client = mlflow.MlflowClient()
    for target in TARGETS:
        name = f"account_profit__{target}"
        version = client.get_model_version_by_alias(name, "champion")
        assert version.tags["featurestack.task"] == "regression"
        metrics = client.get_run(version.run_id).data.metrics
        # split conformal at 90 %: coverage near 90 % on the holdout (a few hundred rows)
        assert 0.8 <= metrics["holdout_interval_coverage"] <= 1.0
        assert metrics["holdout_interval_mean_width"] > 0
        assert metrics["holdout_rmse"] < 1.5 * metrics["holdout_rmse_constant"]

    day = pd.read_parquet(settings.published_table("feat_account__daily"))["event_timestamp"].max()
    name = "account_profit__next_day_trade_count"
    scored = runner.invoke(app, ["predict", "--model", name, "--as-of", f"{day:%Y-%m-%d}"], env=env)
    assert scored.exit_code == 0, scored.output[-3000:]
    path = settings.predictions_dir / name / f"as_of={day:%Y-%m-%d}.parquet"
    preds = pd.read_parquet(path)
    assert {"tier", "score", "interval_low", "interval_high"} <= set(preds.columns)
    assert (preds["interval_low"] <= preds["score"]).all()
    assert (preds["score"] <= preds["interval_high"]).all()
    # label.bounds: a count is never negative, nor is its interval
    scored_rows = preds["score"].notna()
    assert scored_rows.any()
    assert (preds.loc[scored_rows, ["score", "interval_low"]] >= 0).all().all()
    assert (preds.loc[scored_rows, "interval_low"] == 0).any(), "the bound was reached"
