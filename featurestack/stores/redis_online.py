"""Feast online store on Redis with the semantics of our SQLite store: newest event wins, TTL
honoured on read, one value per entity key per feature view.

Feast's stock Redis store writes every feature as its own hash field, last write winning (a
backfill after a newer window puts old values back), turns every value into a protobuf, and
returns values past the view's TTL as PRESENT. Measured here it materializes ≈ 6,000 rows/s
where pipelined ``HSET`` alone takes ≈ 36,000. This store, plugged in through Feast's extension
point (``online_store: type: featurestack.stores.redis_online.RedisOnlineStore``):

* keeps **one Redis string per entity key per feature view**: a 16-byte header (event and
  created timestamps, µs, big-endian) and the row's values in a compact binary layout (a null
  bitmap, fixed-width numbers, length-prefixed strings), so a lookup is one ``MGET`` per view;
* writes through one Lua script per ``batch_size`` rows, which compares each row's header with
  the stored one and replaces it only when the new row has a greater event timestamp, or an
  equal one and a greater created timestamp — atomic on the server, so concurrent writers and
  materializations in any order converge, exactly as on SQLite;
* reads with the view's TTL (``NewestWinsOnlineStore``): expired rows come back null with
  status OUTSIDE_MAX_AGE, unknown keys NOT_FOUND;
* keeps per view a small meta hash (row count and newest event time, maintained by the same
  script) so ``featurestack materialize`` and ``check-consistency`` need no key scans.

Keys are ``<key_prefix>:<project>:<view>:<layout>:<entity key>`` (``key_prefix`` ``fs`` by
default; the scale profile uses its own, so ``featurestack reset`` can remove exactly its keys);
``<layout>`` fingerprints the view's
feature names and types, so a changed schema never misreads old values: the new layout starts
empty (``featurestack materialize`` then refills it in full) and ``feast apply`` deletes the old
layout's keys. Values are not given a Redis expiry: an expired row must still answer
OUTSIDE_MAX_AGE with its event time. The multi-key script needs one Redis node (or a primary
with replicas / Sentinel), not Redis Cluster.

Every call is bounded by ``timeout_s`` (connect and read timeouts, one retry on a fresh
connection, no backoff): when Redis is down or stops answering, reads and writes raise
:class:`featurestack.core.errors.StoreUnavailable` within that budget instead of hanging or retrying
for seconds, and materialization, which advances the watermark only after its last batch,
leaves the watermark where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

from feast import Entity, FeatureView, RepoConfig
from feast.repo_config import FeastConfigBaseModel
from feast.types import Bool, FeastType, Float32, Float64, Int32, Int64, String, UnixTimestamp
from pydantic import PositiveFloat, StrictInt, StrictStr

from featurestack.core.errors import StoreUnavailable, redact
from featurestack.stores.online import NewestWinsOnlineStore, stored_features

_HEADER = struct.Struct(">qq")  # event µs, created µs
_READ_CHUNK = 1_000  # keys per MGET
_SCAN_CHUNK = 1_000  # keys per SCAN step and UNLINK when deleting a view

# KEYS[1] = the view's meta hash, KEYS[2..] = row keys; ARGV[i] = the new value of KEYS[i + 1].
# Lua numbers are doubles: timestamps in µs are exact below 2**53 (year 2255); the missing
# created timestamp, -2**63, is exact too.
_UPSERT = """
local added, newest = 0, nil
for i = 2, #KEYS do
  local new = ARGV[i - 1]
  local ne, nc = struct.unpack('>i8>i8', new)
  local cur = redis.call('GET', KEYS[i])
  local take = true
  if cur then
    local ce, cc = struct.unpack('>i8>i8', cur)
    take = ne > ce or (ne == ce and nc > cc)
  else
    added = added + 1
  end
  if take then
    redis.call('SET', KEYS[i], new)
    if newest == nil or ne > newest then newest = ne end
  end
end
if added > 0 then redis.call('HINCRBY', KEYS[1], 'rows', added) end
if newest then
  local cur = redis.call('HGET', KEYS[1], 'newest')
  if not cur or newest > tonumber(cur) then
    redis.call('HSET', KEYS[1], 'newest', string.format('%.0f', newest))
  end
