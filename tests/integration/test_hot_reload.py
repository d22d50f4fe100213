"""Hot reload through the real app, MLflow registry and Feast online store: the server follows
the registry's aliases while requests keep coming, and a version that cannot be loaded leaves
the old one serving (models_py/watcher.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from featurestack.core.settings import Settings
from models_py.serving import ServeConfig
from tests.conftest import PipelineRun, copy_of_pipeline

MODEL = "next_day_up"


@dataclass
class Registry:
    settings: Settings
    symbols: list[str]


@pytest.fixture(scope="module")
def registry(pipeline: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A copy of the pipeline's data with a second, worse version registered as challenger."""
    from models_py.spec import load_spec
    from models_py.train import train

    settings = copy_of_pipeline(pipeline, tmp_path_factory.mktemp("reload"))
    worse = load_spec(MODEL).model_dump()
    worse.update(tuning=None, params={"n_estimators": 5, "num_leaves": 3, "learning_rate": 0.05})
    result = train(settings, type(load_spec(MODEL))(**worse))
    assert result.alias == "challenger", result.decision
    symbols = pd.read_parquet(settings.published_table("feat_symbol__daily"))["symbol"]
    return Registry(settings, sorted(symbols.unique())[:5])


def _wait_for(check: object, what: str, seconds: float = 180) -> None:
    """Poll until ``check()`` is true (a deadline, so a broken watcher fails the test)."""
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not {what} within {seconds} s")
        time.sleep(0.1)


def _champion(http: TestClient) -> str:
    return http.get("/models").json()[0]["champion"]["version"]


def test_a_promoted_version_is_swapped_in_without_a_failed_request(registry: Registry) -> None:
    import mlflow

    from models_py.registry import promote
    from models_py.server import create_app

    config = ServeConfig(reload_seconds=0.2)
    body = {"entities": [{"symbol": s} for s in registry.symbols]}
    with TestClient(create_app(registry.settings, config)) as http:
        client = mlflow.MlflowClient()
        old = _champion(http)
        new = str(client.get_model_version_by_alias(MODEL, "challenger").version)
        statuses: list[int] = []
        seen: list[str] = []
        stop = threading.Event()

        def keep_requesting() -> None:
            while not stop.is_set():
                response = http.post(f"/predict/{MODEL}", json=body)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    seen.extend(p["version"] for p in response.json()["predictions"])

        worker = threading.Thread(target=keep_requesting)
        worker.start()
        try:
            _wait_for(lambda: len(statuses) >= 3, "answer requests")
            promote(client, MODEL, new, reason="hot reload test")
            _wait_for(lambda: _champion(http) == new, "swap the new champion in")
            after = len(statuses)
            _wait_for(lambda: len(statuses) >= after + 3, "answer after the swap")
        finally:
            stop.set()
            worker.join()
        models = http.get("/models").json()[0]
        metrics = http.get("/metrics").text
    assert statuses and set(statuses) == {200}, [s for s in statuses if s != 200]
    assert seen[0] == old and seen[-1] == new
    # every request was scored by one version: old ones before, new ones after, no mix back
    assert seen == sorted(seen, key=lambda v: v == new)
    assert models["reload"]["failed"] == [] and models["since"]
    assert f'featurestack_reloads_total{{model="{MODEL}",role="champion"}} 1.0' in metrics
    assert (
        f'featurestack_served_version{{model="{MODEL}",role="champion",version="{new}"}} 1.0'
        in metrics
    )


def test_a_version_that_fails_to_load_keeps_the_old_one_serving(
    registry: Registry, tmp_path: Path
) -> None:
    import mlflow

    from models_py.server import create_app

    with TestClient(create_app(registry.settings, ServeConfig(reload_seconds=0.2))) as http:
        client = mlflow.MlflowClient()
        serving = _champion(http)
        empty = tmp_path / "no_model_here"
        empty.mkdir()
        broken = client.create_model_version(MODEL, source=str(empty))
        client.set_registered_model_alias(MODEL, "champion", broken.version)
        try:
            _wait_for(
                lambda: http.get("/models").json()[0]["reload"]["failed"],
                "report the version that failed to load",
            )
            models = http.get("/models").json()[0]
            response = http.post(f"/predict/{MODEL}", json={"entities": [{"symbol": "X"}]})
            metrics = http.get("/metrics").text
        finally:
            client.set_registered_model_alias(MODEL, "champion", serving)
    assert models["champion"]["version"] == serving
    [failure] = models["reload"]["failed"]
    assert failure["role"] == "champion" and failure["version"] == str(broken.version)
    assert response.status_code == 200
    assert response.json()["predictions"][0]["version"] == serving
    assert f'featurestack_reload_errors_total{{model="{MODEL}",role="champion"}} 1.0' in metrics
