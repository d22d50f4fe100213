from pathlib import Path

import pytest
import yaml

from featurestack.core.settings import load_settings
from featurestack.infra import feast_ops
from tests.conftest import DEMO


def test_defaults_live_under_the_repository_data_folder() -> None:
    s = load_settings()
    assert s.data_dir == DEMO / "data"
    assert s.raw_dir == DEMO / "data" / "raw"
    assert s.mlflow_tracking_uri == f"sqlite:///{DEMO / 'data' / 'mlflow' / 'mlflow.db'}"


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
    committed = yaml.safe_load((DEMO / "feature_repo" / "feature_store.yaml").read_text())
    settings = load_settings(DEMO / "data")
    resolved = feast_ops.resolved_config(settings)
    # Feast's MLflow client is pointed at the data folder's tracking store; nothing else moves.
    assert resolved["mlflow"].pop("tracking_uri") == settings.mlflow_tracking_uri
    assert resolved == committed
    for section in ("registry", "online_store"):
        path = (DEMO / "feature_repo" / committed[section]["path"]).resolve()
        assert path == DEMO / "data" / "feast" / Path(committed[section]["path"]).name


def test_another_data_folder_moves_registry_and_online_store(tmp_path: Path) -> None:
    resolved = feast_ops.resolved_config(load_settings(tmp_path))
    assert resolved["registry"]["path"] == str(tmp_path / "feast" / "registry.db")
    assert resolved["online_store"]["path"] == str(tmp_path / "feast" / "online_store.db")


def test_the_profile_defaults_to_local_and_a_wrong_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from featurestack.core.settings import ConfigError

    assert load_settings().profile == "local"
    monkeypatch.setenv("FEATURESTACK_PROFILE", "cluster")
    with pytest.raises(ConfigError, match=r"FEATURESTACK_PROFILE='cluster'.*local, scale"):
        load_settings()
    monkeypatch.setenv("FEATURESTACK_PROFILE", "scale")
    monkeypatch.setenv("FEATURESTACK_TIMEOUT_S", "0")
    with pytest.raises(ConfigError, match="FEATURESTACK_TIMEOUT_S='0' must be a positive"):
        load_settings()


def test_scale_puts_each_tool_in_its_own_schema_of_the_profiles_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FEATURESTACK_PROFILE", "scale")
    monkeypatch.setenv("FEATURESTACK_PG_URL", "postgresql+psycopg://u@db:5433/fs?sslmode=require")
    monkeypatch.setenv("FEATURESTACK_REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("FEATURESTACK_REDIS_PREFIX", "team_a")
    s = load_settings(tmp_path)
    base = "postgresql+psycopg://u@db:5433/fs?sslmode=require&options=-csearch_path%3D"
    assert s.mlflow_tracking_uri == base + "mlflow&connect_timeout=2"
    assert s.optuna_storage == base + "optuna&connect_timeout=2"
    assert s.feast_registry_url == base + "feast&connect_timeout=2"
    assert s.artifact_location == (tmp_path / "scale" / "mlflow-artifacts").as_uri()
    config = feast_ops.resolved_config(s)
    assert config["registry"]["registry_type"] == "sql"
    assert config["registry"]["path"] == s.feast_registry_url
    assert config["online_store"] == {
        "type": feast_ops.REDIS_ONLINE_STORE,
        "url": "redis://cache:6380/2",
        "key_prefix": "team_a",
        "timeout_s": 2.0,
    }
    # Only the services differ: the same offline store, project and entity key format.
    local = feast_ops.resolved_config(load_settings(tmp_path, profile="local"))
    for same in ("project", "provider", "offline_store", "entity_key_serialization_version"):
        assert config[same] == local[same]


def test_an_explicit_url_wins_over_the_profiles_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURESTACK_PROFILE", "scale")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    monkeypatch.setenv("FEATURESTACK_OPTUNA_STORAGE", "postgresql://o@h/studies")
    monkeypatch.setenv("FEATURESTACK_ARTIFACTS_URI", "s3://bucket/mlflow")
    s = load_settings()
    assert s.mlflow_tracking_uri == "https://mlflow.example.com"
    assert s.optuna_storage == "postgresql://o@h/studies"
    assert s.artifact_location == "s3://bucket/mlflow"


def test_passwords_are_redacted_in_messages() -> None:
    from featurestack.core.errors import redact

    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_doctor_prints_the_local_profile_and_its_stores(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from featurestack.cli import app

    result = CliRunner().invoke(app, ["doctor"], env={"FEATURESTACK_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert "profile: local" in result.output
    for service in ("data folder", "MLflow tracking", "MLflow artifacts", "Optuna storage"):
        assert f"ok   {service}" in result.output
    exported = (
        CliRunner().invoke(app, ["doctor", "--env"], env={"FEATURESTACK_PROFILE": "scale"}).output
    )
    assert "export FEATURESTACK_FEAST_REGISTRY_URL=" in exported
    assert "export FEATURESTACK_REDIS_PREFIX=featurestack_scale" in exported


def test_a_wrong_profile_is_one_message_and_exit_2() -> None:
    from typer.testing import CliRunner

    from featurestack.cli import app

    result = CliRunner().invoke(app, ["doctor"], env={"FEATURESTACK_PROFILE": "big"})
    assert result.exit_code == 2
    assert "FEATURESTACK_PROFILE='big' is not a profile" in result.output
    assert "Traceback" not in result.output