end
return added
"""


class RedisOnlineStoreConfig(FeastConfigBaseModel):
    """``online_store:`` in feature_store.yaml (``url`` may be ``${FEATURESTACK_REDIS_URL}``)."""

    type: Literal["featurestack.stores.redis_online.RedisOnlineStore"] = (
        "featurestack.stores.redis_online.RedisOnlineStore"
    )
    url: StrictStr = "redis://127.0.0.1:6379/0"
    #: rows per Lua call (one atomic server-side step; bounds how long Redis is busy per call)
    batch_size: StrictInt = 1_000
    #: first part of every key (``${FEATURESTACK_REDIS_PREFIX}`` in the scale profile)
    key_prefix: StrictStr = "fs"
    #: seconds a call may take, retry included, before StoreUnavailable (a Lua call of
    #: ``batch_size`` rows must fit in it too)
    timeout_s: PositiveFloat = 2.0


# Fixed-width layout per Feast type (struct codes); everything else is length-prefixed bytes.
_FIXED: dict[FeastType, str] = {
    Float64: "d",
    Float32: "d",
    Int64: "q",
    Int32: "q",
    UnixTimestamp: "q",
    Bool: "?",
}
_ZERO = {"d": 0.0, "q": 0, "?": False}


class RowCodec:
    """A view's values ↔ bytes: null bitmap, fixed-width numbers, then length-prefixed
    strings/bytes (UTF-8 for String; Feast's serialized Value for list and other types)."""

    def __init__(self, dtypes: Sequence[FeastType]) -> None:
        self.n = len(dtypes)
        self.fixed = [i for i, t in enumerate(dtypes) if t in _FIXED]
        self.var = [i for i, t in enumerate(dtypes) if t not in _FIXED]
        self.text = {i for i in self.var if dtypes[i] == String}
        self.mask_bytes = (self.n + 7) // 8
        codes = "".join(_FIXED[dtypes[i]] for i in self.fixed)
        self.head = struct.Struct(f">qq{self.mask_bytes}s{codes}")
        self.zero = [_ZERO[_FIXED[dtypes[i]]] for i in self.fixed]

    def encode(self, event: int, created: int, values: Sequence[Any]) -> bytes:
        mask = bytearray(self.mask_bytes)
        fixed = []
        for i, zero in zip(self.fixed, self.zero, strict=True):
            v = values[i]
            if v is None:
                mask[i >> 3] |= 1 << (i & 7)
                v = zero
            fixed.append(v)
        tail = []
        for i in self.var:
            v = values[i]
            if v is None:
                mask[i >> 3] |= 1 << (i & 7)
                tail.append(b"\0\0\0\0")
                continue
            raw = v.encode() if isinstance(v, str) else bytes(v)
            tail.append(len(raw).to_bytes(4, "big") + raw)
        return self.head.pack(event, created, bytes(mask), *fixed) + b"".join(tail)

    def decode(self, blob: bytes) -> tuple[int, list[Any]]:
        """``(event_us, values)``."""
        parts = self.head.unpack_from(blob)
        values: list[Any] = [None] * self.n
        for j, i in enumerate(self.fixed):
            values[i] = parts[3 + j]
        offset = self.head.size
        for i in self.var:
            size = int.from_bytes(blob[offset : offset + 4], "big")
            raw = blob[offset + 4 : offset + 4 + size]
            offset += 4 + size
            values[i] = raw.decode() if i in self.text else raw
        mask = parts[2]
        if any(mask):
            for i in range(self.n):
                if mask[i >> 3] >> (i & 7) & 1:
                    values[i] = None
        return parts[0], values


def layout(view: FeatureView) -> str:
    """A fingerprint of the view's feature names and types, part of every key."""
    return _view_layout(tuple((f.name, str(f.dtype)) for f in stored_features(view)))


@functools.lru_cache(maxsize=256)
def _view_layout(spec: tuple[tuple[str, str], ...]) -> str:
    return hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:10]


@functools.lru_cache(maxsize=256)
def _codec(view_layout: str, dtypes: tuple[FeastType, ...]) -> RowCodec:
    return RowCodec(dtypes)


def codec(view: FeatureView) -> RowCodec:
    """The (cached) codec of a view's current layout."""
    return _codec(layout(view), tuple(f.dtype for f in stored_features(view)))


