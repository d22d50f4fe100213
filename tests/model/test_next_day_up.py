"""Behaviour of the trained demo model: it has learned something real, and nothing it should not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tests.conftest import PipelineRun, copy_of_pipeline
from validation.publish import publish_tables


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


def test_the_training_set_report_and_input_ranges_are_logged(pipeline: PipelineRun) -> None:
    import mlflow

    mlflow.set_tracking_uri(pipeline.settings.mlflow_tracking_uri)
    run = mlflow.get_run(pipeline.summary["model"]["run_id"])
    report = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/training_set_report.json")
    rows = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/split_rows.json")
    assert report["rows"] == rows and report["problems"] == []
    train = report["class_counts"]["train"]
    assert set(train) == {"0", "1"} and sum(train.values()) == rows["train"]
    assert run.data.metrics["train_positive_rate"] == train["1"] / rows["train"]
    ranges = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/input_ranges.json")
    assert set(ranges) == set(report["null_share"]) and all(lo <= hi for lo, hi in ranges.values())


def test_batch_predictions_flag_exactly_the_inputs_outside_the_training_range(
    pipeline: PipelineRun,
) -> None:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(pipeline.settings.mlflow_tracking_uri)
    run = mlflow.get_run(pipeline.summary["model"]["run_id"])
    ranges = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/input_ranges.json")
    preds = pd.read_parquet(pipeline.summary["batch_predictions"])
    for _, row in preds.iterrows():
        expected = [
            f
            for f, (lo, hi) in ranges.items()
            if not np.isnan(row[f]) and (row[f] < lo or row[f] > hi)
        ]
        assert list(row["out_of_range"]) == expected, row["symbol"]
    assert preds["score"].notna().all()  # flagged rows are still scored, not dropped


def test_the_champion_refuses_inputs_that_do_not_match_its_signature(
    pipeline: PipelineRun,
) -> None:
    import pandas as pd
    import pytest

    from models_py.model_inputs import InputError
    from models_py.registry import load_model_version
    from models_py.scoring import score

    champion = load_model_version(pipeline.settings, "next_day_up")
    columns = [name for name, _ in champion.inputs]
    good = pd.DataFrame([dict.fromkeys(columns, 0.0)])
    assert score(champion, good, pd.Series([True]))["score"].notna().all()
    retyped = good.assign(**{columns[0]: "0.0"})
    with pytest.raises(InputError, match=f"column {columns[0]} is object; the model expects"):
        score(champion, retyped, pd.Series([True]))
    with pytest.raises(InputError, match=f"missing: \\['{columns[-1]}'\\]"):
        score(champion, good.drop(columns=columns[-1]), pd.Series([True]))


def test_a_tuned_spec_logs_a_nested_run_per_trial_and_refits_the_best(
    pipeline: PipelineRun, tmp_path
) -> None:
    import mlflow

    from models_py.spec import load_spec
    from models_py.train import train

    settings = copy_of_pipeline(pipeline, tmp_path)
    base = load_spec("next_day_up").model_dump()
    base.update(tuning={"trials": 5, "sampler_seed": 3, "pruner": "none"}, cv={"folds": 2})
    spec = type(load_spec("next_day_up"))(**base)
    result = train(settings, spec, storage=f"sqlite:///{tmp_path / 'optuna.db'}")

    client = mlflow.MlflowClient()
    parent = client.get_run(result.run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert len(children) == 5
    assert parent.data.metrics["tuning_trials"] == 5
    study = mlflow.artifacts.load_dict(f"{parent.info.artifact_uri}/optuna_study.json")
    best_trial = max(
        (t for t in study["trials"] if t["value"] is not None), key=lambda t: t["value"]
    )
    assert parent.data.metrics["tuning_best_cv"] == best_trial["value"]
    # the refit used the best trial's parameters
    assert float(parent.data.params["learning_rate"]) == best_trial["params"]["learning_rate"]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"optuna_history.png", "optuna_param_importances.json"} <= artifacts
    assert "evaluation_report.html" in artifacts
    evaluation = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    assert {
        f"evaluation/{n}.png"
        for n in ("roc_curve", "pr_curve", "confusion_matrix", "calibration_curve")
    } | {"evaluation/feature_importance.png", "evaluation/feature_contributions.png"} <= evaluation
    report = mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/evaluation_report.html")
    assert report.count("data:image/png;base64,") == 6 and "Holdout" in report
    contrib = mlflow.artifacts.load_dict(
        f"{parent.info.artifact_uri}/evaluation/feature_contributions_holdout.json"
    )
    assert {"symbol", "event_timestamp", "bias"} <= set(contrib["columns"])
    assert len(contrib["data"]) == min(500, result.rows["holdout"])


def test_a_worse_version_becomes_challenger_and_promote_and_rollback_move_the_champion(
    pipeline: PipelineRun, tmp_path
) -> None:
    import mlflow
    from typer.testing import CliRunner

    from featurestack.cli import app
    from models_py.spec import load_spec
    from models_py.train import train

    settings = copy_of_pipeline(pipeline, tmp_path)
    champion_version = pipeline.summary["model"]["version"]
    worse = load_spec("next_day_up").model_dump()
    worse.update(tuning=None, params={"n_estimators": 1, "num_leaves": 2, "learning_rate": 0.01})
    result = train(settings, type(load_spec("next_day_up"))(**worse))

    assert result.alias == "challenger" and result.decision is not None
    assert result.decision.champion_version == champion_version
    assert result.decision.champion_score is not None
    assert result.decision.champion_score > result.decision.new_score
    client = mlflow.MlflowClient()
    tags = client.get_model_version("next_day_up", result.version).tags
    assert tags["featurestack.decision"] == "challenger"
    assert (
        str(client.get_model_version_by_alias("next_day_up", "champion").version)
        == champion_version
    )

    env = {k: str(v) for k, v in settings.environ().items()}
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "--name", "next_day_up"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"v{result.version}" in listed.output and "challenger" in listed.output
    promoted = runner.invoke(app, ["models", "promote", "next_day_up", result.version], env=env)
    assert promoted.exit_code == 0, promoted.output
    assert (
        str(client.get_model_version_by_alias("next_day_up", "champion").version) == result.version
    )
    aliases = client.get_registered_model("next_day_up").aliases
    assert "challenger" not in aliases, "a promoted challenger is no longer challenger"
    back = runner.invoke(app, ["models", "rollback", "next_day_up"], env=env)
    assert back.exit_code == 0, back.output
    assert (
        str(client.get_model_version_by_alias("next_day_up", "champion").version)
        == champion_version
    )
    missing = runner.invoke(app, ["models", "promote", "next_day_up", "99"], env=env)
    assert missing.exit_code == 1 and "cannot promote next_day_up v99" in missing.output


def test_batch_decisions_use_the_threshold_chosen_on_validation(pipeline: PipelineRun) -> None:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(pipeline.settings.mlflow_tracking_uri)
    version = mlflow.MlflowClient().get_model_version(
        "next_day_up", pipeline.summary["model"]["version"]
    )
    threshold = float(version.tags["featurestack.threshold"])
    run = mlflow.get_run(pipeline.summary["model"]["run_id"])
    assert run.data.metrics["threshold"] == pytest.approx(threshold, rel=1e-5)
    assert run.data.params["calibration"] == "platt"
    preds = pd.read_parquet(pipeline.summary["batch_predictions"])
    assert (preds["decision"] == (preds["score"] >= threshold)).all()
    assert 0 < preds["decision"].mean() < 1  # the threshold splits the symbols


def test_a_run_reproduces_exactly_and_a_data_change_is_named(
    pipeline: PipelineRun, tmp_path
) -> None:
    """Same data + seed → same model and metrics (tuning included); changed data → told."""
    import pandas as pd
    from typer.testing import CliRunner

    from featurestack.cli import app

    run_id = pipeline.summary["model"]["run_id"]
    env = {k: str(v) for k, v in pipeline.settings.environ().items()}
    same = CliRunner().invoke(app, ["reproduce", run_id], env=env)
    assert same.exit_code == 0, same.output
    assert "metrics match" in same.output and "changed" not in same.output

    settings = copy_of_pipeline(pipeline, tmp_path)
    labels = pd.read_parquet(settings.published_table("lbl_next_day_up"))
    labels["next_day_up"] = 1 - labels["next_day_up"]  # every label flipped
    flipped = pa.Table.from_pandas(labels, preserve_index=False)
    publish_tables(settings.published_dir, {"lbl_next_day_up": flipped})
    env = {k: str(v) for k, v in settings.environ().items()}
    changed = CliRunner().invoke(app, ["reproduce", run_id], env=env)
    assert changed.exit_code == 1, changed.output
    assert "published data changed since the run: lbl_next_day_up" in changed.output
    assert "metrics DIFFER" in changed.output


def test_warm_start_continues_from_the_champion_and_records_it(
    pipeline: PipelineRun, tmp_path
) -> None:
    import mlflow
    from typer.testing import CliRunner

    from featurestack.cli import app

    settings = copy_of_pipeline(pipeline, tmp_path)
    env = {k: str(v) for k, v in settings.environ().items()}
    args = ["train", "--spec", "next_day_up", "--warm-start"]
    # Same data as the champion's: nothing after its training window, refused, no run left.
    refused = CliRunner().invoke(app, args, env=env)
    assert refused.exit_code == 1, refused.output[-3000:]
    assert "no training rows after v1's training window" in refused.output
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("featurestack")
    runs_before = len(client.search_runs([experiment.experiment_id]))

    # New data arrives: pretend the champion's training window ended 30 trading days earlier.
    parent_run_id = pipeline.summary["model"]["run_id"]
    train_end = pd.Timestamp(client.get_run(parent_run_id).data.tags["featurestack.train_end"])
    labels = pd.read_parquet(settings.published_table("lbl_next_day_up"))
    days = labels["event_timestamp"].drop_duplicates().sort_values().reset_index(drop=True)
    earlier = days[days.searchsorted(train_end) - 30]
    client.set_tag(parent_run_id, "featurestack.train_end", earlier.isoformat())
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output[-3000:]
    assert len(client.search_runs([experiment.experiment_id])) == runs_before + 1
    versions = client.search_model_versions("name = 'next_day_up'")
    newest = max(versions, key=lambda v: int(v.version))
    parent = pipeline.summary["model"]["version"]
    assert newest.tags["featurestack.parent_version"] == parent
    run = client.get_run(newest.run_id)
    assert run.data.tags["featurestack.parent_version"] == parent
    assert "tuning_trials" not in run.data.metrics  # no tuning: the parent's parameters
    parent_run = client.get_run(pipeline.summary["model"]["run_id"])
    assert run.data.params["learning_rate"] == parent_run.data.params["learning_rate"]
    # boosting went on over the 30 new days only: their labels, one per symbol and day
    new = labels[(labels["event_timestamp"] > earlier) & (labels["event_timestamp"] <= train_end)]
    assert run.data.metrics["warm_start_rows"] == len(new) > 0
    assert pd.Timestamp(run.data.tags["featurestack.train_end"]) == train_end
