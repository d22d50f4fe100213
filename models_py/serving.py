"""What the model server does per request, without the HTTP: check the entities, read their
features online, score with the champion (and the challenger), describe freshness.

Everything slow happens once, in :func:`load_served`: the versions holding ``champion`` and
``challenger`` are loaded from MLflow, each feature service is resolved through Feast's
registry into an :class:`~featurestack.infra.online_reader.OnlineReader`, and the model is
compiled into its fast path when it has one (models_py/scoring.py ``compile_predictor``: a
LightGBM booster behind our plugin, optionally calibrated, checked against the model). Other
models are scored through :func:`models_py.scoring.score`, the path batch scoring uses.
Services with on-demand views go through Feast's ``get_online_features`` (request-time values
in the entity rows).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from featurestack.core.errors import NotFound, UsageError
from featurestack.core.settings import Settings
from models_py.contract import CHALLENGER, CHAMPION
from models_py.registry import load_model_version
from models_py.scoring import CompiledScorer, LoadedVersion, compile_predictor, output_items, score

if TYPE_CHECKING:
    from feast import FeatureStore

SHADOW = "shadow"


class ModelServing(BaseModel):
    """How one model is served."""

    model_config = ConfigDict(extra="forbid")

    #: ``off``: the champion only; ``shadow``: the challenger scores every request, never
    #: returned; ``split``: the challenger answers ``challenger_share`` of the entities
    challenger: Literal["off", "shadow", "split"] = "off"
    challenger_share: float = Field(0.1, ge=0, le=1)


class ServeConfig(BaseModel):
    """`featurestack serve` settings (YAML, ``--config``; command-line options override)."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    #: models to serve (default: every registered model with a champion)
    models: dict[str, ModelServing] = {}
    #: challenger mode for models not listed in ``models``
    default: ModelServing = ModelServing()
    max_entities: int = Field(100, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=256)
    #: environment variable holding the API key; when it is set, requests need the header
    api_key_env: str = "FEATURESTACK_API_KEY"
    api_key_header: str = "X-API-Key"
    log_flush_seconds: float = Field(1.0, gt=0)
    log_flush_rows: int = Field(5000, ge=1)
    #: shadow scoring (a process of its own, models_py/shadow_process.py): requests per batch
    #: at most, and how often the server hands queued requests over
    shadow_batch: int = Field(256, ge=1)
    shadow_wait_seconds: float = Field(0.05, gt=0)
    #: requests waiting for the shadow process at most; beyond, they are dropped and counted
    shadow_queue: int = Field(10_000, ge=1)
    #: on a clean stop, how long the server waits for the shadow process to score what it was
    #: sent and flush its log (it may still be loading the challenger)
    shadow_stop_seconds: float = Field(120.0, gt=0)
    #: hot reload: how often the server reads the registry's aliases and swaps a new champion
    #: or challenger in without a restart (models_py/watcher.py); 0 turns it off
    reload_seconds: float = Field(30.0, ge=0)

    def serving(self, model: str) -> ModelServing:
        return self.models.get(model, self.default)


class RequestError(UsageError):
    """A client mistake: ``http_status`` is the answer's status, ``kind`` the error counter's
    label."""

    def __init__(self, message: str, status: int = 422, kind: str = "bad_request") -> None:
        super().__init__(message)
        self.http_status, self.kind = status, kind

    @property
    def status(self) -> int:
        return self.http_status


def in_challenger_share(entity_key: str, share: float) -> bool:
    """Stable traffic split: the same entity always lands on the same side, in every process
    and after restarts (a keyed BLAKE2b hash, not Python's salted ``hash``)."""
    if share <= 0:
        return False
    digest = hashlib.blake2b(entity_key.encode(), digest_size=8, person=b"fs-split").digest()
    return int.from_bytes(digest, "big") < share * 2**64


def entity_key(row: dict[str, Any], keys: list[str]) -> str:
    return "|".join(f"{k}={row[k]}" for k in keys)


# -- one served version --------------------------------------------------------------------------


@dataclass
class Features:
    """One online read: the columns of the reader (keys, features, per-view status and event
    time), for ``n`` entities in request order."""

    columns: dict[str, list[Any]]
    n: int


