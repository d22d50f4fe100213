from pathlib import Path

import pytest
import yaml

from featurestack import feast_ops
from featurestack.settings import FEATURE_REPO_DIR, REPO_ROOT, load_settings


def test_defaults_live_under_the_repository_data_folder() -> None:
    s = load_settings()
    assert s.data_dir == REPO_ROOT / "data"
    assert s.raw_dir == REPO_ROOT / "data" / "raw"
    assert s.mlflow_tracking_uri == f"sqlite:///{REPO_ROOT / 'data' / 'mlflow' / 'mlflow.db'}"


def test_environment_overrides_and_relative_paths(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEATURESTACK_DATA_DIR", "somewhere")
    monkeypatch.setenv("FEATURESTACK_RAW_DIR", "incoming")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow@db/mlflow")
    s = load_settings()
    assert s.data_dir == tmp_path / "somewhere"
    assert s.raw_dir == tmp_path / "incoming"
    assert s.mlflow_tracking_uri == "postgresql://mlflow@db/mlflow"
    assert s.environ()["FEATURESTACK_DATA_DIR"] == str(tmp_path / "somewhere")


def test_committed_feast_config_matches_the_default_data_folder() -> None:
    """`FeatureStore(repo_path="feature_repo")` must find the state `featurestack` wrote."""
    committed = yaml.safe_load((FEATURE_REPO_DIR / "feature_store.yaml").read_text())
    settings = load_settings(REPO_ROOT / "data")
    resolved = feast_ops.resolved_config(settings)
    # Feast's MLflow client is pointed at the data folder's tracking store; nothing else moves.
    assert resolved["mlflow"].pop("tracking_uri") == settings.mlflow_tracking_uri
    assert resolved == committed
    for section in ("registry", "online_store"):
        path = (FEATURE_REPO_DIR / committed[section]["path"]).resolve()
        assert path == REPO_ROOT / "data" / "feast" / Path(committed[section]["path"]).name


def test_another_data_folder_moves_registry_and_online_store(tmp_path: Path) -> None:
    resolved = feast_ops.resolved_config(load_settings(tmp_path))
    assert resolved["registry"]["path"] == str(tmp_path / "feast" / "registry.db")
    assert resolved["online_store"]["path"] == str(tmp_path / "feast" / "online_store.db")
