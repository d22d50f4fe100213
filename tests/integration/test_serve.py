"""The model server through HTTP, against the real app, the real Feast online store and the
real MLflow registry of the session pipeline (a copy, with a challenger trained into it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from featurestack.core.settings import Settings
from models_py.prediction_log import PredictionLog, read_log
from models_py.serving import ModelServing, ServeConfig, entity_key, in_challenger_share
from tests.conftest import PipelineRun, copy_of_pipeline

MODEL = "next_day_up"


@dataclass
class Served:
    settings: Settings
    champion: str
    challenger: str
    symbols: list[str]


@pytest.fixture(scope="module")
def served(pipeline: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Served:
    """The pipeline's data with a second, worse version registered as challenger."""
    from models_py.spec import load_spec
    from models_py.train import train

    settings = copy_of_pipeline(pipeline, tmp_path_factory.mktemp("serve"))
    worse = load_spec(MODEL).model_dump()
    worse.update(tuning=None, params={"n_estimators": 5, "num_leaves": 3, "learning_rate": 0.05})
    result = train(settings, type(load_spec(MODEL))(**worse))
    assert result.alias == "challenger", result.decision
    symbols = sorted(
        pd.read_parquet(settings.published_table("feat_symbol__daily"))["symbol"].unique()
    )
    return Served(settings, pipeline.summary["model"]["version"], result.version, list(symbols))


def client(served: Served, **config: Any) -> TestClient:
    from models_py.server import create_app

    return TestClient(create_app(served.settings, ServeConfig(**config)))


