"""Behaviour of the trained demo model: it has learned something real, and nothing it should not."""

from __future__ import annotations

from tests.conftest import PipelineRun


def test_champion_beats_a_constant_predictor_on_the_holdout(pipeline: PipelineRun) -> None:
    holdout = pipeline.summary["model"]["holdout"]
    assert holdout["roc_auc"] > 0.55
    assert holdout["log_loss"] < holdout["log_loss_constant"]
    assert 0.2 < holdout["positive_rate"] < 0.8


def test_holdout_is_strictly_after_training_data(pipeline: PipelineRun) -> None:
    import mlflow

    mlflow.set_tracking_uri(pipeline.settings.mlflow_tracking_uri)
    run = mlflow.get_run(pipeline.summary["model"]["run_id"])
    rows = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/split_rows.json")
    assert rows["train"] > rows["validation"] > 0 and rows["holdout"] > 0
    assert run.data.params["split.embargo_periods"] == "1"
