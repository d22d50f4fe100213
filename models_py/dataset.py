"""Training sets from Feast: label rows as the entity dataframe, features point-in-time, split
by time and checked before anything is fitted or logged."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq

from featurestack.core.errors import CheckFailed, NotFound, UsageError
from featurestack.core.settings import Settings
from featurestack.infra import feast_ops
from models_py.model_inputs import check_training_set
from models_py.spec import ModelSpec, SplitSpec

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore


@dataclass(frozen=True)
class ServiceInfo:
    """What a feature service resolves to: its join keys, references and output columns."""

    name: str
    join_keys: list[str]
    feature_refs: list[str]
    feature_columns: list[str]
    source_paths: list[str]
    #: each join key's Python type (from the views' entity columns)
    key_types: dict[str, type] = field(default_factory=dict)
    #: fields of the on-demand views' request sources: values sent with a request online, and
    #: columns of the entity dataframe in training sets (``label.request_columns`` of a spec)
    request_fields: list[str] = field(default_factory=list)

    def entity_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Entity rows with every join key, typed as the views declare them (``--entity``
        gives text); a missing key or a value of the wrong kind is a UsageError naming it."""
        out = []
        for row in rows:
            missing = [k for k in self.join_keys if k not in row]
            if missing:
                raise UsageError(
                    f"entity {row} lacks join key(s) {missing}: {self.name} is keyed by "
                    f"{self.join_keys} (give --entity "
                    + ",".join(f"{k}=…" for k in self.join_keys)
                    + ")"
                )
            typed = dict(row)
            for key, kind in self.key_types.items():
                value = row.get(key)
                if isinstance(value, str) and kind is not str:
                    try:
                        typed[key] = kind(value)
                    except ValueError:
                        raise UsageError(
                            f"entity key {key}={value!r}: {self.name} expects "
                            f"{kind.__name__} values"
                        ) from None
            out.append(typed)
        return out


def _python_type(dtype: Any) -> type:
    name = str(dtype).lower()
    if "string" in name:
        return str
    if "bool" in name:
        return bool
    if "int" in name:
        return int
    return float


def service_info(store: FeatureStore, service: FeatureService | str) -> ServiceInfo:
    """A service's parts: feature views give keys, sources and features; on-demand views give
    features and request fields, and the keys of the views they read."""
    if isinstance(service, str):
        service = store.get_feature_service(service)
    refs, columns, keys, paths, request = [], [], [], [], []
    key_types: dict[str, type] = {}
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    views = []
    for projection in service.feature_view_projections:
        odfv = odfvs.get(projection.name)
        if odfv is None:
            views.append(store.get_feature_view(projection.name))
        else:
            views += [
                store.get_feature_view(p.name)
                for p in odfv.source_feature_view_projections.values()
            ]
            for source in odfv.source_request_sources.values():
                request += [f.name for f in source.schema if f.name not in request]
        for feature in projection.features:
            refs.append(f"{projection.name_to_use()}:{feature.name}")
            columns.append(feature.name)
    for view in views:
        for column in view.entity_columns:
            key_types.setdefault(column.name, _python_type(column.dtype))
        for key in view.join_keys:
            if key not in keys:
                keys.append(key)
        path = feast_ops.batch_source_path(view)
        if path not in paths:
            paths.append(path)
    return ServiceInfo(service.name, keys, refs, columns, paths, key_types, request)


def read_labels(settings: Settings, spec: ModelSpec) -> pd.DataFrame:
    """The published label table (the gate has validated it)."""
    path = settings.published_table(spec.label.model)
    if not path.exists():
        raise NotFound(
            f"label table {spec.label.model} is not published ({path}); "
            "run `featurestack build` and `featurestack validate` first."
        )
    return pd.read_parquet(path)


