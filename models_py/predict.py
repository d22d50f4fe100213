"""Scoring with the champion: batch as of a date (offline store) and online (online store).

Both paths load the model version that holds the ``champion`` alias and fetch exactly the
feature service recorded on that version, so a model is always fed what it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from featurestack import feast_ops
from featurestack.settings import Settings
from models_py import tracking
from models_py.dataset import ServiceInfo, service_info
from models_py.encoding import split_pipeline
from models_py.intervals import IntervalRegressor
from models_py.train import CHAMPION, FEAST_SERVICE_TAG, INPUT_RANGES, TAG_PREFIX
from validation.model_inputs import check_prediction_input

if TYPE_CHECKING:
    from feast import FeatureStore


@dataclass
class Champion:
    name: str
    version: str
    run_id: str
    feature_service: str
    model: Any
    #: the model signature's inputs, as (column, MLflow type)
    inputs: list[tuple[str, str]]
    #: per feature, the [min, max] seen in training (empty for models trained before it was kept)
    ranges: dict[str, list[float | None]]
    #: the decision threshold chosen on the validation segment
    threshold: float = 0.5


def load_champion(
    settings: Settings,
    model_name: str,
    alias: str = CHAMPION,
    store: FeatureStore | None = None,
    version: str | None = None,
) -> Champion:
    """The version holding ``alias`` (``champion`` by default; the model server also loads the
    ``challenger``), or exactly ``version`` when given (the shadow process loads the version
    the server loaded, even if the alias moved since), with what scoring needs: signature,
    training ranges, threshold, and the feature service it must be fed.

    The service is resolved through Feast's MLflow integration, which also refuses a service
    whose features no longer match the ones the version was trained on (feast_features.json).
    """
    import mlflow

    tracking.configure(settings)
    client = mlflow.MlflowClient()
    try:
        if version is not None:
            mv = client.get_model_version(model_name, version)
        else:
            mv = client.get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException as exc:
        wanted = f"version {version}" if version is not None else f"{alias!r} version"
        raise LookupError(
            f"model {model_name!r} has no {wanted} in {settings.mlflow_tracking_uri}; "
            f"train it first: featurestack train --spec {model_name}"
        ) from exc
    service = _resolve_service(store or feast_ops.load_store(settings), mv)
    uri = f"models:/{model_name}/{mv.version}"
    model = mlflow.sklearn.load_model(uri)
    signature = mlflow.models.get_model_info(uri).signature
    if signature is None:
        raise LookupError(f"{model_name} v{mv.version} was logged without a signature")
    inputs = [(c.name, c.type.name) for c in signature.inputs.inputs]
    try:
        ranges = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{INPUT_RANGES}")
    except mlflow.exceptions.MlflowException:
        ranges = {}
    threshold = float(mv.tags.get(TAG_PREFIX + "threshold", 0.5))
    return Champion(
        model_name, str(mv.version), str(mv.run_id), service, model, inputs, ranges, threshold
    )


def _resolve_service(store: FeatureStore, mv: Any) -> str:
    from feast.mlflow_integration import FeastMlflowModelResolutionError

    feast_mlflow = store.mlflow
    if feast_mlflow is None or FEAST_SERVICE_TAG not in mv.tags:
        # Feast's integration disabled, or a version trained before it was used.
        service = mv.tags.get(TAG_PREFIX + "feature_service")
        if not service:
            raise LookupError(f"{mv.name} v{mv.version} has no feature_service tag")
        return str(service)
    try:
        return str(feast_mlflow.resolve_features(f"models:/{mv.name}/{mv.version}"))
    except FeastMlflowModelResolutionError as exc:
        raise LookupError(
            f"{mv.name} v{mv.version} cannot be fed by the current feature registry: {exc}. "
            f"Restore the feature service it was trained on, or retrain: "
            f"featurestack train --spec {mv.name}"
        ) from exc


def end_of_day(day: date) -> datetime:
    """The last instant of a UTC day: features known by the end of ``day``."""
    return datetime.combine(day, time.max, tzinfo=UTC)


def _entities(info: ServiceInfo) -> pd.DataFrame:
    """Every entity key present in the service's published sources."""
    frames = [pq.read_table(p, columns=info.join_keys).to_pandas() for p in info.source_paths]
    return pd.concat(frames).drop_duplicates().sort_values(info.join_keys).reset_index(drop=True)


