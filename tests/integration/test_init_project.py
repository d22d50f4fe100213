"""Bring your own data: a project written by `featurestack init` runs end to end, from a folder
outside the repository, with featurestack installed from its wheel (not editable) into an
environment of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.model.test_third_party_plugin import uv_command

ROOT = Path(__file__).resolve().parents[2]


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output[-4000:]}"
    return output


def test_a_project_written_by_init_runs_from_an_installed_wheel(tmp_path: Path) -> None:
    uv = uv_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEATURESTACK_", "MLFLOW_"))}
    env.pop("VIRTUAL_ENV", None)
    _run([*uv, "build", "--wheel", "-o", str(tmp_path / "dist")], ROOT, env)
    wheel = next((tmp_path / "dist").glob("featurestack-*.whl"))
    requirements = tmp_path / "requirements.txt"
    _run(
        [
            *uv,
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            # the Spark engine is optional: the default profile never imports it
            *("--no-emit-package", "pyspark", "--no-emit-package", "dbt-spark"),
            "-o",
            str(requirements),
        ],
        ROOT,
        env,
    )
    venv = tmp_path / "venv"
    _run([*uv, "venv", str(venv), "--python", sys.executable], tmp_path, env)
    python = venv / "bin" / "python"
    _run([*uv, "pip", "install", "--python", str(python), "-r", str(requirements)], tmp_path, env)
    _run([*uv, "pip", "install", "--python", str(python), "--no-deps", str(wheel)], tmp_path, env)
    located = _run(
        [str(python), "-c", "import featurestack; print(featurestack.__file__)"], tmp_path, env
    )
    assert str(venv) in located and str(ROOT) not in located  # the wheel, not this checkout

    outside = tmp_path / "work"
    outside.mkdir()
    featurestack = str(venv / "bin" / "featurestack")
    created = _run([featurestack, "init", "shop"], outside, env)
    assert "created project shop" in created and "customer_daily" in created
    ran = _run([featurestack, "run", "--project-dir", "shop"], outside, env)
    assert "model      customer_reorder v1 (champion): holdout ROC-AUC" in ran

    summary = json.loads((outside / "shop" / "data" / "reports" / "run_summary.json").read_text())
    assert summary["project"] == "shop" and summary["model"]["name"] == "customer_reorder"
    assert summary["model"]["holdout"]["roc_auc"] > 0.55  # the sample data has signal
    preds = pd.read_parquet(summary["batch_predictions"])
    customer = preds.loc[preds["score"].notna(), "customer_id"].iloc[0]
    online = _run(
        [featurestack, "predict", "--online", "--entity", f"customer_id={customer}"],
        outside / "shop",
        env,
    )
    assert customer in online and "customer_reorder" in online
    wrong = subprocess.run(
        [featurestack, "predict", "--online", "--entity", "customer=C0001"],
        cwd=outside / "shop",
        env=env,
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert "lacks join key(s) ['customer_id']" in wrong.stderr
