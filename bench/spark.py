"""DuckDB against local Spark, step by step, on the same data: what moving to the spark profile
costs on one machine, and where Spark's time goes.

    .venv/bin/python bench/spark.py                         # 1M x 1M retrieval, 1M pulled, demo build
    .venv/bin/python bench/spark.py --tiny                  # what `make test` runs (no dbt)
    .venv/bin/python bench/spark.py --rows 1000000 --entities 1000000 --keys 500000 \
        --dbt --symbols 50 --accounts 200 --days 250

Steps (each timed on both engines, results compared; the script exits 1 on a difference):

- point-in-time retrieval: our DuckDB store and our Spark store (featurestack/stores/
  spark_offline.py) on the same Parquet feature table and entity rows, to a pandas DataFrame;
  the answers must be equal row for row;
- materialization pull: ``pull_latest`` (newest row of every key) streamed as Arrow batches,
  as featurestack's materialization reads it; the same rows on both;
- with ``--dbt``: ``dbt build`` from scratch and a +1 day incremental build of the demo market
  on each engine (DuckDB target and Spark target), each in a fresh process (dbt, and for
  Spark the JVM, start inside the timing: what a run pays), and the gate reading the built
  tables (DuckDB warehouse, or the Spark tables' Parquet).

Spark runs ``local[2]`` (FEATURESTACK_SPARK_MASTER) in this process; its JVM start-up is
reported on its own line and excluded from the step timings.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SPARK_STORE = "featurestack.stores.spark_offline.SparkAsofOfflineStore"
DUCKDB_STORE = "featurestack.stores.offline.DuckDBAsofOfflineStore"
N_FEATURES = 10
TTL_DAYS = 30


def data_dir() -> Path:
    return Path(os.environ.get("FEATURESTACK_DATA_DIR", REPO / "data")) / "bench" / "spark"


def generate(rows: int, entities: int, keys: int) -> tuple[Path, Path]:
    """A feature table of ``rows`` rows over ``keys`` keys (one year, 10 float features) and
    ``entities`` entity rows, as Parquet with microsecond instants (what Spark reads)."""
    import duckdb

    out = data_dir() / f"{rows}x{entities}x{keys}"
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
        f"""COPY (SELECT (hash(i) % {keys})::BIGINT AS entity_id,
               TIMESTAMPTZ '2024-01-01' + to_microseconds((hash(i * 7) % {year_us})::BIGINT)
                 AS event_timestamp, {cols}
             FROM range({rows}) t(i)) TO '{feats}' (FORMAT parquet, ROW_GROUP_SIZE 122880)"""
    )
    con.execute(
        f"""COPY (SELECT (hash(i + 12345) % {keys})::BIGINT AS entity_id,
               TIMESTAMPTZ '2024-01-01' + to_microseconds((hash(i * 11 + 5) % {year_us})::BIGINT)
                 AS event_timestamp
             FROM range({entities}) t(i)) TO '{ents}' (FORMAT parquet)"""
    )
    return feats, ents


def make_store(folder: Path, feats: Path, offline: str) -> Any:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64, Int64

    from featurestack.infra.feast_ops import scratch_repo_config

    folder.mkdir(parents=True, exist_ok=True)
    entity = Entity(name="entity_id", join_keys=["entity_id"])
    view = FeatureView(
        name="v",
        entities=[entity],
        ttl=timedelta(days=TTL_DAYS),
        schema=[Field(name="entity_id", dtype=Int64)]
        + [Field(name=f"f{j}", dtype=Float64) for j in range(N_FEATURES)],
        source=FileSource(path=str(feats), timestamp_field="event_timestamp"),
    )
    store = FeatureStore(config=scratch_repo_config(folder, "bench", offline))
    store.apply([entity, view])
    return store


def fingerprint(frame: Any, keys: list[str]) -> str:
    """Rows sorted by ``keys``, hashed: equal answers, equal fingerprints."""
    import pandas as pd

    frame = frame.sort_values(keys).reset_index(drop=True)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def store_steps(args: argparse.Namespace, table: list[list[str]]) -> bool:
    """Point-in-time retrieval and the materialization pull on both stores."""
    from datetime import UTC, datetime

    import pandas as pd
    import pyarrow as pa

    from featurestack.spark.session import get_spark

    feats, ents = generate(args.rows, args.entities, args.keys)
    entity_df = pd.read_parquet(ents)
    t_jvm, _ = timed(lambda: get_spark(data_dir(), catalog="in-memory"))
    table.append(["Spark session start (JVM)", "–", f"{t_jvm:.1f} s", "", "once per process"])
    refs = [f"v:f{j}" for j in range(N_FEATURES)]
    stores = {
        "duckdb": make_store(data_dir() / "repo_duckdb", feats, DUCKDB_STORE),
        "spark": make_store(data_dir() / "repo_spark", feats, SPARK_STORE),
    }
    ok = True
    label = f"point-in-time {args.entities:,} entity rows × {args.rows:,} feature rows"
    times, prints = {}, {}
    for name, store in stores.items():
        seconds = []
        for _ in range(args.runs):
            t, out = timed(
                lambda s=store: s.get_historical_features(
                    entity_df=entity_df, features=refs
                ).to_df()
            )
            seconds.append(t)
        times[name] = min(seconds)
        prints[name] = fingerprint(out, ["entity_id", "event_timestamp"])
    same = prints["duckdb"] == prints["spark"]
    ok &= same
    table.append(
        [
            label,
            f"{times['duckdb']:.2f} s",
            f"{times['spark']:.2f} s",
            f"{times['spark'] / times['duckdb']:.1f}×",
            "same rows" if same else "DIFFERS",
        ]
    )
    start, end = datetime(2023, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    pulled, prints = {}, {}
    for name, store in stores.items():
        view = store.get_feature_view("v")
        offline = store._get_provider().offline_store

        def pull(o: Any = offline, v: Any = view, c: Any = store.config) -> pa.Table:
            job = o.pull_latest_from_table_or_query(
                c, v.batch_source, ["entity_id"], [f"f{j}" for j in range(N_FEATURES)],
                "event_timestamp", None, start, end,
            )  # fmt: skip
            return pa.Table.from_batches(list(job.iter_batches(50_000)))

        pulled[name], result = timed(pull)
        prints[name] = fingerprint(result.to_pandas(), ["entity_id"])
    same = prints["duckdb"] == prints["spark"]
    ok &= same
    table.append(
        [
            f"materialization pull, newest row of {args.keys:,} keys (Arrow batches)",
            f"{pulled['duckdb']:.2f} s",
            f"{pulled['spark']:.2f} s",
            f"{pulled['spark'] / pulled['duckdb']:.1f}×",
            "same rows" if same else "DIFFERS",
        ]
    )
    return ok


DBT_CHILD = """
import sys, time
from pathlib import Path
from featurestack.core.settings import load_settings
from featurestack.infra.dbt_ops import run_dbt
settings = load_settings(sys.argv[1], profile=sys.argv[2])
extra = sys.argv[3:]
t0 = time.perf_counter()
outcome = run_dbt(settings, "run", extra=extra)
print("SECONDS", time.perf_counter() - t0, outcome.success, outcome.summary())
"""


def dbt_step(folder: Path, profile: str, extra: list[str]) -> float:
    """One ``dbt run`` in a fresh process; wall time, dbt's and the JVM's start included."""
    env = {**os.environ, "FEATURESTACK_PROFILE": profile, "FEATURESTACK_DATA_DIR": str(folder)}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", DBT_CHILD, str(folder), profile, *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=7200,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    if done.returncode != 0 or " True " not in done.stdout:
        raise SystemExit(f"dbt on {profile} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def dbt_steps(args: argparse.Namespace, table: list[list[str]]) -> bool:
    """Full build and +1 day on both engines, and the gate's read of the built tables."""
    import pandas as pd

    from featurestack.demo_data import DemoSpec, write_demo_data, write_raw_as_of

    base = data_dir() / f"market_{args.symbols}x{args.accounts}x{args.days}"
    generated = base / "generated"
    if not (generated / "prices.parquet").exists():
        write_demo_data(generated, DemoSpec(args.symbols, args.accounts, args.days, seed=7))
    days = sorted(pd.read_parquet(generated / "prices.parquet")["ts"].unique())
    results: dict[str, dict[str, float]] = {}
    for engine, profile in (("duckdb", "local"), ("spark", "spark")):
        folder = base / engine
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        write_raw_as_of(generated, folder / "raw", days[-2] + pd.Timedelta("1h"))
        full = dbt_step(folder, profile, [])
        write_raw_as_of(generated, folder / "raw", days[-1] + pd.Timedelta("1h"))
        plus_one = dbt_step(folder, profile, [])
        results[engine] = {"full": full, "incremental": plus_one}
        results[engine]["gate_read"] = gate_read(folder, profile)
    size = f"{args.symbols} symbols × {args.accounts} accounts × {args.days} days"
    for step, title in (
        ("full", f"`dbt run` from scratch, {size} (fresh process)"),
        ("incremental", "`dbt run` +1 day, incremental (fresh process)"),
        ("gate_read", "the gate's read of every built table (DuckDB over Parquet for Spark)"),
    ):
        d, s = results["duckdb"][step], results["spark"][step]
        table.append([title, f"{d:.1f} s", f"{s:.1f} s", f"{s / d:.1f}×", ""])
    return True