def _score(champion: Champion, features: pd.DataFrame, has_features: pd.Series) -> pd.DataFrame:
    """Scores and flags: the input is conformed to the signature first (InputError if it
    cannot be); rows with an infinite value or no feature at all are not scored.

    Binary classifiers: ``score`` (probability) and ``decision`` (score ≥ the version's
    threshold). Multiclass: ``decision`` (the most probable class), ``score`` (its
    probability) and ``proba_<class>`` per class. Regressors: ``score`` (the prediction) and,
    with intervals, ``interval_low/high``.
    """
    frame, scorable, flags = check_prediction_input(features, champion.inputs, champion.ranges)
    rows = scorable & has_features
    out = pd.DataFrame({"score": np.nan}, index=features.index)
    model = champion.model
    if hasattr(model, "predict_proba") and len(model.classes_) > 2:
        classes = list(model.classes_)
        proba = pd.DataFrame(np.nan, index=features.index, columns=classes)
        if rows.any():
            proba.loc[rows] = model.predict_proba(frame.loc[rows])
        out["score"] = proba.max(axis=1, skipna=False)
        best = proba.fillna(-1.0).to_numpy().argmax(axis=1)
        out["decision"] = pd.Series(np.asarray(classes, dtype=object)[best], index=out.index)
        out["decision"] = out["decision"].where(out["score"].notna())
        for c in classes:
            out[f"proba_{c}"] = proba[c]
    elif hasattr(model, "predict_proba"):
        if rows.any():
            out.loc[rows, "score"] = model.predict_proba(frame.loc[rows])[:, 1]
        out["decision"] = (out["score"] >= champion.threshold).astype("boolean")
        out["decision"] = out["decision"].where(out["score"].notna())
    else:
        encoder, inner = split_pipeline(model)
        with_interval = isinstance(inner, IntervalRegressor)
        if with_interval:
            out["interval_low"], out["interval_high"] = np.nan, np.nan
        if rows.any():
            out.loc[rows, "score"] = model.predict(frame.loc[rows])
            if with_interval:
                X = frame.loc[rows] if encoder is None else encoder.transform(frame.loc[rows])
                low, high = inner.predict_interval(X)
                out.loc[rows, "interval_low"], out.loc[rows, "interval_high"] = low, high
    out["out_of_range"] = flags
    return out


def predict_batch(settings: Settings, model_name: str, as_of: date) -> tuple[Path, pd.DataFrame]:
    """Score every entity with the features known at the end of ``as_of``; write Parquet."""
    store = feast_ops.load_store(settings)
    champion = load_champion(settings, model_name, store=store)
    info = service_info(store, champion.feature_service)
    entity_df = _entities(info)
    entity_df["event_timestamp"] = pd.Timestamp(end_of_day(as_of))
    frame = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(info.name)
    ).to_df()
    frame = frame.sort_values(info.join_keys, kind="stable").reset_index(drop=True)
    out = frame[[*info.join_keys, *info.feature_columns]].copy()
    out.insert(len(info.join_keys), "as_of", pd.Timestamp(end_of_day(as_of)))
    has_features = out[info.feature_columns].notna().any(axis=1)
    scored = _score(champion, out, has_features)
    out[list(scored.columns)] = scored
    out["model_name"], out["model_version"] = champion.name, champion.version
    path = settings.predictions_dir / model_name / f"as_of={as_of.isoformat()}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    out.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path, out


def predict_online(settings: Settings, model_name: str, keys: list[dict[str, Any]]) -> pd.DataFrame:
    """Score entities from the online store (latest materialized features)."""
    store = feast_ops.load_store(settings)
    champion = load_champion(settings, model_name, store=store)
    info = service_info(store, champion.feature_service)
    for row in keys:
        missing = [k for k in info.join_keys if k not in row]
        if missing:
            raise KeyError(f"entity {row} lacks join key(s) {missing} of {info.name}")
    from featurestack.online_reader import OnlineReader

    service = store.get_feature_service(info.name)
    try:
        # Our online store and no on-demand views: the direct reader, same values and TTL rule.
        reader = OnlineReader(store, service)
    except (TypeError, ValueError):
        response = store.get_online_features(features=service, entity_rows=keys).to_df()
    else:
        response = pd.DataFrame(reader.read(keys))
    out = response[[*info.join_keys, *info.feature_columns]].copy()
    found = out[info.feature_columns].notna().any(axis=1)
    scored = _score(champion, out, found)
    out[list(scored.columns)] = scored
    out["model_name"], out["model_version"] = champion.name, champion.version
    return out
