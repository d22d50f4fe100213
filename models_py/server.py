"""The model server: FastAPI routes over :mod:`models_py.serving`, Prometheus metrics, the
prediction log and shadow scoring, run by uvicorn (`featurestack serve`).

``POST /predict/{model}`` is written against Starlette's ``Request`` rather than a pydantic
body parameter: the body is read once, its size bounded, parsed with ``json`` and checked by
:meth:`ServedModel.check`, so every client mistake becomes a 4xx whose message names the
field, the rule and the fix (FastAPI's generic validation errors do not say which entity
lacks which key), and the response is serialised once. The documented shapes are still in the
OpenAPI schema (``/docs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import generate_latest
from pydantic import BaseModel

from featurestack.core.errors import FeaturestackError, ServiceUnavailable
from featurestack.core.settings import Settings
from models_py.contract import CHALLENGER, CHAMPION
from models_py.prediction_log import PredictionLog
from models_py.server_metrics import Metrics
from models_py.serving import (
    RequestError,
    ServeConfig,
    ServedModel,
    entity_key,
    in_challenger_share,
    load_served,
    log_row,
)
from models_py.shadow_process import ShadowProcess
from models_py.spec import spec_of_model
from models_py.watcher import RegistryWatcher, publish_versions

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# -- documented shapes (OpenAPI only; requests are checked by ServedModel.check) ------------


class PredictRequest(BaseModel):
    """Entities to score: each object holds the model's join keys (``GET /models``) and, for
    services with on-demand features, the request-time values they need."""

    entities: list[dict[str, Any]]
    request_id: str | None = None


class Prediction(BaseModel):
    entity: dict[str, Any]
    role: str
    version: str
    score: float | None
    decision: bool | None = None
    interval: dict[str, float] | None = None
    out_of_range: list[str]
    freshness: dict[str, dict[str, Any]]
    #: with an online model (featurestack learn): weights, online version, both scores
    blend: dict[str, Any] | None = None


class PredictResponse(BaseModel):
    request_id: str
    model: str
    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    """Every refusal: one message naming the input, the rule and the fix."""

    error: str


def _documented_error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


# -- middleware -------------------------------------------------------------------------------


class Guard:
    """Pure ASGI middleware (no per-request task like BaseHTTPMiddleware): bounds the body size
    (413) and, when an API key is configured, requires it in the header (401)."""

    OPEN = ("/health", "/docs", "/openapi.json", "/redoc")

    def __init__(
        self, app: ASGIApp, max_body: int, api_key: str | None, header: str, metrics: Metrics
    ) -> None:
        self.app, self.max_body, self.metrics = app, max_body, metrics
        self.api_key = api_key.encode() if api_key is not None else None
        self.header_name = header
        self.header = header.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        model = path.rsplit("/", 1)[-1] if path.startswith("/predict/") else ""
        headers = dict(scope["headers"])
        if (
            self.api_key is not None
            and not path.startswith(self.OPEN)
            # constant time: how long a refusal takes says nothing about the key
            and not hmac.compare_digest(headers.get(self.header, b""), self.api_key)
        ):
            message = (
                f"missing or wrong {self.header_name} header: this server requires the API key "
                "set in its environment"
            )
            await self._refuse(send, model, "unauthorized", 401, message)
            return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            message = (
                f"body of {int(length)} bytes is over the limit of {self.max_body} "
                "(serve config max_body_bytes); send fewer entities per request"
            )
            await self._refuse(send, model, "body_too_large", 413, message)
            return
        await self.app(scope, _bounded(receive, self.max_body), send)

    async def _refuse(self, send: Send, model: str, kind: str, status: int, message: str) -> None:
        self.metrics.error(model, kind)
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _versions(served: dict[str, ServedModel]) -> list[Any]:
    """Every loaded version (champions and challengers)."""
    return [v for m in served.values() for v in (m.champion, m.challenger) if v is not None]


def _bounded(receive: Receive, limit: int) -> Receive:
    """A chunked body (no Content-Length) is counted as it arrives."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise RequestError(
                    f"body is over the limit of {limit} bytes (serve config max_body_bytes)",
                    status=413,
                    kind="body_too_large",
                )
        return message

    return wrapped


# -- the app ----------------------------------------------------------------------------------


def request_example(served: dict[str, ServedModel]) -> dict[str, Any]:
    """A request body for the first served model, from its own keys and request values (the
    OpenAPI page's example: the project's entities, not a demo's)."""
    placeholder = {str: "…", int: 0, float: 0.0, bool: False}
    for model in served.values():
        fields = {**model.champion.key_types, **model.champion.request_fields}
        return {"entities": [{k: placeholder.get(kind, "…") for k, kind in fields.items()}]}
    return {"entities": [{}]}


