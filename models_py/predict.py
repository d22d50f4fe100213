"""Scoring with the champion: batch as of a date (offline store) and online (online store).

Both paths load the model version that holds the ``champion`` alias and fetch exactly the
feature service recorded on that version, so a model is always fed what it was trained on.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from featurestack.core.reports import write_atomic
from featurestack.core.settings import Settings
from featurestack.infra import feast_ops
from models_py.dataset import ServiceInfo, service_info
from models_py.registry import load_model_version
from models_py.scoring import score


def end_of_day(day: date) -> datetime:
    """The last instant of a UTC day: features known by the end of ``day``."""
    return datetime.combine(day, time.max, tzinfo=UTC)


def _entities(info: ServiceInfo) -> pd.DataFrame:
    """Every entity key present in the service's published sources. With a composite key,
    a view keyed by part of it (by a_id, beside one by a_id and b_id) names no entity
    of its own: the keys come from the views that carry every join key, else from the
    combinations of the parts the views carry."""
    import pyarrow.dataset as ds

    by_keys: dict[tuple[str, ...], list[pd.DataFrame]] = {}
    for path in info.source_paths:
        names = set(ds.dataset(path, format="parquet").schema.names)
        keys = tuple(k for k in info.join_keys if k in names)
        by_keys.setdefault(keys, []).append(pq.read_table(path, columns=list(keys)).to_pandas())
    parts = {keys: pd.concat(frames).drop_duplicates() for keys, frames in by_keys.items()}
    full = parts.get(tuple(info.join_keys))
    if full is None:
        full = functools.reduce(_combine, parts.values())
    return full[info.join_keys].sort_values(info.join_keys).reset_index(drop=True)


def _combine(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """Keys of two views: joined on the key columns they share, else every combination."""
    on = [k for k in right.columns if k in left.columns]
    return left.merge(right, on=on).drop_duplicates() if on else left.merge(right, how="cross")


def predict_batch(settings: Settings, model_name: str, as_of: date) -> tuple[Path, pd.DataFrame]:
    """Score every entity with the features known at the end of ``as_of``; write Parquet."""
    store = feast_ops.load_store(settings)
    champion = load_model_version(settings, model_name, store=store)
    info = service_info(store, champion.feature_service)
    if info.request_fields:
        from featurestack.core.errors import UsageError

        raise UsageError(
            f"{model_name}'s feature service {info.name} has on-demand features computed from "
            f"request values {info.request_fields}, which a batch of every entity cannot know; "
            "score a file of keys, event_timestamp and those values: predict --entities FILE"
        )
    entity_df = _entities(info)
    entity_df["event_timestamp"] = pd.Timestamp(end_of_day(as_of))
    frame = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(info.name)
    ).to_df()
    frame = frame.sort_values(info.join_keys, kind="stable").reset_index(drop=True)
    out = frame[[*info.join_keys, *info.feature_columns]].copy()
    out.insert(len(info.join_keys), "as_of", pd.Timestamp(end_of_day(as_of)))
    has_features = out[info.feature_columns].notna().any(axis=1)
    scored = score(champion, out, has_features)
    out[list(scored.columns)] = scored
    out["model_name"], out["model_version"] = champion.name, champion.version
    path = settings.predictions_dir / model_name / f"as_of={as_of.isoformat()}.parquet"
    write_atomic(path, out.to_parquet(index=False))
    return path, out


def read_entities(path: Path, info: ServiceInfo, model_name: str) -> pd.DataFrame:
    """An entity list as Feast's ``entity_df``: Parquet or CSV with the service's join keys,
    ``event_timestamp`` (the instant each row is scored as of; naive times are UTC) and the
    request values of its on-demand views; keys typed as the views declare them."""
    from featurestack.core.errors import NotFound, UsageError

    if not path.is_file():
        raise NotFound(f"entities file {path} does not exist")
    if path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
    else:
        raise UsageError(f"entities file {path}: give a .parquet or .csv file")
    needed = [*info.join_keys, "event_timestamp", *info.request_fields]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise UsageError(
            f"entities file {path} lacks column(s) {missing}: {model_name} (feature service "
            f"{info.name}) scores rows of {needed} (the join keys, event_timestamp: the instant "
            "each row is scored as of"
            + (", and the request values of its on-demand features" if info.request_fields else "")
            + f"); the file has {list(frame.columns)}"
        )
    if frame.empty:
        raise UsageError(f"entities file {path} has no rows to score")
    try:
        times = pd.to_datetime(frame["event_timestamp"], utc=True)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"entities file {path}: event_timestamp holds values that are not times ({exc}); "
            "write ISO 8601 instants, e.g. 2026-06-30T14:05:00Z"
        ) from None
    if times.isna().any():
        raise UsageError(
            f"entities file {path}: event_timestamp is empty on row(s) "
            f"{list(frame.index[times.isna()][:5])}; every row needs its instant"
        )
    out = frame[needed].copy()
    out["event_timestamp"] = times
    for key, kind in info.key_types.items():
        if key in out and kind is str and out[key].dtype != object:
            out[key] = out[key].astype(str)
    return out


def predict_entities(settings: Settings, model_name: str, path: Path) -> tuple[Path, pd.DataFrame]:
    """Score each row of an entity list point-in-time (its keys with the features known at its
    own ``event_timestamp``), in the file's order; write Parquet beside the batch predictions."""
    store = feast_ops.load_store(settings)
    champion = load_model_version(settings, model_name, store=store)
    info = service_info(store, champion.feature_service)
    entity_df = read_entities(path, info, model_name)
    row = "__featurestack_row"
    frame = store.get_historical_features(
        entity_df=entity_df.assign(**{row: range(len(entity_df))}),
        features=store.get_feature_service(info.name),
    ).to_df()
    frame = frame.sort_values(row).reset_index(drop=True)
    shown = [*info.join_keys, "event_timestamp", *info.request_fields]
    out = frame[[*shown, *info.feature_columns]].copy()
    has_features = out[info.feature_columns].notna().any(axis=1)
    scored = score(champion, out, has_features)
    out[list(scored.columns)] = scored
    out["model_name"], out["model_version"] = champion.name, champion.version
    target = settings.predictions_dir / model_name / f"entities={path.stem}.parquet"
    write_atomic(target, out.to_parquet(index=False))
    return target, out


def predict_online(
    settings: Settings,
    model_name: str,
    keys: list[dict[str, Any]],
    now: datetime | None = None,
) -> pd.DataFrame:
    """Score entities from the online store (latest materialized features); ``now``: the
    instant the views' TTL is measured against (a backtest scores as of its own instant)."""
    store = feast_ops.load_store(settings)
    champion = load_model_version(settings, model_name, store=store)
    info = service_info(store, champion.feature_service)
    keys = info.entity_rows(keys)
    from featurestack.infra.online_reader import OnlineReader

    service = store.get_feature_service(info.name)
    try:
        # Our online store and no on-demand views: the direct reader, same values and TTL rule.
        reader = OnlineReader(store, service)
    except (TypeError, ValueError):
        response = store.get_online_features(features=service, entity_rows=keys).to_df()
    else:
        response = pd.DataFrame(reader.read(keys, now))
    out = response[[*info.join_keys, *info.feature_columns]].copy()
    found = out[info.feature_columns].notna().any(axis=1)
    scored = score(champion, out, found)
    out[list(scored.columns)] = scored
    out["model_name"], out["model_version"] = champion.name, champion.version
    return out
