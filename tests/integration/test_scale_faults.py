"""Faults of the scale profile on real services: Redis, PostgreSQL or MLflow tracking down.

Each service is reached through a TCP proxy the test owns (tests/proxy.py), so stopping or
freezing the proxy is a real outage for featurestack while the shared Redis and PostgreSQL keep
running for everyone else. Time bounds below are the configured budget with generous slack
(they check that a failure is bounded, not how fast anything is).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64
from typer.testing import CliRunner

from featurestack.cli import app
from featurestack.core.errors import EXIT_UNAVAILABLE, StoreUnavailable
from featurestack.infra.feast_ops import REDIS_ONLINE_STORE, materialize_store, scratch_repo_config
from featurestack.infra.online_materialize import materialize_view
from featurestack.infra.online_reader import OnlineReader
from tests.conftest import ScaleEnv
from tests.proxy import Proxy, closed_port

OFFLINE = "featurestack.stores.offline.DuckDBAsofOfflineStore"
NOW = datetime.now(UTC).replace(microsecond=0)
BUDGET_S = 1.0
ROWS = 50


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[Proxy]:
    target = urlsplit(redis_url)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    name = "fst_fault_" + uuid.uuid4().hex[:10]
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{name}:*", count=1000))
    if keys:
        client.unlink(*keys)


def redis_repo(tmp: Path, url: str, prefix: str) -> tuple[FeatureStore, FeatureView]:
    """A Feast repo whose online store is our Redis store at ``url`` (through the proxy)."""
    tmp.mkdir(parents=True, exist_ok=True)
    source = tmp / "src.parquet"
    pd.DataFrame(
        {
            "id": list(range(ROWS)),
            "x": [float(i) for i in range(ROWS)],
            "event_timestamp": [NOW - timedelta(hours=1)] * ROWS,
        }
    ).to_parquet(source, index=False)
    entity = Entity(name="item", join_keys=["id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="items",
        entities=[entity],
        ttl=timedelta(days=30),
        schema=[Field(name="id", dtype=Int64), Field(name="x", dtype=Float64)],
        source=FileSource(name="src", path=str(source), timestamp_field="event_timestamp"),
    )
    online = {
        "type": REDIS_ONLINE_STORE,
        "url": url,
        "key_prefix": prefix,
        "timeout_s": BUDGET_S,
        "batch_size": 10,
    }
    store = FeatureStore(config=scratch_repo_config(tmp, "faults", OFFLINE, online))
    store.apply([entity, view])
    return store, store.get_feature_view("items")


def watermark(store: FeatureStore) -> list:
    return store.registry.get_feature_view("items", store.project).materialization_intervals


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
def test_lookups_fail_within_the_budget_with_a_typed_error(
    outage: str, redis_proxy: Proxy, prefix: str, tmp_path: Path
) -> None:
    store, _ = redis_repo(tmp_path, redis_proxy.url("redis", "/0"), prefix)
    materialize_store(store, NOW)
    reader = OnlineReader(store, ["items:x"])
    assert reader.read([{"id": 3}])["x"] == [3.0]

    redis_proxy.stop() if outage == "stopped" else redis_proxy.freeze()
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        reader.read([{"id": 3}, {"id": 4}])
    elapsed = time.monotonic() - start
    assert elapsed < 3 * BUDGET_S, f"{outage}: lookup failed after {elapsed:.1f} s"
    message = str(caught.value)
    assert "Redis (online store)" in message and f"127.0.0.1:{redis_proxy.port}" in message
    assert "FEATURESTACK_REDIS_URL" in message  # the fix
    with pytest.raises(StoreUnavailable):  # Feast's own read path says the same
        store.get_online_features(features=["items:x"], entity_rows=[{"id": 3}])

    redis_proxy.stop()
    redis_proxy.start()  # Redis is back on the same address: the same reader recovers
    assert reader.read([{"id": 3}])["x"] == [3.0]


def test_materialize_keeps_its_watermark_when_redis_dies_and_a_rerun_converges(
    redis_proxy: Proxy, prefix: str, tmp_path: Path
) -> None:
    store, view = redis_repo(tmp_path, redis_proxy.url("redis", "/0"), prefix)

    def die_after_first_batch(rows: int) -> None:
        redis_proxy.stop()  # after 10 of 50 rows are written

    with pytest.raises(StoreUnavailable):
        materialize_view(store, view, NOW - timedelta(days=2), NOW, die_after_first_batch, 10)
    assert watermark(store) == []  # not advanced

    with pytest.raises(StoreUnavailable):  # still down: the same, nothing advanced
        materialize_store(store, NOW)
    assert watermark(store) == []

    redis_proxy.start()
    done = materialize_store(store, NOW)
    assert done["items"].endswith(f"{ROWS:,} rows")
    assert len(watermark(store)) == 1
    got = OnlineReader(store, ["items:x"]).read([{"id": i} for i in range(ROWS)])
    assert got["x"] == [float(i) for i in range(ROWS)]
    assert set(got["items__status"]) == {"PRESENT"}


def test_cli_materialize_exits_non_zero_when_redis_is_unreachable(
    scale_env: ScaleEnv, tmp_path: Path
) -> None:
    env = {**scale_env.env, "FEATURESTACK_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    result = CliRunner().invoke(app, ["materialize"], env=env)
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "Redis (online store)" in result.output and "nothing was written" in result.output


def test_postgres_unreachable_every_command_says_so_and_nothing_is_written(
    scale_env: ScaleEnv, pg_server: str
) -> None:
    import psycopg

    from featurestack.infra import services

    settings = scale_env.settings()
    services.prepare(settings)  # the real database exists with Feast's empty registry tables
    admin = f"{pg_server.replace('+psycopg', '')}/{scale_env.database}"

    def state() -> tuple[list, int]:
        with psycopg.connect(admin) as con:
            tables = con.execute(
                "select table_schema, table_name from information_schema.tables "
                "where table_schema in ('feast', 'mlflow', 'optuna') order by 1, 2"
            ).fetchall()
            projects = con.execute("select count(*) from feast.projects").fetchall()[0][0]
        return tables, projects

    before = state()
    assert {t for s, t in before[0] if s == "feast"} >= {"projects", "feature_views"}
    assert before[1] == 0 and all(s == "feast" for s, _ in before[0])
    target = urlsplit(pg_server)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    proxy.stop()
    down = {
        **scale_env.env,
        "FEATURESTACK_PG_URL": f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/"
        f"{scale_env.database}",
    }
    runner = CliRunner()
    doctor = runner.invoke(app, ["doctor"], env=down)
    assert doctor.exit_code == EXIT_UNAVAILABLE, doctor.output
    assert "profile: scale" in doctor.output
    assert "FAIL PostgreSQL" in doctor.output and "fix:" in doctor.output
    for command in (
        ["apply"],
        ["materialize"],
        ["train", "--spec", "next_day_up"],
        ["predict", "--online", "--entity", "symbol=AAA"],
        ["tune-worker", "--study", "next_day_up-seed42"],
    ):
        result = runner.invoke(app, command, env=down)
        assert result.exit_code == EXIT_UNAVAILABLE, (command, result.output)
        assert f"127.0.0.1:{proxy.port}" in result.output, (command, result.output)
        assert "is unavailable" in result.output and "Fix:" in result.output
        assert "Traceback" not in result.output
    # Nothing reached the real database: no table created, nothing registered in Feast's.
    assert state() == before


@pytest.mark.parametrize("kind", ["http", "postgresql"])
def test_training_fails_fast_when_mlflow_tracking_is_unreachable(kind: str, tmp_path: Path) -> None:
    port = closed_port()
    uri = {
        "http": f"http://127.0.0.1:{port}",
        "postgresql": f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow",
    }[kind]
    env = {"FEATURESTACK_DATA_DIR": str(tmp_path / "data"), "MLFLOW_TRACKING_URI": uri}
    start = time.monotonic()
    result = CliRunner().invoke(app, ["train", "--spec", "next_day_up"], env=env)
    elapsed = time.monotonic() - start
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "MLflow tracking" in result.output and f"127.0.0.1:{port}" in result.output
    assert "MLFLOW_TRACKING_URI" in result.output  # the fix
    # Bounded: MLflow alone retries a dead database for ≈ 200 s and HTTP for minutes.
    assert elapsed < 30, f"train gave up after {elapsed:.0f} s"
    assert not (tmp_path / "data" / "mlflow").exists()  # nothing logged or registered anywhere