@pytest.fixture
def fresh(served: Served, tmp_path: Path) -> Served:
    """``served`` with a prediction log of its own (tests count what they logged)."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("feast", "mlflow", "published"):
        (data / name).symlink_to(served.settings.data_dir / name)
    return Served(
        Settings(data, served.settings.raw_dir, served.settings.mlflow_tracking_uri),
        served.champion,
        served.challenger,
        served.symbols,
    )


def test_predict_matches_online_scoring_and_every_endpoint_answers(fresh: Served) -> None:
    from models_py.predict import predict_online

    with client(fresh) as http:
        response = http.post(
            f"/predict/{MODEL}", json={"entities": [{"symbol": s} for s in fresh.symbols]}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == MODEL and body["request_id"]
        predictions = body["predictions"]
        assert [p["entity"]["symbol"] for p in predictions] == fresh.symbols
        assert {p["role"] for p in predictions} == {"champion"}
        assert {p["version"] for p in predictions} == {fresh.champion}
        expected = predict_online(fresh.settings, MODEL, [{"symbol": s} for s in fresh.symbols])
        assert [p["score"] for p in predictions] == pytest.approx(
            expected["score"].tolist(), rel=1e-9
        )
        assert [p["decision"] for p in predictions] == expected["decision"].tolist()
        fresh_views = predictions[0]["freshness"]
        assert set(fresh_views) == {"symbol_daily", "market_daily"}
        assert fresh_views["symbol_daily"]["status"] == "PRESENT"
        assert fresh_views["symbol_daily"]["age_seconds"] > 0

        unknown = http.post(f"/predict/{MODEL}", json={"entities": [{"symbol": "NOPE"}]}).json()
        assert unknown["predictions"][0]["score"] is None  # not in the store: no score, no error
        assert unknown["predictions"][0]["freshness"]["symbol_daily"]["status"] == "NOT_FOUND"

        health = http.get("/health").json()
        assert health["status"] == "ok" and health["models"] == {MODEL: fresh.champion}
        models = http.get("/models").json()
        assert models[0]["keys"] == ["symbol"] and models[0]["champion"]["fast_path"] is True
        assert models[0]["champion"]["feature_service"] == "next_day_up_v1"
        openapi = http.get("/openapi.json").json()
        assert "/predict/{model}" in openapi["paths"]
        assert "entities" in str(openapi["paths"]["/predict/{model}"]["post"]["requestBody"])
        assert http.get("/docs").status_code == 200
        http.post(f"/predict/{MODEL}", json={"entities": [{"sym": "AAA"}]})
        metrics = http.get("/metrics").text
    labels = f'model="{MODEL}",role="champion",version="{fresh.champion}"'
    assert f"featurestack_requests_total{{{labels}}} 2.0" in metrics
    assert f"featurestack_predictions_total{{{labels}}} {len(fresh.symbols) + 1}.0" in metrics
    assert f"featurestack_request_seconds_count{{{labels}}} 2.0" in metrics
    assert f'featurestack_errors_total{{kind="bad_request",model="{MODEL}"}} 1.0' in metrics
    assert f'featurestack_feature_age_seconds{{model="{MODEL}",view="symbol_daily"}}' in metrics


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"entities": [{"sym": "AAA"}]}, 422, ["entities[0]", "lacks join key 'symbol'"]),
        ({"entities": [{"symbol": 7}]}, 422, ["entities[0].symbol", "must be str", "got 7"]),
        ({"entities": [{"symbol": "AAA", "close": 1.0}]}, 422, ["unknown field(s) ['close']"]),
        ({"entities": []}, 422, ["non-empty list"]),
        ({"symbols": ["AAA"]}, 422, ['{"entities"', "symbols"]),
        ([{"symbol": "AAA"}], 422, ["JSON object", "list"]),
        ({"entities": ["AAA"]}, 422, ["entities[0] must be an object"]),
        ({"entities": [{"symbol": "A"}] * 4}, 413, ["too many entities: 4 > the limit of 3"]),
    ],
)
def test_client_mistakes_get_a_4xx_naming_the_problem(
    fresh: Served, body: Any, status: int, words: list[str]
) -> None:
    with client(fresh, max_entities=3) as http:
        response = http.post(f"/predict/{MODEL}", json=body)
    assert response.status_code == status, response.text
    for word in words:
        assert word in response.json()["error"]


def test_unknown_model_malformed_and_oversized_bodies_and_the_api_key(
    fresh: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    with client(fresh, max_body_bytes=1024) as http:
        missing = http.post("/predict/no_such_model", json={"entities": [{"symbol": "AAA"}]})
        assert missing.status_code == 404
        assert "'no_such_model' is not served" in missing.json()["error"]
        assert MODEL in missing.json()["error"]
        broken = http.post(f"/predict/{MODEL}", content=b'{"entities": [')
        assert broken.status_code == 422 and "not JSON" in broken.json()["error"]
        big = http.post(f"/predict/{MODEL}", content=b"x" * 2000)
        assert big.status_code == 413 and "over the limit of 1024" in big.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"entities": ['
            yield b" " * 2000
            yield b"]}"

        chunked = http.post(f"/predict/{MODEL}", content=chunks())
        assert chunked.status_code == 413, chunked.text
        metrics = http.get("/metrics").text
    assert 'featurestack_errors_total{kind="unknown_model",model="no_such_model"} 1.0' in metrics
    assert f'featurestack_errors_total{{kind="body_too_large",model="{MODEL}"}} 2.0' in metrics

    monkeypatch.setenv("FEATURESTACK_API_KEY", "s3cret")
    with client(fresh) as http:
        entities = {"entities": [{"symbol": fresh.symbols[0]}]}
        refused = http.post(f"/predict/{MODEL}", json=entities)
        assert refused.status_code == 401 and "X-API-Key" in refused.json()["error"]
        wrong = http.post(f"/predict/{MODEL}", json=entities, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        assert http.get("/metrics").status_code == 401
        assert http.get("/health").status_code == 200  # liveness stays open
        ok = http.post(f"/predict/{MODEL}", json=entities, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200


def test_shadow_scores_every_request_never_returns_it_and_the_report_compares(
    fresh: Served,
) -> None:
    from featurestack.cli import app

    with client(fresh, default=ModelServing(challenger="shadow")) as http:
        assert http.get("/models").json()[0]["challenger"]["version"] == fresh.challenger
        ids = []
        for symbol in fresh.symbols:
            body = http.post(f"/predict/{MODEL}", json={"entities": [{"symbol": symbol}]}).json()
            assert [p["role"] for p in body["predictions"]] == ["champion"]
            assert body["predictions"][0]["version"] == fresh.champion
            ids.append(body["request_id"])
    # the app stopped: the shadow queue was scored and the log flushed
    log = read_log(fresh.settings.prediction_log_dir, MODEL)
    assert sorted(log.loc[log["role"] == "champion", "request_id"]) == sorted(ids)
    shadow = log[log["role"] == "shadow"]
    assert sorted(shadow["request_id"]) == sorted(ids)
    assert set(shadow["version"]) == {fresh.challenger}
    assert shadow["score"].notna().all()
    assert (log.groupby("request_id")["score"].nunique() == 2).all()  # two different models

    env = {k: str(v) for k, v in fresh.settings.environ().items()}
    result = CliRunner().invoke(app, ["shadow-report", "--model", MODEL, "--days", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert f"shadow pairs {len(ids)}: decision agreement" in result.output
    reports = list((fresh.settings.reports_dir / "shadow" / MODEL).glob("*.json"))
    assert len(reports) == 1


def _metrics_after_stop(http: TestClient) -> str:
    """The app's metrics once it stopped (the shadow process's last reports applied)."""
    from prometheus_client import generate_latest

    return generate_latest(http.app.state.metrics.registry).decode()  # type: ignore[attr-defined]


def test_a_clean_stop_logs_the_shadow_rows_of_every_request(
    fresh: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped while the shadow process may still be loading: it scores everything it was
    sent, flushes its own log, and its reports reach /metrics, before the server exits.

    In front of the path once the models are loaded, as MLflow puts the code logged with a
    model, an older models_py without the shadow process's module: the shadow process still
    runs the server's code."""
    import shutil

    import models_py

    old = tmp_path / "code" / "models_py"
    shutil.copytree(Path(models_py.__file__).parent, old)
    (old / "shadow_process.py").unlink()
    batches = [fresh.symbols[i : i + 3] for i in range(0, len(fresh.symbols), 3)] * 3
    http = client(fresh, default=ModelServing(challenger="shadow"))  # models loaded
    monkeypatch.syspath_prepend(str(old.parent))
    with http:
        health = http.get("/health").json()
        assert health["shadow"]["process"] in {"starting", "ready"} and health["shadow"]["pid"]
        sent = {}
        for symbols in batches:
            body = http.post(
                f"/predict/{MODEL}", json={"entities": [{"symbol": s} for s in symbols]}
            ).json()
            sent[body["request_id"]] = symbols
    metrics = _metrics_after_stop(http)
    log = read_log(fresh.settings.prediction_log_dir, MODEL)
    pairs = {
        role: sorted(
            (r, json.loads(e)["symbol"])
            for r, e in zip(part["request_id"], part["entity"], strict=True)
        )
        for role, part in log.groupby("role")
    }
    expected = sorted((r, s) for r, symbols in sent.items() for s in symbols)
    assert pairs == {"champion": expected, "shadow": expected}
    shadow = log[log["role"] == "shadow"].set_index(["request_id", "entity"])
    champion = log[log["role"] == "champion"].set_index(["request_id", "entity"])
    # the same feature service, read by the shadow process itself: the same inputs
    assert (shadow["features"] == champion.loc[shadow.index, "features"]).all()
    assert (shadow["feature_time"] == champion.loc[shadow.index, "feature_time"]).all()
    assert (shadow["time"] == champion.loc[shadow.index, "time"]).all()
    assert set(shadow["version"]) == {fresh.challenger} and shadow["score"].notna().all()
    labels = f'model="{MODEL}",role="shadow",version="{fresh.challenger}"'
    assert f"featurestack_requests_total{{{labels}}} {len(sent)}.0" in metrics
    assert f"featurestack_predictions_total{{{labels}}} {len(expected)}.0" in metrics
    assert "featurestack_shadow_dropped_total{" not in metrics


