"""Feast, pointed at the data folder: load the store, apply the repo, materialize.

``feature_repo/feature_store.yaml`` is written for the default data folder. When
``FEATURESTACK_DATA_DIR`` moves it, the registry and online-store paths move with it here,
and the resolved file is also written to ``<data>/feast/feature_store.yaml`` so the native
CLI can use it: ``feast -c feature_repo -f $FEATURESTACK_DATA_DIR/feast/feature_store.yaml …``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from featurestack.settings import FEATURE_REPO_DIR, REPO_ROOT, Settings

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.repo_config import RepoConfig


def resolved_config(settings: Settings) -> dict[str, Any]:
    """feature_store.yaml with its paths moved under the data folder."""
    raw = yaml.safe_load(os.path.expandvars((FEATURE_REPO_DIR / "feature_store.yaml").read_text()))
    if settings.data_dir == REPO_ROOT / "data":
        # The committed paths already point there; keeping them verbatim means `feast apply`
        # run by hand and `featurestack apply` see no difference in the online store's infra.
        return raw
    raw["registry"]["path"] = str(settings.feast_dir / "registry.db")
    if raw.get("online_store", {}).get("type") in ("sqlite", ONLINE_STORE):
        raw["online_store"]["path"] = str(settings.feast_dir / "online_store.db")
    return raw


def write_resolved_config(settings: Settings) -> Path:
    """Write the resolved configuration beside the registry, for the native `feast` CLI."""
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    path = settings.feast_dir / "feature_store.yaml"
    path.write_text(yaml.safe_dump(resolved_config(settings), sort_keys=False))
    return path


def batch_source_path(view: FeatureView) -> str:
    """The Parquet path behind a feature view (our sources are all FileSources)."""
    from feast import FileSource

    source = view.batch_source
    if not isinstance(source, FileSource):
        raise TypeError(f"feature view {view.name!r} is not backed by a FileSource")
    return source.path


ONLINE_STORE = "featurestack.stores.online.SQLiteOnlineStore"


def scratch_repo_config(
    folder: Path, project: str, offline_store: str, online_store: str = "sqlite"
) -> RepoConfig:
    """A self-contained Feast configuration in ``folder`` (file registry, SQLite online store),
    for repos built in code: the offline-store tests and benchmarks."""
    from feast.repo_config import RepoConfig

    return RepoConfig(
        project=project,
        provider="local",
        registry=str(folder / "registry.db"),
        offline_store={"type": offline_store},
        online_store={"type": online_store, "path": str(folder / "online.db")},
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

    config = RepoConfig(**resolved_config(settings))
    config.repo_path = FEATURE_REPO_DIR
    return FeatureStore(repo_path=str(FEATURE_REPO_DIR), config=config)


@contextlib.contextmanager
def _in_feature_repo() -> Iterator[None]:
    """Feast names repo modules relative to the working directory and imports them by name."""
    previous = Path.cwd()
    repo = str(FEATURE_REPO_DIR)
    # Forget earlier imports of the definitions: their paths may belong to another data folder.
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if origin.startswith(repo + os.sep):
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

    from featurestack import feast_codegen

    settings.export()
    write_resolved_config(settings)
    store = load_store(settings)
    with _in_feature_repo():
        repo = parse_repo(FEATURE_REPO_DIR)
        problems = feast_codegen.check_views(
            repo.feature_views, repo.entities, feast_codegen.view_specs()
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


def materialize(settings: Settings, end: datetime) -> dict[str, str]:
    """Bring the online store up to ``end``; return what was done per feature view.

    ``materialize-incremental`` starts from a view's last run, or from ``end - ttl`` on the
    first run, which would skip all history older than the TTL. A view that was never
    materialized therefore gets one full ``materialize`` from its earliest published row first
    (the native equivalent: ``feast materialize <start> <end>`` once, then
    ``feast materialize-incremental <end>``).
    """
    import pyarrow.parquet as pq

    from featurestack.stores.online import SQLiteOnlineStore

    store = load_store(settings)
    done = {}
    online = store._get_provider().online_store
    for view in store.list_feature_views():
        if not view.online:
            continue
        # Materialized before, and the online store still holds rows: incremental is enough.
        # An empty table (a new online store file, or one switched to ours) needs it all again.
        empty = isinstance(online, SQLiteOnlineStore) and online.row_count(store.config, view) == 0
        if view.materialization_intervals and not empty:
            continue
        path = Path(batch_source_path(view))
        ts = pq.read_table(path, columns=[view.batch_source.timestamp_field]).column(0)  # type: ignore[union-attr]
        if len(ts) == 0:
            continue
        import pyarrow.compute as pc

        start = pc.min(ts).as_py()
        store.materialize(start_date=start, end_date=end, feature_views=[view.name])
        done[view.name] = f"full from {start:%Y-%m-%d}"
    store.materialize_incremental(end_date=end)
    for view in store.list_feature_views():
        done.setdefault(view.name, "incremental")
    return done