@dataclass
class Served:
    """One loaded version (champion or challenger) and how to feed it."""

    role: str
    loaded: LoadedVersion
    service: str
    keys: list[str]
    key_types: dict[str, type]
    #: request-time values the service's on-demand views need: name → Python type
    request_fields: dict[str, type]
    views: list[str]
    reader: Any  # OnlineReader, or None for services Feast must compute (on-demand views)
    store: FeatureStore
    #: the compiled fast path (models_py/scoring.py), when the model allows one
    predictor: CompiledScorer | None
    features: list[str] = field(init=False)
    task: str = field(init=False)

    def __post_init__(self) -> None:
        self.features = self.loaded.features
        self.task = "classifier" if hasattr(self.loaded.model, "predict_proba") else "regressor"

    @property
    def version(self) -> str:
        return self.loaded.version

    def read(self, rows: list[dict[str, Any]], now: datetime) -> Features:
        """The service's features for ``rows`` (keys plus any request-time values)."""
        if self.reader is not None:
            return Features(self.reader.read(rows, now), len(rows))
        service = self.store.get_feature_service(self.service)
        columns = self.store.get_online_features(features=service, entity_rows=rows).to_dict()
        return Features(columns, len(rows))

    async def read_async(self, rows: list[dict[str, Any]], now: datetime) -> Features:
        """:meth:`read` for the server's event loop: our reader's async read, or Feast's
        ``get_online_features_async`` for services with on-demand views."""
        if self.reader is not None:
            return Features(await self.reader.read_async(rows, now), len(rows))
        service = self.store.get_feature_service(self.service)
        response = await self.store.get_online_features_async(features=service, entity_rows=rows)
        return Features(response.to_dict(), len(rows))

    def score(self, feats: Features, rows: list[int] | None = None) -> list[dict[str, Any]]:
        """Outputs for the given entity positions (default: all), in that order."""
        idx = list(range(feats.n)) if rows is None else rows
        if not idx:
            return []
        cols = feats.columns
        if self.predictor is not None:
            X = np.array([[cols[f][i] for f in self.features] for i in idx], dtype="float64")
            return self.predictor.items(X)
        frame = pd.DataFrame({c: [cols[c][i] for i in idx] for c in self.features})
        return output_items(score(self.loaded, frame, frame.notna().any(axis=1)))

    def freshness(self, feats: Features, i: int, now: datetime) -> dict[str, Any]:
        """Per feature view: status and event time of the row served, and its age."""
        out = {}
        for view in self.views:
            stamps = feats.columns.get(f"{view}__event_timestamp")
            if stamps is None:
                continue
            ts = stamps[i]
            out[view] = {
                "status": feats.columns[f"{view}__status"][i],
                "event_timestamp": None if ts is None else ts.isoformat(),
                "age_seconds": None if ts is None else round((now - ts).total_seconds(), 3),
            }
        return out

    def feature_time(self, feats: Features, i: int) -> datetime | None:
        """The newest event time among the views (the label row this prediction is about)."""
        stamps = [
            feats.columns[f"{v}__event_timestamp"][i]
            for v in self.views
            if f"{v}__event_timestamp" in feats.columns
        ]
        present = [s for s in stamps if s is not None]
        return max(present) if present else None

    def inputs(self, feats: Features, i: int) -> dict[str, Any]:
        return {f: feats.columns[f][i] for f in self.features if f in feats.columns}


def _python_type(dtype: Any) -> type:
    name = str(dtype).lower()
    if "string" in name:
        return str
    if "bool" in name:
        return bool
    if "int" in name:
        return int
    return float


def load_version(
    settings: Settings, store: FeatureStore, name: str, alias: str, version: str | None = None
) -> Served:
    """Load one version by alias (or exactly ``version``, in the role ``alias`` gives) and
    resolve its feature service (once, at startup)."""
    from featurestack.infra.online_reader import OnlineReader

    loaded = load_model_version(settings, name, alias, store=store, version=version)
    try:
        service = store.get_feature_service(loaded.feature_service)
    except Exception as exc:
        raise NotFound(
            f"{name} v{loaded.version}: feature service {loaded.feature_service!r} is not "
            f"in the Feast registry; run `featurestack apply`"
        ) from exc
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    keys: dict[str, type] = {}
    request: dict[str, type] = {}
    views: list[str] = []
    for projection in service.feature_view_projections:
        if projection.name in odfvs:
            for source in odfvs[projection.name].source_request_sources.values():
                for f in source.schema:
                    request[f.name] = _python_type(f.dtype)
            continue
        view = store.get_feature_view(projection.name)
        views.append(projection.name_to_use())
        for column in view.entity_columns:
            keys.setdefault(column.name, _python_type(column.dtype))
    try:
        reader = OnlineReader(store, service)
    except (TypeError, ValueError):  # on-demand views, or another online store
        reader = None
    role = CHAMPION if alias == CHAMPION else CHALLENGER
    served = Served(
        role=role,
        loaded=loaded,
        service=loaded.feature_service,
        keys=sorted(keys),
        key_types=keys,
        request_fields=request,
        views=views,
        reader=reader,
        store=store,
        predictor=None,
    )
    provided = set(reader.feature_columns) if reader is not None else None
    if provided is not None and not set(served.features) <= provided:
        missing = sorted(set(served.features) - provided)
        raise NotFound(
            f"{name} v{loaded.version} was trained on {missing}, which feature service "
            f"{loaded.feature_service} no longer provides; serve a version trained on it"
        )
    served.predictor = compile_predictor(loaded) if reader is not None else None
    return served


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