class RedisOnlineStore(NewestWinsOnlineStore):
    """See the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, float], Any] = {}
        self._scripts: dict[tuple[str, float], Any] = {}
        #: redis.asyncio clients per event loop (a client's connections belong to one loop)
        self._async_clients: dict[asyncio.AbstractEventLoop, dict[tuple[str, float], Any]] = {}

    def _client(self, config: RepoConfig) -> Any:
        """One client (and connection pool, thread-safe) per URL and time budget."""
        store = config.online_store
        url, budget = store.url, float(store.timeout_s)
        with self._lock:
            client = self._clients.get((url, budget))
            if client is None:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                # Two attempts (a pooled connection may have been closed by a Redis restart),
                # each with half the budget, so a call never takes longer than timeout_s.
                attempt = budget / 2
                client = redis.Redis.from_url(
                    url,
                    socket_connect_timeout=attempt,
                    socket_timeout=attempt,
                    retry=Retry(NoBackoff(), 1),
                    retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                )
                self._clients[(url, budget)] = client
                self._scripts[(url, budget)] = client.register_script(_UPSERT)
            return client

    def _async_client(self, config: RepoConfig) -> Any:
        """The running loop's ``redis.asyncio`` client for this URL and time budget, set up
        like the sync one (two attempts of half the budget each, no backoff)."""
        store = config.online_store
        url, budget = store.url, float(store.timeout_s)
        loop = asyncio.get_running_loop()
        with self._lock:
            for old in [lp for lp in self._async_clients if lp.is_closed()]:
                del self._async_clients[old]  # its connections died with it
            clients = self._async_clients.setdefault(loop, {})
            client = clients.get((url, budget))
            if client is None:
                import redis
                import redis.asyncio
                from redis.asyncio.retry import Retry
                from redis.backoff import NoBackoff

                attempt = budget / 2
                client = redis.asyncio.Redis.from_url(
                    url,
                    socket_connect_timeout=attempt,
                    socket_timeout=attempt,
                    retry=Retry(NoBackoff(), 1),
                    retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                )
                clients[(url, budget)] = client
            return client

    async def close(self) -> None:
        """Close the running loop's async clients (Feast's feature server calls this when it
        stops; a caller with its own loop may too)."""
        with self._lock:
            clients = self._async_clients.pop(asyncio.get_running_loop(), {})
        for client in clients.values():
            await client.aclose()

    @contextlib.contextmanager
    def _available(self, config: RepoConfig, doing: str) -> Iterator[None]:
        """Turn Redis being down or silent into StoreUnavailable, naming what failed."""
        import redis

        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError, TimeoutError) as err:
            store = config.online_store
            raise StoreUnavailable(
                "Redis (online store)",
                redact(store.url),
                f"{type(err).__name__} while {doing} within {store.timeout_s:g} s ({err})",
                "start Redis or point FEATURESTACK_REDIS_URL at one (`featurestack doctor` "
                "checks it); then re-run: materialization resumes from the unchanged watermark",
            ) from err

    @staticmethod
    def _prefix(config: RepoConfig, view: FeatureView) -> bytes:
        return f"{config.online_store.key_prefix}:{config.project}:{view.name}:".encode()

    def _meta_key(self, config: RepoConfig, view: FeatureView) -> bytes:
        return self._prefix(config, view) + layout(view).encode()

    def _row_prefix(self, config: RepoConfig, view: FeatureView) -> bytes:
        return self._meta_key(config, view) + b":"

    def _layouts_key(self, config: RepoConfig) -> str:
        return f"{config.online_store.key_prefix}:{config.project}:__layouts"

    # -- schema --------------------------------------------------------------------------------

    def _drop(self, config: RepoConfig, view: FeatureView, keep: str | None = None) -> None:
        """Delete a view's keys (all layouts, or all but ``keep``) without blocking Redis."""
        client = self._client(config)
        prefix = self._prefix(config, view)
        keep_prefix = prefix + keep.encode() if keep else None
        batch: list[bytes] = []
        for key in client.scan_iter(match=prefix + b"*", count=_SCAN_CHUNK):
            if keep_prefix and (key == keep_prefix or key.startswith(keep_prefix + b":")):
                continue
            batch.append(key)
            if len(batch) >= _SCAN_CHUNK:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        client = self._client(config)
        layouts = self._layouts_key(config)
        with self._available(config, "setting up the feature views' keys (feast apply)"):
            for view in tables_to_keep:
                now = layout(view)
                before = client.hget(layouts, view.name)
                if before is not None and before.decode() != now:
                    self._drop(config, view, keep=now)  # the old layout can no longer be read
                client.hset(layouts, view.name, now)
            for view in tables_to_delete:
                self._drop(config, view)
                client.hdel(layouts, view.name)

    def teardown(
        self,
        config: RepoConfig,
        tables: Sequence[FeatureView],
        entities: Sequence[Entity],
    ) -> None:
        with self._available(config, "deleting the feature views' keys (teardown)"):
            for view in tables:
                self._drop(config, view)
                self._client(config).hdel(self._layouts_key(config), view.name)

    # -- writes --------------------------------------------------------------------------------

    def write_stored_rows(
        self,
        config: RepoConfig,
        view: FeatureView,
        features: list[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """Write ``(key, event_us, created_us, *values)`` rows, newest event winning.

        One atomic script call per ``batch_size`` rows; a crash leaves whole batches, and a
        re-run converges because the comparison makes writes idempotent and order-free.
        """
        names = [f.name for f in stored_features(view)]
        if list(features) != names:
            raise ValueError(
                f"Redis rows hold every feature of {view.name} in its order {names}, "
                f"got {list(features)}"
            )
        self._client(config)
        script = self._scripts[(config.online_store.url, float(config.online_store.timeout_s))]
        meta, prefix = self._meta_key(config, view), self._row_prefix(config, view)
        size = config.online_store.batch_size
        keys: list[bytes] = [meta]
        values: list[bytes] = []
        encode = codec(view).encode
        with self._available(config, f"writing rows of {view.name}"):
            for row in rows:
                keys.append(prefix + row[0])
                values.append(encode(row[1], row[2], row[3:]))
                if len(values) >= size:
                    script(keys=keys, args=values)
                    keys, values = [meta], []
            if values:
                script(keys=keys, args=values)

    # -- reads ---------------------------------------------------------------------------------

    def read_stored_rows(
        self, config: RepoConfig, view: FeatureView, keys: list[bytes], features: list[str]
    ) -> dict[bytes, tuple[Any, ...]]:
        """``key → (event_us, *values)`` for the keys present (missing keys are absent)."""
        client = self._client(config)
        index = {f.name: i for i, f in enumerate(stored_features(view))}
        wanted = [index[f] for f in features]
        decode = codec(view).decode
        prefix = self._row_prefix(config, view)
        unique = list(dict.fromkeys(keys))
        found: dict[bytes, tuple[Any, ...]] = {}
        for i in range(0, len(unique), _READ_CHUNK):
            chunk = unique[i : i + _READ_CHUNK]
            with self._available(config, f"reading {len(unique)} key(s) of {view.name}"):
                blobs = client.mget([prefix + k for k in chunk])
            for key, blob in zip(chunk, blobs, strict=True):
                if blob is None:
                    continue
                event, values = decode(blob)
                found[key] = (event, *(values[j] for j in wanted))
        return found

    async def read_stored_rows_async(
        self, config: RepoConfig, view: FeatureView, keys: list[bytes], features: list[str]
    ) -> dict[bytes, tuple[Any, ...]]:
        """:meth:`read_stored_rows` on ``redis.asyncio``: every chunk's MGET in one pipeline,
        the whole read bounded by ``timeout_s`` (StoreUnavailable past it)."""
        index = {f.name: i for i, f in enumerate(stored_features(view))}
        wanted = [index[f] for f in features]
        decode = codec(view).decode
        prefix = self._row_prefix(config, view)
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        client = self._async_client(config)
        chunks = [unique[i : i + _READ_CHUNK] for i in range(0, len(unique), _READ_CHUNK)]
        with self._available(config, f"reading {len(unique)} key(s) of {view.name}"):
            async with asyncio.timeout(float(config.online_store.timeout_s)):
                async with client.pipeline(transaction=False) as pipe:
                    for chunk in chunks:
                        pipe.mget([prefix + k for k in chunk])
                    replies = await pipe.execute()
        found: dict[bytes, tuple[Any, ...]] = {}
        for chunk, blobs in zip(chunks, replies, strict=True):
            for key, blob in zip(chunk, blobs, strict=True):
                if blob is not None:
                    event, values = decode(blob)
                    found[key] = (event, *(values[j] for j in wanted))
        return found

    def row_count(self, config: RepoConfig, view: FeatureView) -> int:
        with self._available(config, f"counting the rows of {view.name}"):
            rows = self._client(config).hget(self._meta_key(config, view), "rows")
        return int(rows) if rows is not None else 0

    def newest_event_micros(self, config: RepoConfig, view: FeatureView) -> int | None:
        with self._available(config, f"reading the newest event time of {view.name}"):
            newest = self._client(config).hget(self._meta_key(config, view), "newest")
        return int(newest) if newest is not None else None
