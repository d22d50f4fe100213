"""Multiclass: metrics against scikit-learn, every plugin through the training path, and one
spec trained, registered and scored end to end on a three-class label built from the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn import metrics as skm
from typer.testing import CliRunner

from featurestack.cli import app
from models_py.encoding import split_pipeline
from models_py.fitting import fit_and_evaluate
from models_py.metrics import binary_metrics, classification_metrics, multiclass_metrics
from models_py.plugins import get_plugin
from models_py.spec import ModelSpec
from tests.conftest import PipelineRun, copy_of_pipeline
from validation.publish import publish_tables

CLASSES = np.array(["down", "flat", "up"])


def three_classes(n: int, seed: int) -> pd.DataFrame:
    """Two informative features and one noise feature; the class is a band of their sum."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "noise"])
    signal = frame["a"] + 0.5 * frame["b"] + rng.normal(scale=0.5, size=n)
    frame["move"] = np.where(signal < -0.5, "down", np.where(signal > 0.5, "up", "flat"))
    return frame


def test_multiclass_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.choice(CLASSES, size=300)
    proba = rng.dirichlet(np.ones(3), size=300)
    ours = multiclass_metrics(y, proba, CLASSES)
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=list(CLASSES)))
    onehot = (y[:, None] == CLASSES).astype(int)
    assert ours["roc_auc"] == pytest.approx(skm.roc_auc_score(onehot, proba, average="macro"))
    pred = CLASSES[proba.argmax(axis=1)]
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert ours["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert ours["brier"] == pytest.approx(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
    # the constant predictor at the class shares is what log-loss must beat
    shares = onehot.mean(axis=0)
    assert ours["log_loss_constant"] == pytest.approx(
        skm.log_loss(y, np.tile(shares, (300, 1)), labels=list(CLASSES))
    )
    # a class absent from the rows: ranking metrics undefined, the rest still computed
    absent = multiclass_metrics(y[y != "up"], proba[y != "up"], CLASSES)
    assert np.isnan(absent["roc_auc"]) and 0 <= absent["accuracy"] <= 1


def test_two_classes_keep_the_binary_metrics() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = rng.random(200)
    assert classification_metrics(y, np.column_stack([1 - p, p]), np.array([0, 1]), 0.3) == (
        binary_metrics(y, p, 0.3)
    )


def spec(plugin: str, **extra: object) -> ModelSpec:
    return ModelSpec(
        name="move",
        feature_service="any",
        label={"model": "m", "target": "move"},
        task="multiclass",
        primary_metric="log_loss",
        plugin=plugin,
        **extra,
    )


@pytest.mark.parametrize("plugin", ["logreg", "random_forest", "mlp", "xgboost", "lightgbm"])
def test_every_multiclass_plugin_trains_and_beats_the_constant(plugin: str) -> None:
    frame = three_classes(3000, seed=2)
    segments = {"train": frame[:2000], "validation": frame[2000:2500], "holdout": frame[2500:]}
    model, metrics = fit_and_evaluate(
        spec(plugin), get_plugin(plugin), segments, ["a", "b", "noise"]
    )
    assert list(model.classes_) == list(CLASSES)
    assert "threshold" not in metrics  # the most probable class decides
    assert metrics["holdout_log_loss"] < metrics["holdout_log_loss_constant"]
    assert metrics["holdout_accuracy"] > 0.6  # three classes: chance is about 0.33-0.4
    assert metrics["holdout_roc_auc"] > 0.75
    proba = model.predict_proba(segments["holdout"][["a", "b", "noise"]])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_isotonic_calibration_of_a_multiclass_model() -> None:
    frame = three_classes(3000, seed=3)
    segments = {"train": frame[:2000], "validation": frame[2000:2500], "holdout": frame[2500:]}
    model, metrics = fit_and_evaluate(
        spec("lightgbm", calibration="isotonic"), get_plugin("lightgbm"), segments, ["a", "b"]
    )
    assert type(split_pipeline(model)[1]).__name__ == "CalibratedClassifierCV"
    assert metrics["holdout_log_loss"] < metrics["holdout_log_loss_constant"]


def test_scale_pos_weight_is_refused_for_multiclass() -> None:
    with pytest.raises(ValueError, match="scale_pos_weight is for binary"):
        spec("lightgbm", imbalance="scale_pos_weight")


def test_a_multiclass_spec_trains_registers_and_scores(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    """A three-class label (next day down / flat / up by more than 0.5 %) published beside
    the demo's, trained through the real CLI on Feast's point-in-time training set."""
    import mlflow

    settings = copy_of_pipeline(pipeline, tmp_path)
    prices = pd.read_parquet(settings.published_table("feat_symbol__daily"))
    prices = prices.sort_values(["symbol", "event_timestamp"])
    nxt = prices.groupby("symbol")["return_1d"].shift(-1)
    label = prices.loc[nxt.notna(), ["symbol", "event_timestamp"]].copy()
    label["next_day_move"] = np.where(
        nxt[nxt.notna()] < -0.005, "down", np.where(nxt[nxt.notna()] > 0.005, "up", "flat")
    )
    publish_tables(
        settings.published_dir,
        {"lbl_next_day_move": pa.Table.from_pandas(label, preserve_index=False)},
    )
    spec_file = tmp_path / "next_day_move.yaml"
    spec_file.write_text(
        "name: next_day_move\nfeature_service: next_day_up_v1\n"
        "label: {model: lbl_next_day_move, target: next_day_move}\n"
        "task: multiclass\nprimary_metric: log_loss\nplugin: lightgbm\n"
        "params: {n_estimators: 60, num_leaves: 7, min_child_samples: 30}\nseed: 3\n"
    )
    env = {k: str(v) for k, v in settings.environ().items()}
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--spec", str(spec_file)], env=env)
    assert result.exit_code == 0, result.output[-3000:]

    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("next_day_move", "champion")
    assert version.tags["featurestack.task"] == "multiclass"
    run = client.get_run(version.run_id)
    assert {"holdout_log_loss", "holdout_accuracy", "holdout_roc_auc"} <= set(run.data.metrics)
    assert "threshold" not in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/roc_curve.png"} <= artifacts

    day = prices["event_timestamp"].max()
    args = ["predict", "--model", "next_day_move", "--as-of", f"{day:%Y-%m-%d}"]
    scored = runner.invoke(app, args, env=env)
    assert scored.exit_code == 0, scored.output[-3000:]
    preds = pd.read_parquet(
        settings.predictions_dir / "next_day_move" / f"as_of={day:%Y-%m-%d}.parquet"
    )
    columns = [f"proba_{c}" for c in CLASSES]
    assert set(columns) <= set(preds.columns)
    np.testing.assert_allclose(preds[columns].sum(axis=1), 1.0, rtol=1e-6)
    assert set(preds["decision"]) <= set(CLASSES)
    best = preds[columns].to_numpy().argmax(axis=1)
    assert (preds["decision"].to_numpy() == CLASSES[best]).all()
    np.testing.assert_allclose(preds["score"], preds[columns].max(axis=1))
