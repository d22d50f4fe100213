"""Hot reload through the real app, MLflow registry and Feast online store: the server follows
the registry's aliases while requests keep coming, and a version that cannot be loaded leaves
the old one serving (models_py/watcher.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from featurestack.core.errors import UsageError
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
    return Registry(settings, sorted(symbols.unique()))


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


# -- challenger deployments (models_py/deployments.py) -------------------------------------


def _publish_labels(settings: Settings, labels: dict[tuple[str, pd.Timestamp], int]) -> None:
    """Labels published after the predictions (what the next pipeline run does): rows of the
    label model for these (symbol, event time), replacing any row it had for them."""
    folder = settings.published_table("lbl_next_day_up")
    frame = pd.read_parquet(folder)
    stamps = pd.to_datetime(frame["event_timestamp"], utc=True)
    keep = ~pd.Series(
        [(s, t) in labels for s, t in zip(frame["symbol"], stamps, strict=True)],
        index=frame.index,
    )
    new = pd.DataFrame(
        {
            "symbol": [s for s, _ in labels],
            "event_timestamp": [t for _, t in labels],
            "next_day_up": list(labels.values()),
        }
    )
    new = new.astype({c: frame[c].dtype for c in new.columns})
    out = pd.concat([frame[keep], new], ignore_index=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    out.to_parquet(folder / "all.parquet", index=False)


def _serve_deployment(registry: Registry, version: str, mode: str, requests: int = 3) -> None:
    """A server (challenger off in its config) that picks the deployment up, then answers
    ``requests`` requests for every symbol; its log is flushed when it stops."""
    from models_py.server import create_app

    body = {"entities": [{"symbol": s} for s in registry.symbols]}
    with TestClient(create_app(registry.settings, ServeConfig(reload_seconds=0.2))) as http:

        def deployed() -> bool:
            served = http.get("/models").json()[0]
            return bool(
                served["challenger_mode"] == mode
                and served["challenger"]
                and served["challenger"]["version"] == version
            )

        _wait_for(deployed, f"serve v{version} in {mode}")
        if mode == "shadow":
            _wait_for(
                lambda: (http.get("/health").json()["shadow"] or {}).get("process") == "ready",
                "start the shadow process",
            )
        for _ in range(requests):
            response = http.post(f"/predict/{MODEL}", json=body)
            assert response.status_code == 200, response.text


def _other_version(client: Any) -> tuple[str, str]:
    """(champion, the newest other version with a training run: the fixture's two versions,
    whichever is champion after the tests before)."""
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    trained = [
        int(v.version)
        for v in client.search_model_versions(f"name = '{MODEL}'")
        if v.run_id and str(v.version) != champion
    ]
    return champion, str(max(trained))


def test_a_shadow_deployment_is_served_then_promoted_on_labelled_traffic(
    registry: Registry,
) -> None:
    import mlflow

    from models_py import deployments
    from models_py.prediction_log import expand, read_log

    client = mlflow.MlflowClient()
    champion, other = _other_version(client)
    record = deployments.deploy(registry.settings, MODEL, other, "shadow", days=7)
    assert record.champion_version == champion and record.running
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == other
    _serve_deployment(registry, other, "shadow")

    since = datetime.fromisoformat(record.started)
    log = read_log(registry.settings.prediction_log_dir, MODEL, since=since)
    log = pd.concat([log, expand(log, "entity")], axis=1)
    assert set(log["role"]) == {"champion", "shadow"}
    # labels that the challenger ranks perfectly: it must win on them
    shadow = log[log["role"] == "shadow"]
    assert shadow["score"].notna().all(), shadow[["symbol", "score", "feature_time"]]
    first = shadow.drop_duplicates("symbol")
    assert len(first) == len(registry.symbols)
    # two symbols the arms order differently: labelled so that the challenger is right
    # (ROC AUC 1 on them) and the champion wrong (0); the other symbols stay unlabelled
    champ = log[log["role"] == "champion"].drop_duplicates("symbol").set_index("symbol")["score"]
    chall = first.set_index("symbol")["score"]
    # (a tie of one arm where the other orders rightly also favours the challenger: 0.5 vs 0
    # or 1 vs 0.5)
    pairs = sorted(
        (
            (a, b)
            for a in chall.index
            for b in chall.index
            if (chall[a] >= chall[b] and champ[a] < champ[b])
            or (chall[a] > chall[b] and champ[a] <= champ[b])
        ),
        key=lambda p: bool(chall[p[0]] == chall[p[1]] or champ[p[0]] == champ[p[1]]),
    )
    assert pairs, f"champion and challenger rank every symbol alike: {champ}, {chall}"
    up, down = pairs[0]
    positive = {up: 1, down: 0}
    labels = {
        (r.symbol, pd.Timestamp(r.feature_time)): positive[r.symbol]
        for r in log.drop_duplicates(["symbol", "feature_time"]).itertuples()
        if r.symbol in positive
    }
    _publish_labels(registry.settings, labels)

    [judged] = deployments.evaluate(registry.settings, MODEL, min_labels=5)
    assert judged.status == "promoted", (judged.reason, judged.labelled_rows, labels, log)
    assert judged.labelled_rows == {"champion": 2 * 3, "challenger": 2 * 3}
    assert judged.scores["challenger"] > judged.scores["champion"]  # type: ignore[operator]
    assert "roc_auc" in judged.reason and "labelled shadow traffic" in judged.reason
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == other
    tags = client.get_model_version(MODEL, other).tags
    assert tags["featurestack.deployment_decision"] == "promoted"
    assert tags["featurestack.deployment_reason"] == judged.reason
    listed = deployments.table(deployments.load(registry.settings))
    assert f"{other}" in listed and "promoted" in listed


def test_a_deployment_without_labels_at_its_end_is_inconclusive(registry: Registry) -> None:
    from datetime import UTC, timedelta

    import mlflow

    from models_py import deployments

    client = mlflow.MlflowClient()
    champion, other = _other_version(client)
    start = datetime.now(UTC) + timedelta(days=400)  # a period nothing was logged in
    record = deployments.deploy(registry.settings, MODEL, other, "split", 2, 0.2, now=start)
    assert record.share == 0.2
    [early] = deployments.evaluate(registry.settings, MODEL, now=start + timedelta(days=1))
    assert early.running and "keeps running" in (early.reason or "")
    [late] = deployments.evaluate(registry.settings, MODEL, now=start + timedelta(days=3))
    assert late.status == "inconclusive" and f"v{champion} stays" in (late.reason or "")
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == champion
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias(MODEL, "challenger")
    with pytest.raises(UsageError, match="between 0 and 1"):
        deployments.deploy(registry.settings, MODEL, other, "split", 2, 1.5)


# -- online learning (models_py/online.py) -----------------------------------------------------


def test_learn_is_exactly_once_across_a_kill_and_the_blend_is_served(
    registry: Registry, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    import mlflow

    from models_py.online import CURRENT, learn, online_name
    from models_py.prediction_log import expand, read_log
    from models_py.server import create_app

    settings = registry.settings
    body = {"entities": [{"symbol": s} for s in registry.symbols]}
    with TestClient(create_app(settings, ServeConfig(reload_seconds=0.2))) as http:
        for _ in range(2):
            assert http.post(f"/predict/{MODEL}", json=body).status_code == 200
    log = read_log(settings.prediction_log_dir, MODEL)
    log = pd.concat([log, expand(log, "entity")], axis=1)
    served = log[(log["role"] != "shadow") & log["score"].notna()]
    # every logged outcome gets its label, published after the predictions
    _publish_labels(
        settings,
        {
            (r.symbol, pd.Timestamp(r.feature_time)): int(r.score > 0.5)
            for r in served.drop_duplicates(["symbol", "feature_time"]).itertuples()
        },
    )

    # killed after the new state is stored, before it is made current
    faults = tmp_path / "faults"
    env = {
        **os.environ,
        **settings.environ(),
        "FEATURESTACK_FAULT": "learn_before_alias",
        "FEATURESTACK_FAULT_DIR": str(faults),
        "FEATURESTACK_FAULT_WAIT_S": "300",
    }
    root = Path(__file__).resolve().parents[2]
    learner = subprocess.Popen(
        [sys.executable, "-m", "featurestack", "learn", "--model", MODEL], env=env, cwd=root
    )
    try:
        _wait_for(
            lambda: (faults / "learn_before_alias.reached").exists() or learner.poll() is not None,
            "reach the fault point",
            seconds=300,
        )
        assert learner.poll() is None, "learn ended before its commit point"
        os.kill(learner.pid, signal.SIGKILL)
    finally:
        learner.wait()
    client = mlflow.MlflowClient()
    orphans = client.search_model_versions(f"name = '{online_name(MODEL)}'")
    assert len(orphans) == 1
    assert CURRENT not in (client.get_registered_model(online_name(MODEL)).aliases or {})

    first = learn(settings, MODEL)
    assert first.learned == len(served) and first.total == len(served)  # nothing twice
    assert first.waiting == 0 and first.version is not None
    again = learn(settings, MODEL)
    assert (again.learned, again.version, again.total) == (0, first.version, len(served))

    with TestClient(create_app(settings, ServeConfig(reload_seconds=0.2))) as http:
        response = http.post(f"/predict/{MODEL}", json=body).json()
        models = http.get("/models").json()[0]
        metrics = http.get("/metrics").text
    assert models["online"]["version"] == first.version
    for p in response["predictions"]:
        mix = p["blend"]
        assert mix["online_version"] == first.version and mix["online_weight"] == 0.2
        expected = 0.8 * mix["batch_score"] + 0.2 * mix["online_score"]
        assert p["score"] == pytest.approx(expected)
    assert f'featurestack_blend_weight{{model="{MODEL}",part="online"}} 0.2' in metrics
    logged = read_log(settings.prediction_log_dir, MODEL)
    last = expand(logged.tail(len(registry.symbols)), "features")
    assert last["_blend"].str.contains(f"online_version={first.version}").all()
