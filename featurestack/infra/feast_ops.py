"""Feast, pointed at the data folder: load the store, apply the repo, materialize.

``feature_repo/feature_store.yaml`` (profile ``local``) is written for the default data folder.
When ``FEATURESTACK_DATA_DIR`` moves it, the registry and online-store paths move with it here,
and the resolved file is also written to ``<data>/feast/feature_store.yaml`` so the native
CLI can use it: ``feast -c feature_repo -f $FEATURESTACK_DATA_DIR/feast/feature_store.yaml …``.
Profile ``scale`` reads ``feature_repo/feature_store.scale.yaml`` instead (SQL registry on
PostgreSQL, Redis online store), its ``${VARIABLES}`` filled from the settings, and writes
``<data>/feast/feature_store.scale.yaml``. Nothing else differs between the profiles.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from featurestack.core.settings import Settings, feast_yaml_name

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.repo_config import RepoConfig


def config_file(settings: Settings) -> Path:
    """The committed feature_store.yaml of the settings' profile."""
    return settings.project.feature_repo_dir / feast_yaml_name(settings.profile)


def _expand(text: str, env: dict[str, str]) -> str:
    """``${NAME}`` from ``env`` (the settings' values win over the process environment)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise KeyError(f"{name} is used in feature_store.yaml but not set")
        return env[name]

    return re.sub(r"\$\{(\w+)\}", value, text)


def resolved_config(settings: Settings) -> dict[str, Any]:
    """The profile's feature_store.yaml with its variables filled, MLflow pointed at the
    settings' tracking store and, locally, its paths moved under the data folder."""
    env = {**os.environ, **settings.environ()}
    raw = yaml.safe_load(_expand(config_file(settings).read_text(), env))
    if isinstance(raw.get("mlflow"), dict):
        # Feast's MLflow client must log where training does, whatever this process's env says.
        raw["mlflow"]["tracking_uri"] = settings.mlflow_tracking_uri
    if settings.spark:
        _spark_offline_conf(settings, raw)
    if settings.scale:
        return raw  # URLs only: nothing lives in the data folder
    if settings.data_dir == settings.project.default_data_dir:
        # The committed paths already point there; keeping them verbatim means `feast apply`
        # run by hand and `featurestack apply` see no difference in the online store's infra.
        return raw
    raw["registry"]["path"] = str(settings.feast_dir / "registry.db")
    if raw.get("online_store", {}).get("type") in ("sqlite", ONLINE_STORE):
        raw["online_store"]["path"] = str(settings.feast_dir / "online_store.db")
    return raw


def write_resolved_config(settings: Settings) -> Path:
    """Write the resolved configuration beside the registry, for the native `feast` CLI.

    The scale profile's URLs may hold passwords: they stay ``${VARIABLES}`` in the file (Feast
    expands them when it loads it; `featurestack doctor --env` prints the exports), so no
    secret is written to disk.
    """
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    path = settings.feast_yaml
    if settings.scale:
        raw = yaml.safe_load(config_file(settings).read_text())
        if isinstance(raw.get("mlflow"), dict):
            raw["mlflow"]["tracking_uri"] = "${MLFLOW_TRACKING_URI}"
        if settings.spark:
            _spark_offline_conf(settings, raw)
    else:
        raw = resolved_config(settings)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _spark_offline_conf(settings: Settings, raw: dict[str, Any]) -> None:
    """The Spark settings of the data folder (featurestack.spark.session) in the offline
    store's section: a process that loads this file (``feast -f …``) starts the same Spark."""
    from featurestack.spark.session import spark_conf

    conf = spark_conf(settings.data_dir, settings.spark_master)
    # The store reads published Parquet, never the metastore: a process that starts Spark for
    # it alone (train, serve) keeps table definitions in memory, so it never waits on the
    # embedded Derby metastore a running `featurestack run` holds. FEATURESTACK_SPARK_CONF wins.
    conf["spark.sql.catalogImplementation"] = dict(settings.spark_conf).get(
        "spark.sql.catalogImplementation", "in-memory"
    )
    raw.setdefault("offline_store", {})["spark_conf"] = conf


def batch_source_path(view: FeatureView) -> str:
    """The Parquet path behind a feature view (our sources are all FileSources)."""
    from feast import FileSource

    source = view.batch_source
    if not isinstance(source, FileSource):
        raise TypeError(f"feature view {view.name!r} is not backed by a FileSource")
    return source.path


ONLINE_STORE = "featurestack.stores.online.SQLiteOnlineStore"
REDIS_ONLINE_STORE = "featurestack.stores.redis_online.RedisOnlineStore"


def scratch_repo_config(
    folder: Path, project: str, offline_store: str, online_store: str | dict[str, Any] = "sqlite"
) -> RepoConfig:
    """A self-contained Feast configuration in ``folder`` (file registry; a SQLite online store
    in the folder given a type, or any online store given its whole config), for repos built in
    code: the store tests and benchmarks."""
    from feast.repo_config import RepoConfig

    if isinstance(online_store, str):
        online_store = {"type": online_store, "path": str(folder / "online.db")}
    return RepoConfig(
        project=project,
        provider="local",
        registry=str(folder / "registry.db"),
        offline_store={"type": offline_store},
        online_store=online_store,
        entity_key_serialization_version=3,
        repo_path=str(folder),
    )