def gate_read(folder: Path, profile: str) -> float:
    """Every built table read to Arrow the way the gate's Warehouse reads it."""
    from featurestack.core.settings import load_settings
    from validation.gate import Warehouse, _spark_schema

    settings = load_settings(folder, profile=profile)
    t0 = time.perf_counter()
    warehouse = Warehouse(settings.warehouse, spark_schema=_spark_schema(settings))
    try:
        for name in sorted(warehouse.tables):
            relation = warehouse.relation(name)
            warehouse.con.sql(f"SELECT * FROM {relation}").to_arrow_table()
    finally:
        warehouse.close()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="feature rows")
    parser.add_argument("--entities", type=int, default=1_000_000, help="entity rows")
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct keys")
    parser.add_argument("--runs", type=int, default=1, help="timed retrievals per store (best)")
    parser.add_argument("--dbt", action="store_true", help="also dbt builds and the gate's read")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=250)
    parser.add_argument("--tiny", action="store_true", help="small sizes, no dbt (`make test`)")
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.entities, args.keys, args.dbt = 20_000, 5_000, 2_000, False
    table: list[list[str]] = []
    ok = store_steps(args, table)
    if args.dbt:
        ok &= dbt_steps(args, table)
    print("| step | DuckDB | Spark local[2] | Spark / DuckDB | check |")
    print("| --- | --- | --- | --- | --- |")
    for row in table:
        print("| " + " | ".join(row) + " |")
    if not ok:
        print("Spark and DuckDB answers differ", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
