"""The scale profile on the real Redis and PostgreSQL: the whole flow, doctor, reset, parallel
tuning on one study in PostgreSQL, and concurrent writers of Feast's SQL registry.

Every test works in a database ``featurestack_test_<random>`` and under a Redis prefix
``fst_test_<random>`` of its own (the ``scale_env`` fixture) and removes both afterwards.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import psycopg
import pytest
import redis
from typer.testing import CliRunner

from featurestack.cli import app
from featurestack.infra.feast_ops import REDIS_ONLINE_STORE
from tests.conftest import ScaleEnv

OFFLINE = "featurestack.stores.offline.DuckDBAsofOfflineStore"


def tables(pg_server: str, database: str) -> dict[str, set[str]]:
    with psycopg.connect(f"{pg_server.replace('+psycopg', '')}/{database}") as con:
        rows = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('feast', 'mlflow', 'optuna', 'public')"
        ).fetchall()
    out: dict[str, set[str]] = {}
    for schema, name in rows:
        out.setdefault(schema, set()).add(name)
    return out


def database_exists(pg_server: str, database: str) -> bool:
    with psycopg.connect(f"{pg_server.replace('+psycopg', '')}/postgres") as con:
        return bool(
            con.execute("select 1 from pg_database where datname = %s", [database]).fetchone()
        )


def join_a_running_study(env: dict[str, str], tmp_path: Path) -> None:
    """`train --workers 1` in another process (as on another machine) while `tune-worker`
    joins its study here: both run trials of one study, and the worker's are logged under the
    training run."""
    import subprocess
    import sys
    import time

    import mlflow
    import optuna
    import yaml

    from featurestack.core.settings import load_settings
    from tests.conftest import DEMO

    spec = yaml.safe_load((DEMO / "specs" / "next_day_up.yaml").read_text())
    spec["tuning"] = {"trials": 24, "sampler_seed": 77, "pruner": "median"}
    path = tmp_path / "next_day_up_joined.yaml"
    path.write_text(yaml.safe_dump(spec))
    main = subprocess.Popen(
        [sys.executable, "-m", "featurestack", "train", "--spec", str(path), "--workers", "1"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        settings = load_settings()
        deadline = time.monotonic() + 300
        name = ""  # <spec>-<plugin>-<spec hash>-<data hash>-seed77 (models_py/tuning.py)
        while time.monotonic() < deadline and main.poll() is None:
            names = [s.study_name for s in optuna.get_all_study_summaries(settings.optuna_storage)]
            found = [n for n in names if n.startswith("next_day_up-") and n.endswith("-seed77")]
            if found:
                name = found[0]
                break
            time.sleep(0.5)
        worker = CliRunner().invoke(app, ["tune-worker", "--study", name], env=env)
        output, _ = main.communicate(timeout=600)
    finally:
        main.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert main.returncode == 0, output
    assert worker.exit_code == 0, worker.output
    assert f"tune-worker --study {name}" in output  # train names the study
    study = optuna.load_study(study_name=name, storage=settings.optuna_storage)
    pids = {t.user_attrs.get("pid") for t in study.trials}
    assert len(pids) == 2 and len(study.trials) >= 24  # both processes ran trials
    ran = int(worker.output.split("this worker ran ")[1].split()[0])
    assert ran >= 1
    parent = study.user_attrs["featurestack.mlflow_run_id"]
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    nested = mlflow.search_runs(
        experiment_ids=[study.user_attrs["featurestack.experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'",
    )
    assert len(nested) == len(study.trials)  # the worker's trials too, under the same run


def serve_through_a_redis_outage(scale_env: ScaleEnv, env: dict[str, str], redis_url: str) -> None:
    """The scoring service on the scale profile, its Redis reached through a proxy the test
    owns: 200 while Redis answers, 503 naming Redis and the fix (never a 500) when it does
    not, 200 again once it is back."""
    from fastapi.testclient import TestClient

    from models_py.server import create_app
    from tests.proxy import Proxy

    target = urlsplit(redis_url)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    try:
        proxied = {**env, "FEATURESTACK_REDIS_URL": proxy.url("redis", "/0")}
        settings = ScaleEnv(proxied, scale_env.database, scale_env.prefix).settings()
        body = {"entities": [{"symbol": "AAA"}]}
        with TestClient(create_app(settings)) as http:
            ok = http.post("/predict/next_day_up", json=body)
            assert ok.status_code == 200, ok.text
            assert ok.json()["predictions"][0]["score"] is not None
            proxy.stop()
            down = http.post("/predict/next_day_up", json=body)
            assert down.status_code == 503, down.text
            assert (
                "Redis" in down.json()["error"] and "FEATURESTACK_REDIS_URL" in down.json()["error"]
            )
            assert down.headers["retry-after"] == "1"
            proxy.start()
            back = http.post("/predict/next_day_up", json=body)
            assert back.status_code == 200 and back.json()["predictions"][0]["score"] is not None
            metrics = http.get("/metrics").text
        assert (
            'featurestack_errors_total{kind="store_unavailable",model="next_day_up"} 1.0' in metrics
        )
    finally:
        proxy.stop()


def test_the_whole_flow_runs_on_redis_and_postgresql_and_reset_removes_only_its_state(
    scale_env: ScaleEnv, small_raw: Path, pg_server: str, redis_url: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    env = {**scale_env.env, "FEATURESTACK_RAW_DIR": str(small_raw)}
    client = redis.Redis.from_url(redis_url)
    # Someone else's key beside ours: reset must leave it.
    foreign = f"{scale_env.prefix}x:not-ours"
    client.set(foreign, b"1")
    try:
        doctor = runner.invoke(app, ["doctor"], env=env)
        assert doctor.exit_code == 0, doctor.output
        assert "profile: scale" in doctor.output and "PostgreSQL 1" in doctor.output
        assert "Redis 7" in doctor.output or "Redis " in doctor.output

        result = runner.invoke(app, ["run"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        data = Path(env["FEATURESTACK_DATA_DIR"])
        # The local stores were not used: no file registry, online store, MLflow or Optuna file.
        assert not (data / "feast" / "registry.db").exists()
        assert not (data / "feast" / "online_store.db").exists()
        assert not (data / "mlflow" / "mlflow.db").exists()
        assert not (data / "optuna").exists()
        assert (data / "feast" / "feature_store.scale.yaml").exists()
        found = tables(pg_server, scale_env.database)
        assert {"feature_views", "entities", "feature_services"} <= found["feast"]
        assert {"registered_models", "model_versions", "runs"} <= found["mlflow"]
        assert {"studies", "trials"} <= found["optuna"]
        assert "public" not in found  # every tool in its own schema
        keys = list(client.scan_iter(match=f"{scale_env.prefix}:*", count=1000))
        assert len(keys) > 20  # rows of the three views, their meta hashes, the layouts

        online = runner.invoke(app, ["predict", "--online", "--entity", "symbol=AAA"], env=env)
        assert online.exit_code == 0, online.output
        serve_through_a_redis_outage(scale_env, env, redis_url)
        models = runner.invoke(app, ["models", "--name", "next_day_up"], env=env)
        assert "champion" in models.output, models.output

        # A worker joining the finished study has nothing left to do; an unknown study is named.
        import optuna

        (study,) = [
            s.study_name
            for s in optuna.get_all_study_summaries(scale_env.settings().optuna_storage)
            if s.study_name.startswith("next_day_up-lightgbm-") and s.study_name.endswith("-seed42")
        ]
        joined = runner.invoke(app, ["tune-worker", "--study", study], env=env)
        assert joined.exit_code == 0, joined.output
        assert "ran 0 trial(s) of next_day_up" in joined.output
        unknown = runner.invoke(app, ["tune-worker", "--study", "nope"], env=env)
        assert unknown.exit_code == 1 and study in unknown.output
        join_a_running_study(env, tmp_path)

        reset = runner.invoke(app, ["reset", "--profile", "scale", "--yes"], env=env)
        assert reset.exit_code == 0, reset.output
        assert not database_exists(pg_server, scale_env.database)
        assert list(client.scan_iter(match=f"{scale_env.prefix}:*", count=1000)) == []
        assert client.get(foreign) == b"1"
        assert (data / "published").exists()  # the local pipeline's files are not its state
    finally:
        client.delete(foreign)


def test_reset_refuses_a_database_featurestack_did_not_create(
    scale_env: ScaleEnv, pg_server: str
) -> None:
    admin = f"{pg_server.replace('+psycopg', '')}/postgres"
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'create database "{scale_env.database}"')
    try:
        result = CliRunner().invoke(app, ["reset", "--yes"], env=scale_env.env)
        assert result.exit_code == 1, result.output
        assert "was not created by featurestack" in result.output
        assert database_exists(pg_server, scale_env.database)
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'drop database if exists "{scale_env.database}" with (force)')


# -- parallel tuning on one PostgreSQL study ----------------------------------------------------


def _spec(trials: int) -> Any:
    """The unit tests' tuning spec (tests/unit/test_tuning.py), with its own sampler seed."""
    from tests.unit.test_tuning import spec

    return spec(trials, seed=3)


