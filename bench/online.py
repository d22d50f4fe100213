"""Materialization throughput into the online store, side by side with the store's own floor.

N entities x 10 float features, one row each, in a Parquet source behind a real Feast repo:

* floor     - SQLite alone: `executemany` of prepared wide rows (key + 10 REAL) in 50k-row
              transactions, WAL mode; conversion from Arrow not timed (the store's capacity);
* ours      - `featurestack.infra.online_materialize.materialize_view`: DuckDB pull-latest streamed as
              Arrow batches → our SQLiteOnlineStore (newest-event-wins upserts), end to end;
* feast+ours  - Feast's own `materialize` (protobuf per value) into our store;
* feast+stock - Feast's own `materialize` into Feast's stock SQLite store;
* redis-floor - Redis alone: pipelined `HSET` of the 10 values per entity (1,000 per round trip);
* redis-ours  - `materialize_view` into our RedisOnlineStore (newest-event-wins Lua upserts);
* feast+redis-stock - Feast's own `materialize` into Feast's stock Redis store.

Each method runs in a fresh process (peak RSS is that process's). Feast's own paths run on a
smaller N (they take minutes at 1M). Ours also runs at 3N to show RSS does not grow with N.
Redis runs use FEATURESTACK_REDIS_URL (default redis://127.0.0.1:6379/0) and delete their keys.

Usage: .venv/bin/python bench/online.py [--entities 1000000] [--feast-entities 100000]
       [--redis-only]
Data under data/bench/online/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestack.core.settings import load_settings

ROOT = load_settings().data_dir / "bench" / "online"
FEATURES = [f"f{i}" for i in range(10)]
NOW = datetime.now(UTC).replace(microsecond=0)
REDIS_URL = os.environ.get("FEATURESTACK_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_store_config(method: str) -> dict:
    from urllib.parse import urlparse

    from featurestack.infra.feast_ops import REDIS_ONLINE_STORE

    if method == "redis-ours":
        return {"type": REDIS_ONLINE_STORE, "url": REDIS_URL}
    url = urlparse(REDIS_URL)
    db = url.path.strip("/") or "0"
    return {"type": "redis", "connection_string": f"{url.hostname}:{url.port or 6379},db={db}"}


def drop_redis_keys(pattern: bytes) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    batch = []
    for key in client.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


def source(n: int) -> Path:
    path = ROOT / f"source_{n}.parquet"
    if not path.exists():
        rng = np.random.default_rng(n)
        ts = pa.array(
            np.full(n, np.datetime64(NOW.replace(tzinfo=None) - timedelta(hours=1), "us")),
            pa.timestamp("us", "UTC"),
        )
        cols = {"id": pa.array(np.arange(n, dtype=np.int64)), "event_timestamp": ts}
        cols |= {f: pa.array(rng.standard_normal(n)) for f in FEATURES}
        ROOT.mkdir(parents=True, exist_ok=True)
        # Row groups as the publisher writes them (validation/publish.py).
        pq.write_table(pa.table(cols), path, row_group_size=122_880)
    return path


def repo(folder: Path, parquet: Path, online: str | dict):
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    from featurestack.infra.feast_ops import scratch_repo_config

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    entity = Entity(name="item", join_keys=["id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="items",
        entities=[entity],
        ttl=timedelta(days=30),
        schema=[Field(name="id", dtype=Int64), *[Field(name=f, dtype=Float64) for f in FEATURES]],
        source=FileSource(name="src", path=str(parquet), timestamp_field="event_timestamp"),
    )
    offline = "featurestack.stores.offline.DuckDBAsofOfflineStore"
    store = FeatureStore(config=scratch_repo_config(folder, "bench", offline, online))
    store.apply([entity, view])
    return store, store.get_feature_view("items")


def child(method: str, n: int) -> dict:
    parquet = source(n)
    folder = ROOT / f"run_{method}_{n}"
    start_date, end_date = NOW - timedelta(days=2), NOW
    if method == "floor":
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        table = pq.read_table(parquet)
        keys = [b"i" + int(v).to_bytes(8, "big", signed=True) for v in table["id"].to_pylist()]
        rows = list(zip(keys, *(table[f].to_pylist() for f in FEATURES), strict=True))
        con = sqlite3.connect(str(folder / "floor.db"), isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"{f} REAL" for f in FEATURES)
        con.execute(f"CREATE TABLE t (k BLOB PRIMARY KEY, {cols}) WITHOUT ROWID")
        sql = f"INSERT INTO t VALUES ({', '.join('?' * (len(FEATURES) + 1))})"
        t0 = time.perf_counter()
        for i in range(0, len(rows), 50_000):
            con.execute("BEGIN")
            con.executemany(sql, rows[i : i + 50_000])
            con.execute("COMMIT")
        seconds = time.perf_counter() - t0
    elif method == "redis-floor":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        table = pq.read_table(parquet)
        cols = [table[f].to_pylist() for f in FEATURES]
        prefix = b"bench:floor:"
        keys = [prefix + int(v).to_bytes(8, "big", signed=True) for v in table["id"].to_pylist()]
        mappings = [dict(zip(FEATURES, vals, strict=True)) for vals in zip(*cols, strict=True)]
        t0 = time.perf_counter()
        for i in range(0, n, 1000):
            pipe = client.pipeline(transaction=False)
            for key, mapping in zip(keys[i : i + 1000], mappings[i : i + 1000], strict=True):
                pipe.hset(key, mapping=mapping)
            pipe.execute()
        seconds = time.perf_counter() - t0
        assert client.hget(keys[-1], "f0") is not None
        drop_redis_keys(prefix + b"*")
    else:
        from featurestack.infra.feast_ops import ONLINE_STORE
        from featurestack.infra.online_materialize import materialize_view

        online: str | dict = {"feast+stock": "sqlite"}.get(method, ONLINE_STORE)
        if method.startswith(("redis", "feast+redis")):
            online = redis_store_config(method.removeprefix("feast+").replace("-stock", ""))
        store, view = repo(folder, parquet, online)
        t0 = time.perf_counter()
        if method in ("ours", "redis-ours"):
            materialize_view(store, view, start_date, end_date)
        else:
            store.materialize(start_date, end_date, feature_views=["items"])
        seconds = time.perf_counter() - t0
        # Every entity must be there with the right values.
        got = store.get_online_features(
            features=[f"items:{f}" for f in FEATURES[:2]], entity_rows=[{"id": 0}, {"id": n - 1}]
        ).to_dict()
        expected = pq.read_table(parquet, columns=["f0"])["f0"]
        assert got["f0"] == [expected[0].as_py(), expected[n - 1].as_py()], got
        if isinstance(online, dict):
            store.teardown()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "rows": n, "seconds": seconds, "rss_mib": rss_mib}


def open_repo(folder: Path, online: str):
    from feast import FeatureStore

    from featurestack.infra.feast_ops import scratch_repo_config

    offline = "featurestack.stores.offline.DuckDBAsofOfflineStore"
    return FeatureStore(config=scratch_repo_config(folder, "bench", offline, online))


def latency(n: int, calls: int, feast_calls: int, redis: bool = False) -> dict:
    """p50/p99 per call of: the direct store read (floor: SQLite SELECT, or Redis MGET of the
    pre-encoded keys), our OnlineReader, Feast's get_online_features on our store; 1, 100 and
    1,000 random entities per call, interleaved."""
    import random

    from featurestack.infra.feast_ops import ONLINE_STORE
    from featurestack.infra.online_materialize import materialize_view
    from featurestack.infra.online_reader import OnlineReader
    from featurestack.stores.online import encode_key_part

    if redis:
        import redis as redis_client

        store, view = repo(ROOT / f"latency_redis_{n}", source(n), redis_store_config("redis-ours"))
        materialize_view(store, view, NOW - timedelta(days=2), NOW)
        online = store._get_provider().online_store
        prefix = online._row_prefix(store.config, view)
        client = redis_client.Redis.from_url(REDIS_URL)

        def floor_read(keys: list[bytes]) -> list:
            return [v for v in client.mget([prefix + k for k in keys]) if v is not None]
    else:
        store = open_repo(ROOT / f"run_ours_{n}", ONLINE_STORE)
        db = sqlite3.connect(str(ROOT / f"run_ours_{n}" / "online.db"))
        cols = ", ".join(["entity_key", "event_ts", *FEATURES])

        def floor_read(keys: list[bytes]) -> list:
            marks = ",".join("?" * len(keys))
            sql = f"SELECT {cols} FROM fs_bench_items WHERE entity_key IN ({marks})"
            return db.execute(sql, keys).fetchall()

    refs = [f"items:{f}" for f in FEATURES]
    reader = OnlineReader(store, refs)
    rng = random.Random(0)
    out: dict = {}
    for size in (1, 100, 1000):
        times: dict[str, list[float]] = {"floor": [], "ours": [], "feast": []}
        for i in range(calls + 50):
            ids = [rng.randrange(n) for _ in range(size)]
            keys = [encode_key_part(k) for k in ids]
            rows = [{"id": k} for k in ids]
            unique = list(dict.fromkeys(keys))
            t0 = time.perf_counter()
            fetched = floor_read(unique)
            t1 = time.perf_counter()
            got = reader.read(rows)
            t2 = time.perf_counter()
            if i >= 50:  # after warm-up
                times["floor"].append(t1 - t0)
                times["ours"].append(t2 - t1)
            if i < 50 + feast_calls:
                t3 = time.perf_counter()
                feast = store.get_online_features(features=refs, entity_rows=rows).to_dict()
                t4 = time.perf_counter()
                if i >= 50:
                    times["feast"].append(t4 - t3)
                assert feast["f0"] == got["f0"]
            assert len(fetched) == len(set(ids)) and None not in got["f0"]
        out[size] = {
            m: {
                "calls": len(v),
                "p50_ms": 1000 * float(np.percentile(v, 50)),
                "p99_ms": 1000 * float(np.percentile(v, 99)),
            }
            for m, v in times.items()
        }
    if redis:
        store.teardown()
    return out


def run_child(method: str, n: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, "--entities", str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--feast-entities", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1000, help="lookups per size (after warm-up)")
    parser.add_argument(
        "--feast-calls", type=int, default=200, help="lookups per size through Feast (slower)"
    )
    parser.add_argument("--latency-only", action="store_true", help="skip the throughput runs")
    parser.add_argument("--redis-only", action="store_true", help="only the Redis throughput runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child in ("latency", "latency-redis"):
        redis = args.child == "latency-redis"
        print(json.dumps(latency(args.entities, args.calls, args.feast_calls, redis)))
        return
    if args.child:
        print(json.dumps(child(args.child, args.entities)))
        return
    n, small = args.entities, args.feast_entities
    if args.redis_only:
        throughput(n, small, REDIS_RUNS)
        return
    if not args.latency_only:
        throughput(n, small, SQLITE_RUNS)
        throughput(n, small, REDIS_RUNS)
    elif not (ROOT / f"run_ours_{n}" / "online.db").exists():
        run_child("ours", n)
    for kind in ("latency", "latency-redis"):
        print_latency(kind, n, args.calls, args.feast_calls)


def print_latency(kind: str, n: int, calls: int, feast_calls: int) -> None:
    command = [sys.executable, __file__, "--child", kind, "--entities", str(n)]
    command += ["--calls", str(calls), "--feast-calls", str(feast_calls)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    lat = json.loads(out.stdout.strip().splitlines()[-1])
    floor = "direct Redis MGET" if kind == "latency-redis" else "direct SQLite read"
    store = "Redis" if kind == "latency-redis" else "SQLite"
    print(
        f"\nLookups of 10 features, our {store} store, {n:,} entities (ms per call, p50 / p99):\n"
    )
    print(
        f"| entities | {floor} (floor) | ours (OnlineReader) | goal p99 ≤ 2×floor+0.5 | Feast get_online_features |"
    )
    print("|---|---|---|---|---|")
    for size, m in lat.items():
        goal = 2 * m["floor"]["p99_ms"] + 0.5
        ok = "met" if m["ours"]["p99_ms"] <= goal else "NOT met"
        print(
            f"| {size} | {m['floor']['p50_ms']:.3f} / {m['floor']['p99_ms']:.3f} "
            f"| {m['ours']['p50_ms']:.3f} / {m['ours']['p99_ms']:.3f} "
            f"| {goal:.2f} ms: {ok} "
            f"| {m['feast']['p50_ms']:.2f} / {m['feast']['p99_ms']:.2f} ({m['feast']['calls']} calls) |"
        )
    (ROOT / f"{kind}.json").write_text(json.dumps(lat, indent=2))


SQLITE_RUNS = [
    "floor",
    "ours",
    "ours*3",
    "floor@small",
    "ours@small",
    "feast+ours@small",
    "feast+stock@small",
]
REDIS_RUNS = [
    "redis-floor",
    "redis-ours",
    "redis-ours*3",
    "redis-floor@small",
    "redis-ours@small",
    "feast+redis-stock@small",
]


def throughput(n: int, small: int, plan: list[str]) -> None:
    """Run each ``method[*3|@small]`` in its own process; ratios against the same store's
    floor at the same N, and against Feast's stock path for that store. ``*3`` (3N entities)
    shows whether peak RSS grows with N."""
    runs = []
    for item in plan:
        method, _, size = item.partition("@") if "@" in item else item.partition("*")
        rows = small if size == "small" else n * int(size) if size else n
        runs.append(run_child(method, rows))
    rate = {(r["method"], r["rows"]): r["rows"] / r["seconds"] for r in runs}
    print(
        "\n| method | entities | seconds | rows/s | × floor (same N) | × Feast stock | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        redis = r["method"].startswith(("redis", "feast+redis"))
        floor = rate.get(("redis-floor" if redis else "floor", r["rows"]))
        stock = rate.get(("feast+redis-stock" if redis else "feast+stock", r["rows"]))
        own = rate[(r["method"], r["rows"])]
        print(
            f"| {r['method']} | {r['rows']:,} | {r['seconds']:.2f} | {own:,.0f} "
            f"| {f'{own / floor:.2f}' if floor else '–'} "
            f"| {f'{own / stock:.1f}' if stock else '–'} | {r['rss_mib']:.0f} MiB |"
        )
    name = "result_redis.json" if plan is REDIS_RUNS else "result.json"
    (ROOT / name).write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
