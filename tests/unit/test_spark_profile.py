"""The spark profile's configuration: settings, FEATURESTACK_SPARK_CONF, the resolved Feast
file, doctor, and the promise that the default profile never imports pyspark (no JVM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from featurestack.core.errors import ConfigError
from featurestack.core.settings import load_settings, parse_spark_conf
from featurestack.infra import feast_ops
from tests.conftest import DEMO


def test_the_spark_profile_is_scale_with_spark_as_the_offline_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FEATURESTACK_PROFILE", "spark")
    monkeypatch.setenv("FEATURESTACK_SPARK_MASTER", "spark://somewhere:7077")
    settings = load_settings(tmp_path)
    assert settings.spark and settings.scale and settings.profile == "spark"
    assert settings.mlflow_tracking_uri.startswith(settings.pg_url)  # scale's services
    assert settings.feast_yaml == tmp_path / "feast" / "feature_store.spark.yaml"
    assert settings.environ()["FEATURESTACK_SPARK_MASTER"] == "spark://somewhere:7077"
    resolved = feast_ops.resolved_config(settings)
    offline = resolved["offline_store"]
    assert offline["type"] == "featurestack.stores.spark_offline.SparkAsofOfflineStore"
    assert offline["spark_conf"]["spark.master"] == "spark://somewhere:7077"
    assert offline["spark_conf"]["spark.sql.warehouse.dir"] == str(settings.spark_warehouse)
    assert resolved["online_store"]["type"].endswith("RedisOnlineStore")
    # Only the offline store differs from the scale profile's file.
    committed = {
        name: yaml.safe_load((DEMO / "feature_repo" / name).read_text())
        for name in ("feature_store.scale.yaml", "feature_store.spark.yaml")
    }
    scale, spark = committed.values()
    assert {k: v for k, v in scale.items() if k != "offline_store"} == {
        k: v for k, v in spark.items() if k != "offline_store"
    }
    written = yaml.safe_load(feast_ops.write_resolved_config(settings).read_text())
    assert written["registry"]["path"] == "${FEATURESTACK_FEAST_REGISTRY_URL}"  # no secret
    assert written["offline_store"]["spark_conf"]["spark.master"] == "spark://somewhere:7077"


def test_spark_conf_from_pairs_or_a_file_wins_over_the_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from featurestack.spark.session import spark_conf

    assert parse_spark_conf("spark.executor.memory=4g, spark.sql.shuffle.partitions=64") == (
        ("spark.executor.memory", "4g"),
        ("spark.sql.shuffle.partitions", "64"),
    )
    conf = tmp_path / "spark-defaults.conf"
    conf.write_text("# a cluster\nspark.executor.cores   4\nspark.sql.shuffle.partitions=200\n")
    monkeypatch.setenv("FEATURESTACK_SPARK_CONF", str(conf))
    assert load_settings(tmp_path).spark_conf == (
        ("spark.executor.cores", "4"),
        ("spark.sql.shuffle.partitions", "200"),
    )
    resolved = spark_conf(tmp_path)
    assert resolved["spark.sql.shuffle.partitions"] == "200" and resolved["spark.master"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("executor.memory=4g", r"'executor.memory=4g' is not a Spark setting.*spark.<name>"),
        ("spark.executor.memory=", "is not a Spark setting"),
        ("/nowhere/spark-defaults.conf", "looks like a file but there is none"),
    ],
)
def test_a_bad_spark_conf_names_the_variable_the_rule_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, message: str
) -> None:
    monkeypatch.setenv("FEATURESTACK_SPARK_CONF", value)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path)


def test_doctor_reports_spark_and_fails_on_an_unreachable_master(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from featurestack.infra.services import check_spark_engine

    local = check_spark_engine(load_settings(tmp_path, profile="spark"))
    assert local.ok, local.detail
    assert local.where == "local[2]" and "Spark 4." in local.detail and "version" in local.detail
    monkeypatch.setenv("FEATURESTACK_SPARK_MASTER", "spark://127.0.0.1:1")
    far = check_spark_engine(load_settings(tmp_path, profile="spark"))
    assert (
        not far.ok and "master unreachable" in far.detail and "FEATURESTACK_SPARK_MASTER" in far.fix
    )


@pytest.mark.slow  # a fresh interpreter importing the whole stack
def test_the_default_profile_never_imports_pyspark(tmp_path: Path) -> None:
    """`make demo` and the local profile must not start a JVM: no module of the default path
    (CLI, pipeline, gate, both offline stores, a Feast store on the local profile) imports
    pyspark."""
    code = f"""
import sys
import featurestack.cli, featurestack.pipeline, validation.gate, models_py.cli
import featurestack.stores.spark_offline, featurestack.spark.session
from featurestack.core.settings import load_settings
from featurestack.infra import feast_ops, services
settings = load_settings({str(tmp_path)!r})
feast_ops.write_resolved_config(settings)
feast_ops.load_store(settings)
services.doctor(settings)
assert "pyspark" not in sys.modules, sorted(m for m in sys.modules if "spark" in m)
print("no pyspark")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=DEMO, timeout=300
    )
    assert done.returncode == 0 and "no pyspark" in done.stdout, done.stderr[-2000:]
