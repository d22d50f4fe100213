"""Issue 20: the five teams' specs train on the demo data; F1 tuning of the rare label, a
label-table weight column, quality gates that hold a version back, several specs in one
command, and serving a challenger that does not exist."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from typer.testing import CliRunner

from featurestack.cli import app
from models_py.contract import spec_from_run
from tests.conftest import PipelineRun, copy_of_pipeline

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.fixture
def env(pipeline: PipelineRun, tmp_path: Path) -> dict[str, str]:
    settings = copy_of_pipeline(pipeline, tmp_path)
    return {k: str(v) for k, v in settings.environ().items()}


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_rare_events_tuned_on_f1_beat_the_constant_predictor(env: dict[str, str]) -> None:
    """Every trial of an F1 study on upper_circuit scored 0.0 and a constant forest became
    champion; now trials differ and the champion beats predicting every row positive."""
    code, out = run(env, "train", "--spec", "team_rare_events")
    assert code == 0, out[-3000:]
    assert "pass  beats constant" in out and "pass  not degenerate" in out, out[-2000:]
    storage = f"sqlite:///{Path(env['FEATURESTACK_DATA_DIR']) / 'optuna' / 'optuna.db'}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    (name,) = [n for n in names if n.startswith("team_rare_events-random_forest-")]
    values = [t.value for t in optuna.load_study(study_name=name, storage=storage).trials]
    assert len({round(v, 9) for v in values if v is not None}) > 1, values
    assert max(v for v in values if v is not None) > 0
    champion = mlflow.MlflowClient().get_model_version_by_alias("team_rare_events", "champion")
    assert champion.tags["featurestack.gates"] == "passed"


def test_a_weight_column_of_the_label_table_and_gates_that_hold_back(
    env: dict[str, str], tmp_path: Path
) -> None:
    strict = yaml.safe_load((SPECS / "team_trade_outcomes.yaml").read_text())
    strict["name"] = "strict_outcomes"
    strict["gates"] = {"max": {"mae": 0.001}}  # no model of this data gets there
    path = tmp_path / "strict_outcomes.yaml"
    path.write_text(yaml.safe_dump(strict))
    # two specs in one command: the held-back one does not stop the other, and both are named
    code, out = run(env, "train", "--spec", str(path), "--spec", "team_trade_outcomes")
    assert code == 1, out[-3000:]
    assert "FAIL  max mae" in out
    assert "1 of 2 spec(s) failed or held back: strict_outcomes" in out
    assert "trained: team_trade_outcomes" in out
    client = mlflow.MlflowClient()
    held = client.get_model_version("strict_outcomes", "1")
    assert held.tags["featurestack.decision"] == "held back"
    assert not client.get_registered_model("strict_outcomes").aliases  # neither alias
    weighted = client.get_model_version_by_alias("team_trade_outcomes", "champion")
    spec = spec_from_run(client.get_run(weighted.run_id))
    assert spec.sample_weight_column == "next_day_trade_count"

    # serve --challenger split without a challenger version: refused, not the champion alone
    code, out = run(
        env, "serve", "--model", "team_trade_outcomes", "--challenger", "split", "--port", "1"
    )
    assert code == 2 and "needs a 'challenger' version" in out, out[-2000:]
    assert "featurestack models challenger" in out
