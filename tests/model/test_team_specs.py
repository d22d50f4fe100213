"""Issue 20 on the small demo market: a label-table weight column, quality gates that hold a
version back, several specs in one command, serving a challenger that does not exist, and the
team specs that the small market can train (the rare-event ones need the full demo's
announcements: tests/unit/test_tuning_studies.py tunes F1 on a rare label)."""

from __future__ import annotations

from pathlib import Path

import mlflow
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


@pytest.mark.parametrize("name", ["team_daily_profit", "team_trading_signals"])
def test_team_specs_train_on_the_demo_data(env: dict[str, str], name: str) -> None:
    code, out = run(env, "train", "--spec", name)
    assert code == 0, out[-3000:]
    version = mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
    assert version.tags["featurestack.gates"] == "passed"