def test_a_dead_shadow_process_drops_shadow_jobs_and_the_champion_keeps_serving(
    fresh: Served,
) -> None:
    import os
    import signal

    entities = {"entities": [{"symbol": fresh.symbols[0]}]}
    with client(fresh, default=ModelServing(challenger="shadow")) as http:
        os.kill(http.get("/health").json()["shadow"]["pid"], signal.SIGKILL)
        answers = [http.post(f"/predict/{MODEL}", json=entities) for _ in range(5)]
        assert [a.status_code for a in answers] == [200] * 5
        assert {a.json()["predictions"][0]["role"] for a in answers} == {"champion"}
    metrics = _metrics_after_stop(http)
    assert f'featurestack_shadow_dropped_total{{model="{MODEL}"}} 5.0' in metrics
    assert f'featurestack_errors_total{{kind="shadow_process_died",model="{MODEL}"}} 1.0' in metrics
    log = read_log(fresh.settings.prediction_log_dir, MODEL)
    assert log["role"].value_counts().to_dict() == {"champion": 5}


def test_a_challenger_the_shadow_process_cannot_load_is_logged_and_counted(
    fresh: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """The server loaded the challenger; the shadow process loads the same version again by
    number, here one that does not exist."""
    import dataclasses

    from models_py.server import create_app
    from models_py.serving import load_served

    config = ServeConfig(default=ModelServing(challenger="shadow"))
    served = load_served(fresh.settings, config, [MODEL])
    challenger = served[MODEL].challenger
    assert challenger is not None
    served[MODEL].challenger = dataclasses.replace(
        challenger, loaded=dataclasses.replace(challenger.loaded, version="9999")
    )
    entities = {"entities": [{"symbol": fresh.symbols[0]}]}
    with TestClient(create_app(fresh.settings, config, served=served)) as http:
        assert [http.post(f"/predict/{MODEL}", json=entities).status_code for _ in range(3)] == [
            200
        ] * 3
    metrics = _metrics_after_stop(http)
    assert f'featurestack_shadow_dropped_total{{model="{MODEL}"}} 3.0' in metrics
    assert f'featurestack_errors_total{{kind="shadow_process_died",model="{MODEL}"}} 1.0' in metrics
    assert "has no version 9999" in caplog.text
    log = read_log(fresh.settings.prediction_log_dir, MODEL)
    assert log["role"].value_counts().to_dict() == {"champion": 3}


def test_split_assigns_entities_by_a_stable_hash(fresh: Served) -> None:
    share = 0.5
    entities = [{"symbol": s} for s in fresh.symbols] + [{"symbol": f"X{i:03d}"} for i in range(60)]
    with client(fresh, default=ModelServing(challenger="split", challenger_share=share)) as http:
        first = http.post(f"/predict/{MODEL}", json={"entities": entities}).json()["predictions"]
        again = http.post(f"/predict/{MODEL}", json={"entities": entities}).json()["predictions"]
        metrics = http.get("/metrics").text
    expected = [
        "challenger" if in_challenger_share(entity_key(e, ["symbol"]), share) else "champion"
        for e in entities
    ]
    assert [p["role"] for p in first] == expected == [p["role"] for p in again]
    assert 0.3 < expected.count("challenger") / len(expected) < 0.7
    versions = {p["role"]: p["version"] for p in first}
    assert versions == {"champion": fresh.champion, "challenger": fresh.challenger}
    served_by_challenger = [
        p for p in first if p["role"] == "challenger" and p["score"] is not None
    ]
    assert served_by_challenger, "some known symbols should land on the challenger"
    assert f'role="challenger",version="{fresh.challenger}"' in metrics
    log = read_log(fresh.settings.prediction_log_dir, MODEL)
    assert log["role"].value_counts().to_dict() == {
        "champion": 2 * expected.count("champion"),
        "challenger": 2 * expected.count("challenger"),
    }


def test_the_prediction_log_survives_a_restart(fresh: Served) -> None:
    entities = {"entities": [{"symbol": fresh.symbols[0]}, {"symbol": fresh.symbols[1]}]}
    ids = []
    for _ in range(2):  # two server lifetimes on the same data folder
        with client(fresh) as http:
            for _ in range(3):
                ids.append(http.post(f"/predict/{MODEL}", json=entities).json()["request_id"])
    log = read_log(fresh.settings.prediction_log_dir, MODEL)
    assert sorted(set(log["request_id"])) == sorted(ids) and len(log) == 12
    today = datetime.now(UTC).date().isoformat()
    assert (fresh.settings.prediction_log_dir / f"date={today}").is_dir()
    assert log["feature_time"].notna().all()
    assert json.loads(log["entity"].iloc[0]) == {"symbol": fresh.symbols[0]}


def _log_past_traffic(served: Served, days: int, flip: bool = False) -> int:
    """Champion and shadow rows for the service's features of the last ``days`` published days
    (so labels exist for most of them), written through the prediction log as the server
    would; ``flip`` logs 1 − score for the champion (a model that got worse)."""
    from models_py import scoring
    from models_py.monitor import load_baseline, recent_features
    from models_py.registry import load_model_version
    from models_py.serving import SHADOW

    base = load_baseline(served.settings, MODEL)
    frame = recent_features(served.settings, base, days)
    challenger = load_model_version(served.settings, MODEL, "challenger")
    shadow_scores = scoring.score(
        challenger, frame[base.features], frame[base.features].notna().any(axis=1)
    )
    log = PredictionLog(served.settings.prediction_log_dir)
    now = datetime.now(UTC)
    rows = []
    for i, row in frame.reset_index(drop=True).iterrows():
        features = {f: None if pd.isna(row[f]) else float(row[f]) for f in base.features}
        ts = row["event_timestamp"].to_pydatetime()
        score = 1 - row["score"] if flip else row["score"]
        common = (f"r{i}", now, MODEL)
        rows.append(
            (
                *common,
                base.version,
                "champion",
                {"symbol": row["symbol"]},
                features,
                ts,
                float(score),
                None,
                None,
                None,
                [],
            )
        )
        rows.append(
            (
                *common,
                challenger.version,
                SHADOW,
                {"symbol": row["symbol"]},
                features,
                ts,
                float(shadow_scores["score"].iat[i]),
                None,
                None,
                None,
                [],
            )
        )
    log.append(rows)
    log.close()
    return len(frame)


def test_shadow_report_gives_metrics_per_arm_once_labels_exist(fresh: Served) -> None:
    from models_py.shadow import shadow_report

    n = _log_past_traffic(fresh, days=20)
    report = shadow_report(fresh.settings, MODEL, days=1)
    assert report.agreement["pairs"] == n
    assert 0 < report.labelled_rows < 2 * n  # the newest day has no label yet
    assert set(report.metrics) == {"champion", "shadow"}
    assert report.metrics["champion"]["rows"] == report.labelled_rows / 2
    assert 0 <= report.metrics["shadow"]["roc_auc"] <= 1


def test_monitor_flags_a_degraded_model_on_logged_requests(fresh: Served) -> None:
    from models_py.monitor import MonitorConfig, monitor, write_report

    _log_past_traffic(fresh, days=30, flip=True)
    config = MonitorConfig(source="requests", days=1, min_rows=20, min_labels=20, exclude=["close"])
    report = monitor(fresh.settings, MODEL, config)
    perf = report.performance
    assert report.source == "requests" and perf["labelled_rows"] >= 20
    assert perf["degraded"] and perf["value"] < 0.5 < perf["holdout"]
    assert {
        "kind": "performance",
        "subject": "roc_auc",
        "degradation": perf["degradation"],
    } in report.alerts
    assert any(
        r.startswith("retrain: featurestack") or "retrain" in r
        for r in report.health["recommendations"]
    )
    assert report.health["score"] <= 60
    json_path, html_path = write_report(fresh.settings, report)
    assert json_path.exists() and html_path.read_text().count("data:image/png") >= 3


def test_on_demand_features_take_request_time_values(pipeline: PipelineRun, tmp_path) -> None:
    """A model on quote_check_v1 (an on-demand view over quote_price): the value comes with
    each entity, Feast computes the feature, a missing or mistyped value is a 422."""
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from models_py import tracking
    from models_py.server import create_app

    settings = copy_of_pipeline(pipeline, tmp_path)
    tracking.configure(settings)
    columns = ["close", "volatility_20d", "quote_vs_close", "quote_move_in_vols"]
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 4)), columns=columns)
    model = LogisticRegression().fit(X, (X["quote_vs_close"] > 0).astype(int))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict_proba(X)),
            registered_model_name="quote_check",
        )
    client_ = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    client_.set_model_version_tag(
        "quote_check", version, "featurestack.feature_service", "quote_check_v1"
    )
    client_.set_registered_model_alias("quote_check", "champion", version)
    symbol = sorted(pd.read_parquet(settings.published_table("feat_symbol__daily"))["symbol"])[0]

    app = create_app(settings, ServeConfig(), models=["quote_check"])
    with TestClient(app) as http:
        described = http.get("/models").json()[0]
        assert described["request_values"] == ["quote_price"]
        assert described["champion"]["fast_path"] is False
        up = http.post(
            "/predict/quote_check", json={"entities": [{"symbol": symbol, "quote_price": 1e6}]}
        )
        down = http.post(
            "/predict/quote_check", json={"entities": [{"symbol": symbol, "quote_price": 1e-6}]}
        )
        assert up.status_code == 200, up.text
        assert up.json()["predictions"][0]["score"] > down.json()["predictions"][0]["score"]
        missing = http.post("/predict/quote_check", json={"entities": [{"symbol": symbol}]})
        assert missing.status_code == 422 and "lacks request value 'quote_price'" in missing.text
        mistyped = http.post(
            "/predict/quote_check", json={"entities": [{"symbol": symbol, "quote_price": "high"}]}
        )
        assert mistyped.status_code == 422 and "quote_price must be float" in mistyped.text
    log = read_log(settings.prediction_log_dir, "quote_check")
    assert [json.loads(f)["quote_price"] for f in log["features"]] == [1e6, 1e-6]