def _frame(seed: int = 0) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    ts = np.repeat(pd.date_range("2024-01-01", periods=40, freq="D", tz="UTC"), 20)
    x = rng.normal(size=len(ts))
    up = (x + rng.normal(size=len(ts)) > 0).astype(int)
    return pd.DataFrame({"event_timestamp": ts, "f": x, "next_day_up": up})


def _join(trials: int, storage: str, seed: int, frame_seed: int = 0) -> int:
    from models_py.tuning import join

    return join(_spec(trials), _frame(frame_seed), ["f"], storage, seed)


def test_workers_share_one_study_in_postgresql_and_another_process_can_join(
    scale_env: ScaleEnv,
) -> None:
    import optuna

    from featurestack.infra import services
    from models_py.plugins import get_plugin
    from models_py.tuning import fingerprint, fingerprint_columns, study_name, tune

    settings = scale_env.settings()
    services.prepare(settings)
    storage = settings.optuna_storage
    assert "search_path%3Doptuna" in storage
    first = tune(_spec(4), get_plugin("lightgbm"), _frame(), ["f"], storage, jobs=2)
    # Each process checks the budget after its own trial: two may finish one each at the end.
    assert 4 <= first.trials <= 5
    assert len({t["pid"] for t in first.history}) == 2  # two worker processes ran trials

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        # The budget grows to 8: a process elsewhere (`tune-worker`) adds the missing trials.
        assert pool.submit(_join, 8, storage, 11).result() == 8 - first.trials
        # Another data set must not add scores to this study.
        with pytest.raises(ValueError, match="tuned on other training rows"):
            pool.submit(_join, 9, storage, 12, 1).result()
    name = study_name(_spec(4), fingerprint(_frame(), fingerprint_columns(_spec(4), ["f"])))
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(study.trials) == 8
    assert study.user_attrs["featurestack.spec"] == "tuned"
    with pytest.raises(LookupError, match="featurestack train --spec other"):
        from models_py.tuning import join

        join(_spec(3).model_copy(update={"name": "other"}), _frame(), ["f"], storage, 1)


