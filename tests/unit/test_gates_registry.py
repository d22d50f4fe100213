"""Issue 20: quality gates, promotion at each version's own threshold, suggested fixes that
name real specs, and a reproduction that compares what it prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from featurestack.core.settings import Settings
from models_py import gates
from models_py.fitting import fit_and_evaluate
from models_py.plugins import get_plugin
from models_py.registry import Decision, decide_promotion, gate
from models_py.reproduce import Reproduction
from models_py.spec import ModelSpec, SpecError, load_spec, spec_of_model


def binary_spec(**extra: object) -> ModelSpec:
    return ModelSpec(
        name="events",
        feature_service="any",
        label={"model": "lbl", "target": "hit"},
        task="binary",
        plugin="logreg",
        **extra,  # type: ignore[arg-type]
    )


def holdout_metrics(**values: float) -> dict[str, float]:
    base = {
        "holdout_roc_auc": 0.7,
        "holdout_f1": 0.3,
        "holdout_positive_rate": 0.1,
        "holdout_log_loss": 0.3,
        "holdout_log_loss_constant": 0.33,
        "holdout_score_spread": 0.05,
    }
    return {**base, **{f"holdout_{k}": v for k, v in values.items()}}


def test_a_degenerate_model_fails_its_gate_whatever_the_spec_says() -> None:
    verdicts = gates.check(binary_spec(), holdout_metrics(score_spread=0.0, roc_auc=0.5))
    assert [v.gate for v in gates.failed(verdicts)] == ["not degenerate"]
    decision = gate(Decision(True, "no champion yet", "roc_auc", 0.5), verdicts)
    assert not decision.promoted and decision.gated
    assert "held back by quality gate(s): not degenerate" in decision.reason
    tags = decision.tags()
    assert tags["featurestack.gates"] == "failed"
    assert tags["featurestack.decision"] == "held back"
    assert tags["featurestack.gate.not_degenerate"].startswith("FAIL")


@pytest.mark.parametrize(
    ("spec_gates", "metrics", "failing"),
    [
        ({"min": {"f1": 0.7, "roc_auc": 0.75}}, {}, ["min f1", "min roc_auc"]),
        ({"min": {"f1": 0.25}}, {}, []),
        ({"max": {"log_loss": 0.2}}, {}, ["max log_loss"]),
        # F1 of predicting every row positive at a 10 % base rate: 2p/(1+p) = 0.18
        ({"beat_constant": True}, {"f1": 0.15}, ["beats constant"]),
        ({"beat_constant": True}, {"f1": 0.2}, []),
    ],
)
def test_floors_and_the_constant_predictor(
    spec_gates: dict, metrics: dict, failing: list[str]
) -> None:
    spec = binary_spec(primary_metric="f1", gates=spec_gates)
    verdicts = gates.check(spec, holdout_metrics(**metrics))
    assert sorted(v.gate for v in gates.failed(verdicts)) == failing
    assert all(v.line().startswith(("pass  ", "FAIL  ")) for v in verdicts)


def test_gate_spec_is_checked() -> None:
    with pytest.raises(ValidationError, match=r"gates.min.rmse: no such metric"):
        binary_spec(gates={"min": {"rmse": 1.0}})
    with pytest.raises(ValidationError, match=r"put it under gates.max"):
        binary_spec(gates={"min": {"log_loss": 0.5}})


def rare(days: int = 40, per_day: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.repeat(pd.date_range("2024-01-01", periods=days, freq="D", tz="UTC"), per_day)
    f = rng.normal(size=len(ts))
    y = (rng.random(len(ts)) < 1 / (1 + np.exp(-(-2.5 + 1.5 * f)))).astype(int)
    return pd.DataFrame({"event_timestamp": ts, "f": f, "g": rng.normal(size=len(ts)), "hit": y})


@pytest.mark.slow  # a real MLflow store: the full suite runs it
def test_promotion_scores_the_champion_at_its_own_logged_threshold(tmp_path: Path) -> None:
    """The champion was re-scored at 0.5 while the candidate used its tuned threshold: a
    version that logged holdout F1 0.24 was judged on another F1."""
    import mlflow
    from mlflow.models import infer_signature

    from models_py import tracking
    from models_py.dataset import time_split
    from models_py.run_log import tag_version

    settings = Settings(tmp_path / "data", tmp_path / "raw", f"sqlite:///{tmp_path / 'ml.db'}")
    experiment = tracking.configure(settings)
    spec = binary_spec(primary_metric="f1", params={"C": 0.05}, calibration="platt")
    segments = time_split(rare(), spec.split)
    plugin = get_plugin("logreg")
    model, metrics = fit_and_evaluate(spec, plugin, segments, ["f", "g"])
    assert metrics["threshold"] < 0.4  # a rare label: far from 0.5
    client = mlflow.MlflowClient()
    holdout = segments["holdout"]
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(
                holdout[["f", "g"]], model.predict_proba(holdout[["f", "g"]])
            ),
            registered_model_name=spec.name,
            serialization_format="cloudpickle",
        )
    version = str(info.registered_model_version)
    tag_version(client, spec, version, "run", "any", metrics, None)
    client.set_registered_model_alias(spec.name, "champion", version)

    decision = decide_promotion(client, spec, "99", {"holdout_f1": 0.0}, holdout)
    assert decision.champion_version == version
    assert decision.champion_score == pytest.approx(metrics["holdout_f1"], rel=1e-9)


def test_suggested_fixes_name_the_spec_of_a_multi_target_model(tmp_path: Path) -> None:
    (tmp_path / "account_profit.yaml").write_text("name: account_profit\n")
    assert spec_of_model("account_profit__next_day_net_profit", tmp_path) == "account_profit"
    assert spec_of_model("next_day_up", tmp_path) == "next_day_up"
    with pytest.raises(SpecError, match=r"target of spec account_profit .*--spec account_profit`"):
        load_spec("account_profit__next_day_net_profit", tmp_path)


def test_a_reproduction_prints_every_metric_it_compares() -> None:
    """It once said "metrics DIFFER" with every printed line matching: it compared
    validation metrics it did not print."""
    logged = {"holdout_f1": 0.3, "validation_f1": 0.31, "threshold": 0.2, "train_rows": 5.0}
    same = Reproduction("r1", "events", logged, dict(logged), [])
    assert same.matches and "metrics match" in same.summary()
    other = Reproduction("r1", "events", logged, {**logged, "validation_f1": 0.35}, [])
    text = other.summary()
    assert not other.matches
    line = next(x for x in text.splitlines() if "validation_f1" in x)
    assert line.endswith("≠") and "0.350000" in line
    assert text.splitlines()[-1] == "  metrics DIFFER: validation_f1"
    assert "train_rows" not in text  # not compared, not printed


def test_the_model_card_holds_the_description_data_metrics_and_gates() -> None:
    from models_py.dataset import ServiceInfo, TrainingSet, time_split
    from models_py.train import model_card

    spec = binary_spec(description="Flags rare events. Intended use: a review list.")
    frame = rare()
    segments = time_split(frame, spec.split)
    info = ServiceInfo("svc_v1", ["symbol"], ["v:f", "v:g"], ["f", "g"], [])
    data = TrainingSet(info, frame, segments, None)
    metrics = holdout_metrics(score_spread=0.0)
    decision = gate(Decision(True, "no champion yet", "roc_auc", 0.7), gates.check(spec, metrics))
    card = model_card(spec, "3", data, metrics, decision)
    assert card.startswith("# events v3\n\nFlags rare events. Intended use: a review list.")
    assert f"- holdout: {len(segments['holdout'])} rows" in card
    assert "| roc_auc | 0.7 |" in card and "`f`, `g`" in card
    assert "- FAIL  not degenerate" in card and "held back" in card


def test_reproduce_warns_on_each_environment_difference() -> None:
    from models_py import tracking
    from models_py.reproduce import environment_changes

    versions = tracking.package_versions()
    assert {"xgboost", "catboost", "optuna", "imbalanced-learn"} <= set(versions)
    here = tracking.environment()
    assert {"platform", "python", "cpu_count", "cpu", "memory_gb"} <= set(here)
    tags = {f"featurestack.version.{k}": v for k, v in versions.items()}
    tags.update({f"featurestack.env.{k}": v for k, v in here.items()})
    assert environment_changes(tags) == []
    tags["featurestack.version.xgboost"] = "1.0.0"
    tags["featurestack.env.cpu_count"] = "512"
    assert environment_changes(tags) == [
        f"cpu_count 512 → {here['cpu_count']}",
        f"xgboost 1.0.0 → {versions['xgboost']}",
    ]
    text = Reproduction("r", "s", {"holdout_f1": 0.1}, {"holdout_f1": 0.1}, [], ["x 1 → 2"])
    assert "  warning: environment differs: x 1 → 2" in text.summary().splitlines()


@pytest.mark.slow  # a real MLflow store: the full suite runs it
def test_challenger_retire_and_status(tmp_path: Path) -> None:
    import mlflow
    from mlflow.models import infer_signature

    from featurestack.core.errors import NotFound
    from models_py import tracking
    from models_py.dataset import time_split
    from models_py.registry import promote, retire, set_challenger, status

    settings = Settings(tmp_path / "data", tmp_path / "raw", f"sqlite:///{tmp_path / 'ml.db'}")
    experiment = tracking.configure(settings)
    spec = binary_spec()
    segments = time_split(rare(), spec.split)
    model, _ = fit_and_evaluate(spec, get_plugin("logreg"), segments, ["f", "g"])
    example = segments["holdout"][["f", "g"]].head(3)
    for _ in range(3):
        with mlflow.start_run(experiment_id=experiment):
            mlflow.log_params({"plugin": "logreg", "calibration": "none"})
            mlflow.log_metrics({"holdout_roc_auc": 0.7, "train_rows": 500})
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(example, model.predict_proba(example)),
                registered_model_name=spec.name,
                serialization_format="cloudpickle",
            )
    client = mlflow.MlflowClient()
    promote(client, spec.name, "1")
    set_challenger(client, spec.name, "2")
    with pytest.raises(NotFound, match="is the champion"):
        set_challenger(client, spec.name, "1")
    with pytest.raises(NotFound, match="is the champion: promote another"):
        retire(client, spec.name, "1")
    retire(client, spec.name, "2")
    assert "challenger" not in client.get_registered_model(spec.name).aliases
    with pytest.raises(NotFound, match="is retired: it is never promoted"):
        promote(client, spec.name, "2")
    with pytest.raises(NotFound, match="is retired: it is never served"):
        set_challenger(client, spec.name, "2")
    rows = {r["version"]: r for r in status(client, spec.name)}
    assert [rows[v]["status"] for v in (1, 2, 3)] == ["champion", "retired", "registered"]
    assert rows[1]["plugin"] == "logreg" and rows[1]["rows"] == {"train": 500}


def test_a_run_names_the_published_snapshot_it_read(tmp_path: Path) -> None:
    from models_py.train import published_snapshot

    settings = Settings(tmp_path / "data", tmp_path / "raw", f"sqlite:///{tmp_path / 'ml.db'}")
    assert published_snapshot(settings) is None  # nothing published yet
    snapshot = settings.published_dir / "snapshots" / "20261207T215907-8cb11e"
    snapshot.mkdir(parents=True)
    (settings.published_dir / "current").symlink_to(snapshot.relative_to(settings.published_dir))
    assert published_snapshot(settings) == "20261207T215907-8cb11e"