@dataclass
class OnlineServed:
    """The online model served with a champion: its registry version and blend weight."""

    version: str
    model: Any  # models_py.online.OnlineModel
    weight: float


def load_online(settings: Settings, name: str) -> OnlineServed | None:
    """The current ``<name>__online`` version, or None when the model learns nothing online."""
    from models_py.online import load_state

    state = load_state(settings, name)
    if state is None or state.version is None:
        return None
    return OnlineServed(state.version, state.model, state.model.config.weight)


@dataclass
class ServedModel:
    """A model name as served: its champion and, optionally, its challenger."""

    name: str
    champion: Served
    challenger: Served | None
    serving: ModelServing
    #: when this pair started serving (startup, or the hot reload that swapped it in)
    since: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    #: the online model blended with the champion (``featurestack learn``), if any
    online: OnlineServed | None = None

    def blend(self, feats: Features, rows: list[int], outputs: list[dict[str, Any] | None]) -> None:
        """Blend the champion's outputs at positions ``rows`` with the online model, in place:
        ``score`` becomes the blend, ``decision`` follows it, ``blend`` says how it was made
        (weights, online version, both scores)."""
        online = self.online
        if online is None or not rows:
            return
        from models_py.online import blend

        learner, weight = online.model, online.weight
        cols = feats.columns
        X = np.array(
            [
                [_number(cols[f][i]) if f in cols else np.nan for f in learner.features]
                for i in rows
            ],
            dtype="float64",
        )
        scores = learner.predict(X)
        threshold = self.champion.loaded.threshold
        for i, value in zip(rows, scores, strict=True):
            out = outputs[i]
            if out is None or out.get("score") is None:
                continue
            batch = out["score"]
            out["score"] = blend(batch, float(value), weight)
            if out.get("decision") is not None and self.champion.task == "classifier":
                out["decision"] = bool(out["score"] >= threshold)
            out["blend"] = {
                "batch_weight": round(1 - weight, 6),
                "online_weight": weight,
                "online_version": online.version,
                "batch_score": batch,
                "online_score": None if value != value else float(value),
            }

    @property
    def mode(self) -> str:
        return self.serving.challenger if self.challenger is not None else "off"

    def describe(self) -> dict[str, Any]:
        def version(s: Served | None) -> dict[str, Any] | None:
            if s is None:
                return None
            return {
                "version": s.version,
                "run_id": s.loaded.run_id,
                "feature_service": s.service,
                "features": s.features,
                "fast_path": s.predictor is not None,
                "threshold": s.loaded.threshold if s.task == "classifier" else None,
            }

        return {
            "model": self.name,
            "keys": self.champion.keys,
            "request_values": sorted(self.champion.request_fields),
            "champion": version(self.champion),
            "challenger": version(self.challenger),
            "challenger_mode": self.mode,
            "challenger_share": self.serving.challenger_share if self.mode == "split" else None,
            "since": self.since,
            "online": None
            if self.online is None
            else {
                "version": self.online.version,
                "weights": {
                    "batch": round(1 - self.online.weight, 6),
                    "online": self.online.weight,
                },
                "learned": self.online.model.learned,
            },
        }

    def check(self, payload: Any, max_entities: int) -> list[dict[str, Any]]:
        """The entity rows of a request body, or :class:`RequestError` naming the mistake."""
        if not isinstance(payload, dict) or "entities" not in payload:
            raise RequestError(
                'the body must be a JSON object {"entities": [{...}, ...]}; got '
                f"{type(payload).__name__}"
                + (f" with fields {sorted(payload)}" if isinstance(payload, dict) else "")
            )
        extra = sorted(set(payload) - {"entities", "request_id"})
        if extra:
            raise RequestError(
                f"unknown field(s) {extra} in the body: give entities (and request_id)"
            )
        rows = payload["entities"]
        if not isinstance(rows, list) or not rows:
            raise RequestError("entities must be a non-empty list of objects")
        if len(rows) > max_entities:
            raise RequestError(
                f"too many entities: {len(rows)} > the limit of {max_entities} per request "
                "(serve config max_entities); split the request",
                status=413,
                kind="too_many_entities",
            )
        keys, request = self.champion.key_types, self.champion.request_fields
        if self.challenger is not None:
            request = {**self.challenger.request_fields, **request}
        allowed = f"{self.name} takes keys {sorted(keys)}" + (
            f" and request values {sorted(request)}" if request else ""
        )
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise RequestError(
                    f"entities[{i}] must be an object, e.g. {{'{self.champion.keys[0]}': …}}"
                )
            for k, kind in keys.items():
                if k not in row:
                    raise RequestError(f"entities[{i}] lacks join key {k!r}: {allowed}")
                _check_type(i, k, row[k], kind, "join key")
            for k, kind in request.items():
                if k not in row:
                    raise RequestError(
                        f"entities[{i}] lacks request value {k!r} (an on-demand feature needs "
                        f"it): {allowed}"
                    )
                _check_type(i, k, row[k], kind, "request value")
            unknown = sorted(set(row) - set(keys) - set(request))
            if unknown:
                raise RequestError(
                    f"entities[{i}] has unknown field(s) {unknown}: {allowed}; features come "
                    "from the online store and cannot be sent",
                    kind="unknown_feature",
                )
        return rows