def create_app(
    settings: Settings,
    config: ServeConfig | None = None,
    models: list[str] | None = None,
    served: dict[str, ServedModel] | None = None,
) -> FastAPI:
    """Load the models (once) and build the app; the prediction log and shadow scorers start
    with the app and are flushed when it stops."""
    config = config or ServeConfig()
    served = served if served is not None else load_served(settings, config, models)
    metrics = Metrics(settings)
    log = PredictionLog(
        settings.prediction_log_dir, config.log_flush_rows, config.log_flush_seconds
    )
    in_shadow = {name: m for name, m in served.items() if m.mode == "shadow"}
    shadow: ShadowProcess | None = None
    started = datetime.now(UTC)
    watcher = RegistryWatcher(settings, served, metrics, config)
    publish_versions(metrics, served)

    async def follow_registry() -> None:
        """Hot reload (models_py/watcher.py): poll the aliases, swap what changed; a challenger
        in shadow that changed gets a new shadow process (the old one drains, then stops)."""
        nonlocal shadow, in_shadow
        while True:
            await asyncio.sleep(config.reload_seconds)
            try:
                changes = await asyncio.to_thread(watcher.poll)
            except Exception as exc:  # the registry did not answer: serve on, try again
                logger.warning("hot reload: could not read the registry: %s", exc)
                metrics.error("", "reload_poll_failed")
                continue
            wanted = {name: m for name, m in served.items() if m.mode == "shadow"}
            versions = {n: m.challenger.version for n, m in wanted.items() if m.challenger}
            current = {n: m.challenger.version for n, m in in_shadow.items() if m.challenger}
            if changes and versions != current:
                old = shadow
                shadow = (
                    await asyncio.to_thread(ShadowProcess, settings, wanted, config, metrics)
                    if wanted
                    else None
                )
                in_shadow = wanted
                app.state.shadow = shadow
                if old is not None:
                    await asyncio.to_thread(old.close)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Models, Feast's registry and MLflow's objects are loaded once and live as long as the
        # server: freezing them keeps the cyclic GC from re-scanning ~10^6 objects in the middle
        # of a request (a full collection costs several ms, the p99 budget is 10 ms).
        nonlocal shadow
        gc.collect()
        gc.freeze()
        log.start()
        if in_shadow:
            # the challengers score in a process of their own (models_py/shadow_process.py)
            shadow = ShadowProcess(settings, in_shadow, config, metrics)
        app.state.shadow = shadow
        follower = asyncio.create_task(follow_registry()) if config.reload_seconds > 0 else None
        try:
            yield
        finally:
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
            if shadow is not None:
                shadow.close()
                shadow = None
            log.close()
            for store in {id(s.store): s.store for s in _versions(served)}.values():
                await store.close()  # the online store's async clients (redis.asyncio)
            gc.unfreeze()  # collectable again once the server stops (tests start many apps)

    app = FastAPI(
        title="featurestack model server",
        description="Champion predictions from online features; challengers in shadow or on a "
        "share of traffic; every prediction logged. See docs/serving.md.",
        lifespan=lifespan,
    )
    app.state.log, app.state.served, app.state.metrics = log, served, metrics
    app.state.watcher = watcher

    @app.exception_handler(FeaturestackError)
    async def _error(request: Request, exc: FeaturestackError) -> Response:
        # Every error of ours knows its status: a client mistake (RequestError) is a 4xx
        # naming the field; an online store (Redis) that did not answer within its time
        # budget is a 503 the client may retry.
        model = request.path_params.get("model", "")
        headers = None
        if isinstance(exc, ServiceUnavailable):
            kind, headers = "store_unavailable", {"Retry-After": "1"}
        else:
            kind = getattr(exc, "kind", type(exc).__name__)
        metrics.error(model, kind)
        return JSONResponse({"error": str(exc)}, status_code=exc.http_status, headers=headers)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and what is loaded."""
        return {
            "status": "ok",
            "started": started.isoformat(),
            "models": {n: m.champion.version for n, m in served.items()},
            "prediction_log_pending": log.pending,
            "shadow": None
            if shadow is None
            else {"process": shadow.state, "pid": shadow.pid, "pending": shadow.pending},
        }

    @app.get(
        "/models", responses={401: _documented_error("API key missing or wrong (when one is set)")}
    )
    async def list_models() -> list[dict[str, Any]]:
        """Every served model: keys, versions, feature service, challenger mode, since when
        this pair serves, and versions the hot reload failed to load (the old pair serves)."""
        return [
            {
                **m.describe(),
                "reload": {
                    "every_seconds": config.reload_seconds or None,
                    "last_poll": watcher.last_poll,
                    "failed": watcher.describe(name),
                },
            }
            for name, m in served.items()
        ]

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format, version 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            401: _documented_error("API key missing or wrong (when one is configured)"),
        },
    )
    async def prometheus() -> Response:
        """Prometheus exposition format."""
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    @app.post(
        "/predict/{model}",
        responses={
            200: {"model": PredictResponse},
            401: _documented_error("API key missing or wrong (when one is configured)"),
            404: _documented_error("no such model is served"),
            413: _documented_error("body or entity count over the configured limit"),
            422: _documented_error("missing or mistyped key, unknown field, malformed body"),
            503: _documented_error("the online store did not answer within its time budget"),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": PredictRequest.model_json_schema(),
                        "example": request_example(served),
                    }
                },
            }
        },
    )
    async def predict(model: str, request: Request) -> Response:
        """Score entities with the champion (challenger: shadow or a share of traffic)."""
        t0 = time.perf_counter()
        target = served.get(model)
        if target is None:
            raise RequestError(
                f"model {model!r} is not served; served: {sorted(served)}. Train it "
                f"(featurestack train --spec {spec_of_model(model)}) and restart the server (a new "
                "model name needs a restart; new versions are picked up by hot reload)",
                status=404,
                kind="unknown_model",
            )
        body = await request.body()
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"the body is not JSON ({exc})", kind="malformed_body") from None
        rows = target.check(payload, config.max_entities)
        request_id = payload.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            raise RequestError(
                f"request_id must be a string (or absent: one is made), got {request_id!r}",
                kind="mistyped_request_id",
            )
        request_id = request_id or uuid.uuid4().hex
        now = datetime.now(UTC)
        champion, challenger = target.champion, target.challenger
        roles = [CHAMPION] * len(rows)
        if target.mode == "split":
            share = target.serving.challenger_share
            keys = champion.keys
            roles = [
                CHALLENGER if in_challenger_share(entity_key(r, keys), share) else CHAMPION
                for r in rows
            ]
        feats = await champion.read_async(rows, now)
        champ_idx = [i for i, r in enumerate(roles) if r == CHAMPION]
        outputs: list[dict[str, Any] | None] = [None] * len(rows)
        for i, out in zip(champ_idx, champion.score(feats, champ_idx), strict=True):
            outputs[i] = out
        target.blend(feats, champ_idx, outputs)  # with the online model, when one is learned
        by_role = {CHAMPION: (champion, feats)}
        if len(champ_idx) < len(rows):
            assert challenger is not None
            idx = [i for i, r in enumerate(roles) if r == CHALLENGER]
            if challenger.service == champion.service:
                cfeats = feats
                scored = challenger.score(cfeats, idx)
            else:
                cfeats = await challenger.read_async(rows, now)
                scored = challenger.score(cfeats, idx)
            for i, out in zip(idx, scored, strict=True):
                outputs[i] = out
            by_role[CHALLENGER] = (challenger, cfeats)
        predictions, log_rows = [], []
        for i, row in enumerate(rows):
            version, f = by_role[roles[i]]
            result = outputs[i]
            assert result is not None
            predictions.append(
                {
                    "entity": {k: row[k] for k in champion.keys},
                    "role": roles[i],
                    "version": version.version,
                    **result,
                    "freshness": version.freshness(f, i, now),
                }
            )
            log_rows.append(log_row(request_id, now, model, version, roles[i], row, f, i, result))
        log.append(log_rows)
        if shadow is not None and model in in_shadow:
            shadow.submit(model, request_id, now, rows)
        for view in champion.views:
            stamps = [s for s in feats.columns.get(f"{view}__event_timestamp", []) if s]
            if stamps:
                metrics.served_event_time[(model, view)] = max(stamps)
        body_out = orjson.dumps(
            {"request_id": request_id, "model": model, "predictions": predictions}
        )
        elapsed = time.perf_counter() - t0
        for role, (version, _) in by_role.items():
            n = roles.count(role)
            if n:
                metrics.observe(model, version.version, role, n, elapsed)
        return Response(body_out, media_type="application/json")

    def openapi() -> dict[str, Any]:
        """FastAPI's document, with the model path parameter listing the served models (the
        handler still answers 404 naming them for any other name)."""
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for parameter in doc["paths"]["/predict/{model}"]["post"].get("parameters", []):
                if parameter["name"] == "model":
                    parameter["schema"]["enum"] = sorted(served)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(
        Guard,
        max_body=config.max_body_bytes,
        api_key=os.environ.get(config.api_key_env) or None,
        header=config.api_key_header,
        metrics=metrics,
    )
    return app