def load_store(settings: Settings) -> FeatureStore:
    """A FeatureStore for this data folder (the repo's definitions, this folder's state)."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    # Importing feast resets DeprecationWarning to "once"; ibis (under Feast's DuckDB store)
    # then warns about a DuckDB API it still calls, which says nothing to our users.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ibis")
    warnings.filterwarnings("ignore", message=".*fetch_arrow_table.*")

    if settings.scale:
        from featurestack.infra import services

        services.prepare(settings)  # its database and schemas, or a clear ServiceUnavailable
    config = RepoConfig(**resolved_config(settings))
    repo = settings.project.feature_repo_dir
    config.repo_path = repo
    return FeatureStore(repo_path=str(repo), config=config)


@contextlib.contextmanager
def _in_feature_repo(folder: Path) -> Iterator[None]:
    """Feast names repo modules relative to the working directory and imports them by name."""
    previous = Path.cwd()
    repo = str(folder)
    # Forget earlier imports of the definitions: their paths may belong to another data folder,
    # and Feast imports them by a name relative to the repo, which another project's repo
    # (a different folder, the same file names) may have taken earlier in this process.
    names = {p.stem for p in folder.glob("*.py")} | {
        p.name for p in folder.iterdir() if (p / "__init__.py").is_file()
    }
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if origin.startswith(repo + os.sep) or name.split(".")[0] in names:
            del sys.modules[name]
    added = repo not in sys.path
    if added:
        sys.path.insert(0, repo)
    os.chdir(repo)
    try:
        yield
    finally:
        os.chdir(previous)
        if added:
            sys.path.remove(repo)


def apply(settings: Settings) -> dict[str, list[str]]:
    """`feast apply` for this data folder: register the repo's objects, set up the online store."""
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    from featurestack.infra import feast_codegen

    settings.export()
    write_resolved_config(settings)
    store = load_store(settings)  # the scale profile's database answers (or nothing is written)
    if settings.scale:
        from featurestack.infra import services

        services.require_online(settings)
    project = settings.project
    with _in_feature_repo(project.feature_repo_dir):
        repo = parse_repo(project.feature_repo_dir)
        problems = feast_codegen.check_views(
            repo.feature_views, repo.entities, feast_codegen.view_specs(project.manifest)
        )
        if problems:
            raise feast_codegen.ContractMismatch(
                "the Feast repo and the dbt contracts disagree; nothing was applied:\n  "
                + "\n  ".join(problems)
                + "\nRun `featurestack codegen` and review the diff."
            )
        with contextlib.redirect_stdout(sys.stderr):
            apply_total_with_repo_instance(
                store,
                store.config.project,
                store.registry,
                repo,
                skip_source_validation=False,
            )
    return {
        "entities": sorted(e.name for e in repo.entities),
        "feature_views": sorted(v.name for v in repo.feature_views),
        "feature_services": sorted(s.name for s in repo.feature_services),
    }


#: How far below its watermark a view is re-materialized, so late corrections reach the online
#: store: the dbt incremental lookback (feature_lookback_days). A view overrides it with the tag
#: ``featurestack.online_lookback_days``.
ONLINE_LOOKBACK_DAYS = 14


def _first_event(view: FeatureView) -> datetime | None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    field = view.batch_source.timestamp_field  # type: ignore[union-attr]
    ts = pq.read_table(batch_source_path(view), columns=[field]).column(0)
    return pc.min(ts).as_py() if len(ts) else None


def materialize(settings: Settings, end: datetime) -> dict[str, str]:
    """Bring the online store up to ``end``; return what was done per feature view.

    With our online store, each view is written from Arrow batches (online_materialize.py): from
    its first row when it was never materialized or its online table is empty, otherwise
    from its watermark minus the lookback (``ONLINE_LOOKBACK_DAYS``), so corrections below the
    watermark arrive too; newest-event-wins makes the overlap harmless. The watermark moves only
    when a view is complete.

    With another online store, Feast's own path: one full ``materialize`` for a view never
    materialized (``materialize-incremental`` alone would start at ``end - ttl`` and skip the
    history), then ``materialize-incremental``.
    """
    store = load_store(settings)
    if settings.scale:
        from featurestack.infra import services

        services.require_online(settings)
    return materialize_store(store, end)


def materialize_store(store: FeatureStore, end: datetime) -> dict[str, str]:
    """:func:`materialize` for any FeatureStore (the tests use scratch repos)."""
    from featurestack.infra.online_materialize import materialize_view
    from featurestack.stores.online import NewestWinsOnlineStore

    done = {}
    online = store._get_provider().online_store
    ours = isinstance(online, NewestWinsOnlineStore)
    for view in store.list_feature_views():
        if not view.online:
            continue
        first = _first_event(view)
        if first is None:
            done[view.name] = "no rows"
            continue
        empty = (
            isinstance(online, NewestWinsOnlineStore) and online.row_count(store.config, view) == 0
        )
        if not view.materialization_intervals or empty:
            start, what = first, f"full from {first:%Y-%m-%d}"
        elif ours:
            lookback = int(view.tags.get("featurestack.online_lookback_days", ONLINE_LOOKBACK_DAYS))
            watermark = max(i[1] for i in view.materialization_intervals)
            start = max(first, watermark - timedelta(days=lookback))
            what = f"from {start:%Y-%m-%d} (watermark - {lookback} d)"
        else:
            continue
        if ours:
            rows = materialize_view(store, view, start, end)
            done[view.name] = f"{what}: {rows:,} rows"
        else:
            store.materialize(start_date=start, end_date=end, feature_views=[view.name])
            done[view.name] = what
    if not ours:
        store.materialize_incremental(end_date=end)
        for view in store.list_feature_views():
            done.setdefault(view.name, "incremental")
    return done