def _check_type(i: int, name: str, value: Any, kind: type, what: str) -> None:
    ok = (
        isinstance(value, str)
        if kind is str
        else isinstance(value, bool)
        if kind is bool
        else isinstance(value, int) and not isinstance(value, bool)
        if kind is int
        else isinstance(value, int | float) and not isinstance(value, bool)
    )
    if not ok:
        raise RequestError(
            f"entities[{i}].{name} must be {kind.__name__} ({what}), got {value!r} "
            f"({type(value).__name__})",
            kind="mistyped_key",
        )


def load_served(
    settings: Settings, config: ServeConfig, names: list[str] | None = None
) -> dict[str, ServedModel]:
    """Every model to serve, loaded once: champion, and the challenger where configured."""
    import mlflow

    from featurestack.infra import feast_ops
    from models_py import tracking

    tracking.configure(settings)
    store = feast_ops.load_store(settings)
    client = mlflow.MlflowClient()
    wanted = (
        names
        or list(config.models)
        or [m.name for m in client.search_registered_models() if CHAMPION in (m.aliases or {})]
    )
    if not wanted:
        raise NotFound(
            f"no registered model has a champion in {settings.mlflow_tracking_uri}; "
            "train one first: featurestack train --spec NAME (the project's specs)"
        )
    served = {}
    for name in wanted:
        serving = config.serving(name)
        champion = load_version(settings, store, name, CHAMPION)
        challenger = None
        if serving.challenger != "off":
            try:
                challenger = load_version(settings, store, name, CHALLENGER)
            except NotFound:
                challenger = None  # nothing to compare yet: the champion serves alone
        if challenger is not None and set(challenger.keys) != set(champion.keys):
            raise NotFound(
                f"{name}: the challenger v{challenger.version} is keyed by {challenger.keys}, "
                f"the champion by {champion.keys}; they cannot share traffic"
            )
        served[name] = ServedModel(
            name, champion, challenger, serving, online=load_online(settings, name)
        )
    return served


def log_row(
    request_id: str,
    at: datetime,
    model: str,
    served: Served,
    role: str,
    row: dict[str, Any],
    feats: Features,
    i: int,
    output: dict[str, Any],
) -> tuple[Any, ...]:
    """One prediction-log row (models_py/prediction_log.py COLUMNS order)."""
    interval = output.get("interval")
    inputs = served.inputs(feats, i)
    for k in served.request_fields:
        inputs[k] = row.get(k)
    blended = output.get("blend")
    if blended is not None:  # the blend's weights and online version, in every logged row
        inputs["_blend"] = (
            f"batch={blended['batch_weight']:g};online={blended['online_weight']:g};"
            f"online_version={blended['online_version']};batch_score={blended['batch_score']}"
        )
    return (
        request_id,
        at,
        model,
        served.version,
        role,
        {k: row[k] for k in served.keys},
        inputs,
        served.feature_time(feats, i),
        output["score"],
        output.get("decision"),
        interval["low"] if interval else None,
        interval["high"] if interval else None,
        output["out_of_range"],
    )
