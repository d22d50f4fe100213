"""Point-in-time retrieval benchmark: our offline store vs a bare DuckDB ASOF JOIN vs Feast's
stock stores, on the same Parquet, side by side in one run.

    .venv/bin/python bench/pit.py                 # all sizes, 3 runs each (≈ 10 min)
    .venv/bin/python bench/pit.py --sizes 1Mx100k --runs 1

Two phases per size. Alone: each method runs in a fresh process that first imports the same
libraries (Feast, pandas, DuckDB), so peak RSS is comparable, and its first call (what a
training script pays) is timed. Side by side: one process times the methods' warm calls in
alternation, ``--runs`` rounds, so that whatever else the machine does weighs on all of them
alike; the medians and their ratio to the bare join are reported. The clock covers only the
retrieval, from the query to a pandas DataFrame (``get_historical_features(...).to_df()``, or
``.df()`` for the bare join). Every result is reduced to a fingerprint of its sorted rows and
compared with the bare join's, so a fast wrong answer shows up as "DIFFERS" (and the script exits 1).
``--sizes tiny --runs 1`` is what `make test` runs (tests/integration/test_bench.py).
Feast's ``file`` (dask) store is run at the smallest size only by default: it is killed above
16 GiB at 1M × 1M on this machine (``--file-store-sizes`` overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: name -> (feature rows F, entity rows E, distinct entities). The default shape has 10 feature
#: rows per entity over a year (sparse); "dense" has 1,000 entities with 1,000 rows each, like
#: symbols or stores with long daily histories, where many rows fall inside one TTL window.
SIZES = {
    "1Mx100k": (1_000_000, 100_000, 100_000),
    "1Mx1M": (1_000_000, 1_000_000, 100_000),
    "10Mx1M": (10_000_000, 1_000_000, 1_000_000),
    "1Mx1M-dense": (1_000_000, 1_000_000, 1_000),
    # `make test` runs this one (tests/integration/test_bench.py): the code paths, not figures
    "tiny": (20_000, 5_000, 2_000),
}
DEFAULT_SIZES = ["1Mx100k", "1Mx1M", "10Mx1M", "1Mx1M-dense"]
METHODS = ("bare_asof", "ours", "feast_duckdb", "feast_file")
N_FEATURES = 10
TTL_DAYS = 30


def data_dir() -> Path:
    base = Path(os.environ.get("FEATURESTACK_DATA_DIR", REPO / "data"))
    return base / "bench" / "pit"


def generate(size: str) -> tuple[Path, Path]:
    """Feature table of F rows (10 float features, one year) and E entity rows."""
    import duckdb

    f_rows, e_rows, n_ent = SIZES[size]
    out = data_dir() / size
    feats, ents = out / "features.parquet", out / "entities.parquet"
    if feats.exists() and ents.exists():
        return feats, ents
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cols = ", ".join(
        f"(hash(i * {j + 3}) % 1000000)::DOUBLE / 1000 AS f{j}" for j in range(N_FEATURES)
    )
    year_us = 365 * 86400 * 1_000_000
    con.execute(
        f"""COPY (SELECT (hash(i) % {n_ent})::BIGINT AS entity_id,
               TIMESTAMPTZ '2024-01-01' + to_microseconds((hash(i * 7) % {year_us})::BIGINT) AS event_timestamp,
               {cols}
             FROM range({f_rows}) t(i)) TO '{feats}.tmp' (FORMAT parquet, ROW_GROUP_SIZE 122880)"""
    )
    con.execute(
        f"""COPY (SELECT (hash(i + 12345) % {n_ent})::BIGINT AS entity_id,
               TIMESTAMPTZ '2024-01-01' + to_microseconds((hash(i * 11 + 5) % {year_us})::BIGINT) AS event_timestamp
             FROM range({e_rows}) t(i)) TO '{ents}.tmp' (FORMAT parquet)"""
    )
    Path(f"{feats}.tmp").rename(feats)
    Path(f"{ents}.tmp").rename(ents)
    return feats, ents


def fingerprint(df) -> str:
    """Order-independent digest of the rows (features rounded to 1e-9 against float noise)."""
    import pandas as pd

    cols = ["entity_id", "event_timestamp", *[f"f{j}" for j in range(N_FEATURES)]]
    frame = df[cols].copy()
    for j in range(N_FEATURES):
        frame[f"f{j}"] = frame[f"f{j}"].round(9)
    frame = frame.sort_values(cols, na_position="last").reset_index(drop=True)
    return f"{len(frame)}:{int(pd.util.hash_pandas_object(frame, index=False).sum()) & 0xFFFFFFFFFFFF:x}"


def make_feast_store(size: str, feats: Path, offline: str):
    from datetime import timedelta

    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64, Int64

    from featurestack.infra.feast_ops import scratch_repo_config

    repo = data_dir() / size / f"repo_{offline.rsplit('.', 1)[-1]}"
    repo.mkdir(parents=True, exist_ok=True)
    config = scratch_repo_config(repo, "bench", offline)
    entity = Entity(name="entity_id", join_keys=["entity_id"])
    view = FeatureView(
        name="fv",
        entities=[entity],
        ttl=timedelta(days=TTL_DAYS),
        schema=[Field(name="entity_id", dtype=Int64)]
        + [Field(name=f"f{j}", dtype=Float64) for j in range(N_FEATURES)],
        source=FileSource(path=str(feats), timestamp_field="event_timestamp"),
    )
    store = FeatureStore(config=config)
    store.apply([entity, view])
    return store


def make_retriever(method: str, size: str):
    """A function that runs one retrieval with ``method`` and returns the DataFrame."""
    import duckdb
    import pandas as pd

    feats, ents = generate(size)
    refs = [f"fv:f{j}" for j in range(N_FEATURES)]
    store = None
    if method == "ours":
        store = make_feast_store(size, feats, "featurestack.stores.offline.DuckDBAsofOfflineStore")
    elif method == "feast_duckdb":
        store = make_feast_store(size, feats, "duckdb")
    elif method == "feast_file":
        store = make_feast_store(size, feats, "file")
    entity_df = pd.read_parquet(ents)

    def retrieve() -> pd.DataFrame:
        if store is not None:
            return store.get_historical_features(entity_df=entity_df, features=refs).to_df()
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.register("entities", entity_df)
        cols = ", ".join(
            f"CASE WHEN f.event_timestamp >= e.event_timestamp - INTERVAL {TTL_DAYS} DAY "
            f"THEN f.f{j} END AS f{j}"
            for j in range(N_FEATURES)
        )
        return con.sql(
            f"SELECT e.entity_id, e.event_timestamp, {cols} FROM entities e "
            f"ASOF LEFT JOIN read_parquet('{feats}') f "
            "ON e.entity_id = f.entity_id AND e.event_timestamp >= f.event_timestamp"
        ).df()

    return retrieve


def child(method: str, size: str) -> dict:
    """Isolated measurement in this fresh process: first call, one warm call, peak RSS."""
    import resource

    import feast  # noqa: F401  (same imports in every child, for comparable RSS)

    retrieve = make_retriever(method, size)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    df = retrieve()  # the first call, as a training script makes it
    first = time.perf_counter() - start
    result = {"rows": len(df), "fingerprint": fingerprint(df), "first_seconds": first}
    del df
    start = time.perf_counter()
    retrieve()
    warm = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        **result,
        "warm_seconds": warm,
        "peak_rss_mib": rss / 1024,
        "rss_before_mib": rss_before / 1024,
    }


def interleaved(size: str, methods: list[str], rounds: int) -> dict:
    """Warm timings of several methods in one process, alternating round by round, so that
    whatever else the machine does in the meantime weighs on all of them alike."""
    retrievers = {m: make_retriever(m, size) for m in methods}
    for retrieve in retrievers.values():
        retrieve()
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for method, retrieve in retrievers.items():
            start = time.perf_counter()
            retrieve()
            times[method].append(time.perf_counter() - start)
    return times


def run_child(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="*", default=DEFAULT_SIZES, choices=list(SIZES))
    parser.add_argument("--runs", type=int, default=5, help="interleaved warm rounds")
    parser.add_argument("--file-store-sizes", nargs="*", default=["1Mx100k"])
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "interleaved":
            size, rounds, *methods = args.child[1:]
            print(json.dumps(interleaved(size, methods, int(rounds))))
        else:
            print(json.dumps(child(*args.child)))
        return

    print(
        f"machine: {os.cpu_count()} cores; {args.runs} interleaved warm rounds per size; "
        f"TTL {TTL_DAYS} days; {N_FEATURES} float features"
    )
    rows, wrong = [], []
    for size in args.sizes:
        t = time.perf_counter()
        generate(size)
        print(f"[{size}] data ready ({time.perf_counter() - t:.1f} s)", flush=True)
        results = {}
        for method in METHODS:
            if method == "feast_file" and size not in args.file_store_sizes:
                results[method] = {"error": "skipped (killed above 16 GiB on this machine)"}
                continue
            r = run_child([method, size], args.timeout)
            if "error" in r:
                print(f"  {method:13s} {r['error']}", flush=True)
            else:
                print(
                    f"  {method:13s} alone: first call {r['first_seconds']:.2f} s, "
                    f"warm {r['warm_seconds']:.2f} s, peak {r['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
            results[method] = r
        # Warm timings side by side; a method whose warm call took over 20 s alone is not
        # repeated (its single warm call stands).
        fast = [m for m, r in results.items() if "error" not in r and r["warm_seconds"] < 20]
        timed = run_child(["interleaved", size, str(args.runs), *fast], args.timeout * 3)
        for method, r in results.items():
            if "error" in r:
                continue
            samples = timed.get(method) or [r["warm_seconds"]]
            r["seconds"] = statistics.median(samples)
            print(
                f"  {method:13s} interleaved: {', '.join(f'{x:.2f}' for x in samples)} s",
                flush=True,
            )
        base = results["bare_asof"]
        for method in METHODS:
            r = results[method]
            if "error" in r:
                rows.append(f"| {size} | {method} | – | – | – | – | – | {r['error']} |")
                if method in ("bare_asof", "ours"):
                    wrong.append(f"{size} {method}: {r['error']}")
                continue
            same = (
                "same rows"
                if r["fingerprint"] == base["fingerprint"]
                else f"DIFFERS ({r['rows']} rows)"
            )
            if same != "same rows":
                wrong.append(f"{size} {method}")
            rows.append(
                f"| {size} | {method} | {r['seconds']:.2f} | {r['seconds'] / base['seconds']:.2f} "
                f"| {r['first_seconds']:.2f} | {r['peak_rss_mib']:.0f} "
                f"| {r['peak_rss_mib'] / base['peak_rss_mib']:.2f} | {same} |"
            )

    print(
        "\n| F × E | method | median s (warm) | × bare ASOF | first call s | peak RSS MiB "
        "| RSS × bare | result |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if wrong:
        raise SystemExit(f"results differ from the bare ASOF join: {', '.join(wrong)}")


if __name__ == "__main__":
    main()