def training_frame(
    store: FeatureStore,
    info: ServiceInfo,
    labels: pd.DataFrame,
    target: str,
    request_columns: dict[str, str] | None = None,
    extra: list[str] | None = None,
) -> pd.DataFrame:
    """Labels joined point-in-time with the service's features, ordered by time then keys.

    The service's on-demand views are computed by Feast after the join, exactly as online:
    their request fields come from the label table's columns ``request_columns`` names.
    ``extra``: more label-table columns kept next to the target (a ``sample_weight_column``).
    """
    entity_cols = [*info.join_keys, "event_timestamp", target, *(extra or [])]
    missing = [c for c in entity_cols if c not in labels.columns]
    if missing:
        raise CheckFailed(
            f"label table lacks columns {missing} needed as the entity dataframe "
            f"(its columns: {', '.join(map(str, labels.columns))})"
        )
    entity_df = labels[entity_cols]
    if info.request_fields:
        entity_df = entity_df.assign(**request_values(info, labels, request_columns or {}))
    job = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(info.name)
    )
    frame = job.to_df()
    if len(frame) != len(entity_df):
        raise RuntimeError(
            f"Feast returned {len(frame)} rows for {len(entity_df)} entity rows; "
            "a training set must keep every label row exactly once"
        )
    order = ["event_timestamp", *info.join_keys]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def request_values(
    info: ServiceInfo, labels: pd.DataFrame, request_columns: dict[str, str]
) -> dict[str, pd.Series]:
    """Each request field of the service's on-demand views, from the label table's column
    the spec maps it to (``label.request_columns``); a field without one is a UsageError."""
    unmapped = [f for f in info.request_fields if f not in request_columns]
    if unmapped:
        raise UsageError(
            f"feature service {info.name} has on-demand features computed from request values "
            f"{unmapped}, which a training set must take from the label table: add "
            "label.request_columns to the spec, e.g. {"
            + ", ".join(f"{f}: <column>" for f in unmapped)
            + '} (docs/features.md "The time model")'
        )
    absent = {f: c for f, c in request_columns.items() if c not in labels.columns}
    if absent:
        raise UsageError(
            f"label.request_columns names {absent}, columns the label table lacks (it has "
            f"{sorted(labels.columns)}); add them to the label model or fix the spec"
        )
    return {f: labels[request_columns[f]] for f in info.request_fields}


def time_split(frame: pd.DataFrame, split: SplitSpec) -> dict[str, pd.DataFrame]:
    """Train / validation / holdout by periods of the event time (models_py/splits.py)."""
    from models_py import splits

    return splits.time_split(frame, split)


@dataclass
class TrainingSet:
    """A spec's training set: the service, the label rows, the time segments and their check."""

    info: ServiceInfo
    labels: pd.DataFrame
    segments: dict[str, pd.DataFrame]
    #: what the training-set check saw (models_py/model_inputs.py ``TrainingSetReport``)
    checked: Any

    def entity_df(self, spec: ModelSpec) -> pd.DataFrame:
        """The entity dataframe Feast was given: keys, event time, the target and the request
        values of on-demand views."""
        frame = self.labels[[*self.info.join_keys, "event_timestamp", spec.label.target]]
        if self.info.request_fields:
            frame = frame.assign(
                **request_values(self.info, self.labels, spec.label.request_columns)
            )
        return frame


def training_set(
    settings: Settings, spec: ModelSpec, store: FeatureStore | None = None
) -> TrainingSet:
    """The spec's point-in-time training set from Feast, split and checked.

    Refuses (``InputError``) before any fit or MLflow run: nothing is logged or registered.
    """
    import dataclasses

    store = store or feast_ops.load_store(settings)
    info = service_info(store, spec.feature_service)
    labels = read_labels(settings, spec)
    kept = [spec.sample_weight_column] if spec.sample_weight_column else []
    frame = training_frame(store, info, labels, spec.label.target, spec.label.request_columns, kept)
    segments = time_split(frame, spec.split)
    empty = [f for f in info.feature_columns if f in frame and frame[f].isna().all()]
    absent = null_in_sources(info, empty)
    checked = check_training_set(
        segments, info.feature_columns, spec.label.target, spec.task, absent
    )
    if checked.dropped:  # the model is fitted and served without them
        kept = [f for f in info.feature_columns if f not in checked.dropped]
        info = dataclasses.replace(info, feature_columns=kept)
    return TrainingSet(info, labels, segments, checked)


def null_in_sources(info: ServiceInfo, columns: list[str]) -> frozenset[str]:
    """The ``columns`` that hold no value at all in the service's published tables (the raw
    data lacks an optional column they are computed from)."""
    import pyarrow.compute as pc

    if not columns:
        return frozenset()
    seen: dict[str, int] = dict.fromkeys(columns, 0)
    for path in info.source_paths:
        names = set(pq.read_schema(path).names) if Path(path).is_file() else _folder_names(path)
        wanted = [c for c in columns if c in names]
        if wanted:
            table = pq.read_table(path, columns=wanted)
            for c in wanted:
                seen[c] += int(pc.count(table.column(c)).as_py())
    return frozenset(c for c, n in seen.items() if n == 0)


def _folder_names(path: str) -> set[str]:
    files = sorted(Path(path).glob("*.parquet"))
    return set(pq.read_schema(files[0]).names) if files else set()
