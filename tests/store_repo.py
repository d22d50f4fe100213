"""Small Feast repos in code on our stores, for the store tests added with issue 19.

Each repo gets its own folder (registry, SQLite file, Parquet sources) and, on Redis, its own
key prefix, removed afterwards, so tests never see each other's rows (nor another engineer's).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from feast import FeatureStore
from feast.repo_config import RepoConfig

OFFLINE_STORE = "featurestack.stores.offline.DuckDBAsofOfflineStore"
SQLITE_STORE = "featurestack.stores.online.SQLiteOnlineStore"
REDIS_STORE = "featurestack.stores.redis_online.RedisOnlineStore"


@dataclass
class Online:
    """Which of our online stores a test runs on, and its config."""

    kind: str
    config: dict[str, Any]


@contextmanager
def online_store(kind: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[Online]:
    """Our SQLite store in ``folder``, or our Redis store under a key prefix of its own
    (Redis from conftest's ``redis_url`` fixture, which fails naming Redis when it is down)."""
    if kind == "sqlite":
        yield Online(kind, {"type": SQLITE_STORE, "path": str(folder / "online.db")})
        return
    import redis

    url = request.getfixturevalue("redis_url")
    prefix = f"fst_test_{uuid.uuid4().hex[:10]}"
    try:
        yield Online(kind, {"type": REDIS_STORE, "url": url, "key_prefix": prefix})
    finally:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])


def repo_config(folder: Path, online: Online | None = None, **extra: Any) -> RepoConfig:
    """A self-contained Feast config in ``folder``: file registry, our offline store, and our
    online store (SQLite in the folder unless ``online`` says otherwise); ``extra`` overrides."""
    folder.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "project": "t" + uuid.uuid4().hex[:8],
        "provider": "local",
        "registry": str(folder / "registry.db"),
        "offline_store": {"type": OFFLINE_STORE},
        "online_store": online.config if online else {"type": SQLITE_STORE, "path": "online.db"},
        "entity_key_serialization_version": 3,
        "repo_path": str(folder),
    }
    return RepoConfig(**(settings | extra))


def feature_store(folder: Path, online: Online | None = None, **extra: Any) -> FeatureStore:
    return FeatureStore(config=repo_config(folder, online, **extra))
