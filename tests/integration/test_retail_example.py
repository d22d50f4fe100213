"""The retail example project end to end: a copy of examples/retail, its own sample data,
`featurestack run --project-dir` (dbt, gate, Feast, training of a regression spec with
intervals and a classification spec), then batch, online (`--entity store_id=…,product_id=…`)
and HTTP scoring of its composite key (store_id, product_id)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from featurestack.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "retail"
KEYS = ["store_id", "product_id"]


def copy_example(target: Path) -> Path:
    """The example's own files (no build output, no data), as a user copies a project."""
    shutil.copytree(
        EXAMPLE,
        target,
        ignore=shutil.ignore_patterns("data", "target", "logs", "__pycache__", "dbt_packages"),
    )
    done = subprocess.run(
        [sys.executable, str(target / "sample_data.py"), "--out", str(target / "data" / "raw")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return target


def test_the_retail_example_runs_end_to_end_on_its_composite_key(tmp_path: Path) -> None:
    from feast import FeatureStore

    from featurestack.core.settings import load_settings
    from models_py.predict import predict_online
    from models_py.server import create_app
    from models_py.serving import ServeConfig

    project = copy_example(tmp_path / "retail")
    env = {"FEATURESTACK_PROJECT_DIR": None, "MLFLOW_TRACKING_URI": None}
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--project-dir", str(project)], env=env)
    assert result.exit_code == 0, result.output[-4000:]
    out = result.output
    assert "model      demand_units v1 (champion): holdout RMSE" in out
    assert "inside the intervals" in out
    assert "model      demand_spike v1 (champion): holdout ROC-AUC" in out

    settings = load_settings(project_dir=project)
    summary = json.loads((settings.reports_dir / "run_summary.json").read_text())
    assert summary["project"] == "retail"
    holdout = {m["name"]: m["holdout"] for m in summary["models"]}
    assert set(holdout) == {"demand_units", "demand_spike"}
    # the sample data has signal: both models beat a constant on the holdout
    assert holdout["demand_units"]["rmse"] < holdout["demand_units"]["rmse_constant"]
    assert holdout["demand_spike"]["roc_auc"] > 0.6

    # a view with one entity per key column; the published table unique per (key, time)
    settings.export()
    store = FeatureStore(repo_path=str(project / "feature_repo"), fs_yaml_file=None)
    view = store.get_feature_view("store_product_daily")
    assert sorted(view.entities) == ["product", "store"]
    assert sorted(c.name for c in view.entity_columns) == sorted(KEYS)
    published = pd.read_parquet(settings.published_table("feat_store_product__daily"))
    assert not published.duplicated([*KEYS, "event_timestamp"]).any()
    pairs = published[KEYS].drop_duplicates()
    assert len(pairs) == 12  # 3 stores x 4 products

    # the consistency check compared online and offline values per composite key, and per
    # store in the view keyed by store alone
    report = max((settings.reports_dir / "consistency").glob("*.json"))
    checked = {v["view"]: v for v in json.loads(report.read_text())["views"]}
    assert {name: (v["sampled"], v["mismatch_count"]) for name, v in checked.items()} == {
        "store_product_daily": (12, 0),
        "store_daily": (3, 0),
    }

    # batch: every (store, product) pair scored, with its interval; the store view's
    # features joined in by store_id (a service over a composite and a one-key view)
    paths = {m["name"]: m["batch_predictions"] for m in summary["models"]}
    for name in paths:
        batch = pd.read_parquet(paths[name])
        assert list(batch.columns[:2]) == KEYS
        assert len(batch[KEYS].drop_duplicates()) == len(batch) == 12
        assert batch["score"].notna().all() and batch["store_units_7d_avg"].notna().all()
    units = pd.read_parquet(paths["demand_units"])
    assert (units["interval_low"] <= units["score"]).all()
    assert (units["score"] <= units["interval_high"]).all()
    assert (units["interval_low"] >= 0).all()  # the spec's bounds: demand is never negative

    # online: the documented --entity form for a composite key
    cli = ["--project-dir", str(project), "predict", "--online", "--model", "demand_units"]
    online = runner.invoke(app, [*cli, "--entity", "store_id=S1,product_id=P1"], env=env)
    assert online.exit_code == 0, online.output
    assert "S1" in online.output and "P1" in online.output
    expected = predict_online(settings, "demand_units", [{"store_id": "S1", "product_id": "P1"}])
    s1p1 = units[(units["store_id"] == "S1") & (units["product_id"] == "P1")]
    # the online store holds the newest day, the batch scored as of it: the same score
    assert expected["score"].iloc[0] == pytest.approx(s1p1["score"].iloc[0], rel=1e-9)
    half = runner.invoke(app, [*cli, "--entity", "store_id=S1"], env=env)
    assert half.exit_code == 2, half.output
    assert "product_id" in half.output and "Traceback" not in half.output

    # HTTP: the server takes the composite key as one entity object
    entities = [{"store_id": "S1", "product_id": "P1"}, {"store_id": "S3", "product_id": "P4"}]
    with TestClient(create_app(settings, ServeConfig())) as http:
        response = http.post("/predict/demand_units", json={"entities": entities})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert [p["entity"] for p in predictions] == entities
        want = predict_online(settings, "demand_units", entities)["score"].tolist()
        assert [p["score"] for p in predictions] == pytest.approx(want, rel=1e-9)
        spike = http.post("/predict/demand_spike", json={"entities": entities[:1]})
        assert spike.status_code == 200, spike.text
        assert 0 <= spike.json()["predictions"][0]["score"] <= 1
        missing = http.post("/predict/demand_units", json={"entities": [{"store_id": "S1"}]})
        assert missing.status_code == 422 and "product_id" in missing.text
        models = {m["model"]: m for m in http.get("/models").json()}
        assert sorted(models["demand_units"]["keys"]) == sorted(KEYS)
        # the OpenAPI page's example request names the whole key
        body = http.get("/openapi.json").json()["paths"]["/predict/{model}"]["post"]
        assert all(f'"{key}"' in json.dumps(body["requestBody"]) for key in KEYS)

    # monitoring: recent features per (store, product) through demand_spike's service, whose
    # first view is keyed by store alone
    monitored = runner.invoke(
        app, ["--project-dir", str(project), "monitor", "--model", "demand_spike"], env=env
    )
    # exit 1 is an alert on the sample data's drift, not a failure of the command
    assert monitored.exit_code in (0, 1), monitored.output[-3000:]
    assert "demand_spike v1: health" in monitored.output, monitored.output[-3000:]
    assert "recent rows from features" in monitored.output