# -- concurrent writers of the SQL registry -----------------------------------------------------


def _writer(config: dict, source: str, names: list[str]) -> None:
    """Apply feature views ``names`` one at a time, then materialize each (a `feast apply` and
    `featurestack materialize` of another team, at the same time as ours)."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.repo_config import RepoConfig
    from feast.types import Float64, Int64

    from featurestack.infra.online_materialize import materialize_view

    store = FeatureStore(config=RepoConfig(**config))
    entity = Entity(name="item", join_keys=["id"], value_type=ValueType.INT64)
    for name in names:
        view = FeatureView(
            name=name,
            entities=[entity],
            ttl=timedelta(days=30),
            schema=[Field(name="id", dtype=Int64), Field(name="x", dtype=Float64)],
            source=FileSource(name=f"{name}_src", path=source, timestamp_field="event_timestamp"),
        )
        store.apply([entity, view])
    now = datetime.now(UTC)
    for name in names:
        materialize_view(store, store.get_feature_view(name), now - timedelta(days=2), now)


def test_two_concurrent_apply_and_materialize_on_the_sql_registry_lose_nothing(
    scale_env: ScaleEnv, tmp_path: Path
) -> None:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from featurestack.infra import services

    settings = scale_env.settings()
    services.prepare(settings)
    source = tmp_path / "src.parquet"
    now = datetime.now(UTC).replace(microsecond=0)
    pd.DataFrame(
        {"id": [1, 2, 3], "x": [1.0, 2.0, 3.0], "event_timestamp": [now - timedelta(hours=1)] * 3}
    ).to_parquet(source, index=False)
    config = {
        "project": "concurrent",
        "provider": "local",
        "registry": {
            "registry_type": "sql",
            "path": settings.feast_registry_url,
            "cache_ttl_seconds": 0,
        },
        "offline_store": {"type": OFFLINE},
        "online_store": {
            "type": REDIS_ONLINE_STORE,
            "url": settings.redis_url,
            "key_prefix": settings.redis_prefix,
        },
        "entity_key_serialization_version": 3,
        "repo_path": str(tmp_path),
    }
    a = [f"a_view_{i}" for i in range(6)]
    b = [f"b_view_{i}" for i in range(6)]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        jobs = [pool.submit(_writer, config, str(source), names) for names in (a, b)]
        for job in jobs:
            job.result()
    store = FeatureStore(config=RepoConfig(**config))
    views = {v.name: v for v in store.list_feature_views()}
    assert sorted(views) == sorted(a + b)  # no writer's object replaced the other's
    assert all(len(v.materialization_intervals) == 1 for v in views.values())
    reader_rows = store.get_online_features(
        features=[f"{name}:x" for name in (a[-1], b[-1])],
        entity_rows=[{"id": 2}],
        full_feature_names=True,
    ).to_dict()
    assert reader_rows[f"{a[-1]}__x"] == [2.0] and reader_rows[f"{b[-1]}__x"] == [2.0]
