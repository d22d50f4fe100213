"""The model server against its own OpenAPI document, fuzzed by schemathesis (property-based,
on Hypothesis): the real app under uvicorn on 127.0.0.1, on the session pipeline's Feast
online store and MLflow registry. Every answer must be documented (status, content type,
body schema), and no request, however malformed, may get a 5xx. Bounded: a fixed number of
examples per operation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from featurestack.core.settings import Settings
from tests.conftest import PipelineRun

MODEL = "next_day_up"


def serving_copy(pipeline: PipelineRun, folder: Path) -> Settings:
    """The pipeline's Feast, MLflow and published state (linked, read-only here) with a
    prediction log of this test's own."""
    data = folder / "data"
    data.mkdir(parents=True)
    for name in ("feast", "mlflow", "published"):
        (data / name).symlink_to(pipeline.settings.data_dir / name)
    return Settings(data, pipeline.settings.raw_dir, pipeline.settings.mlflow_tracking_uri)


@pytest.fixture(scope="module")
def api(pipeline: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app (models_py.server.create_app) under uvicorn, on a free loopback port."""
    import uvicorn

    from models_py.server import create_app
    from models_py.serving import ServeConfig

    settings = serving_copy(pipeline, tmp_path_factory.mktemp("fuzz"))
    app = create_app(settings, ServeConfig(max_entities=20, max_body_bytes=4096))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def api_schema(api: str):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(f"{api}/openapi.json")


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_every_answer_is_documented_and_no_request_gets_a_5xx(api_schema, api: str) -> None:  # type: ignore[no-untyped-def]
    """Each operation of the document, fuzzed (schemathesis's pytest plugin predates pytest 9's
    node ids, so operations are driven here with Hypothesis directly)."""
    from hypothesis import given

    labels = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(base_url=api, checks=CHECKS)

        fuzz()
    assert "POST /predict/{model}" in labels and "GET /metrics" in labels


def test_the_document_lists_served_models_and_metrics_as_text(api: str) -> None:
    doc = httpx.get(f"{api}/openapi.json").json()
    (parameter,) = doc["paths"]["/predict/{model}"]["post"]["parameters"]
    assert parameter["name"] == "model" and parameter["schema"]["enum"] == [MODEL]
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    assert httpx.get(f"{api}/metrics").headers["content-type"].startswith("text/plain")
    errors = doc["paths"]["/predict/{model}"]["post"]["responses"]["422"]["content"]
    assert errors["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.mark.parametrize("request_id", [[None, None], 7, {"id": "x"}])
def test_a_request_id_that_is_not_a_string_is_refused(api: str, request_id: object) -> None:
    body = {"entities": [{"symbol": "AAA"}], "request_id": request_id}
    answer = httpx.post(f"{api}/predict/{MODEL}", json=body)
    assert answer.status_code == 422, answer.text
    assert "request_id must be a string" in answer.json()["error"]
    given = httpx.post(f"{api}/predict/{MODEL}", json={**body, "request_id": "r-1"})
    assert given.status_code == 200 and given.json()["request_id"] == "r-1"
