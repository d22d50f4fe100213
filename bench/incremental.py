"""Full vs incremental dbt builds of the feature layer, and proof that they give the same tables.

On a demo market scaled to 500 symbols x 1,000 accounts x 756 trading days (3 years):

1. full build of the raw data as of the day before the last one (`dbt build --full-refresh`);
2. the last day arrives: incremental `dbt build`;
3. a late correction of a close 10 trading days back arrives: incremental `dbt build`;
4. a full rebuild of the final raw data in a second warehouse: every table must be identical.

Each build is timed 3 times (`--repeat`) from the same starting warehouse (restored from a copy) and the
median is printed, for `dbt run` (models only) and `dbt build` (models + data and unit tests),
with dbt's own floor for the same nodes (`--empty`: every ref and source reads zero rows).
dbt runs in-process (dbtRunner) after a warm-up parse, as `featurestack build` does.

Usage: .venv/bin/python bench/incremental.py [--symbols 500 --accounts 1000 --days 756]
       [--repeat 3]
Data goes to $FEATURESTACK_DATA_DIR/bench/incremental/ (default data/; kept between runs, the raw
market is reused). `make test` runs it at a tiny size (tests/integration/test_bench.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import duckdb
import pandas as pd

from featurestack.core.settings import Settings, load_settings
from featurestack.demo_data import (
    DemoSpec,
    append_price_correction,
    write_demo_data,
    write_raw_as_of,
)
from featurestack.infra.dbt_ops import run_dbt

ROOT = load_settings().data_dir / "bench" / "incremental"
#: builds per figure (median); --repeat
REPEAT = 3


def settings_for(folder: Path) -> Settings:
    return Settings(folder, folder / "raw", f"sqlite:///{folder / 'mlflow.db'}")


def market(spec: DemoSpec) -> Path:
    """The scaled raw market, generated once per spec."""
    raw = ROOT / f"raw_{spec.symbols}x{spec.accounts}x{spec.days}_{spec.seed}"
    if not (raw / "prices.parquet").exists():
        shutil.rmtree(raw, ignore_errors=True)
        start = time.perf_counter()
        counts = write_demo_data(raw, spec)
        print(f"generated {counts} in {time.perf_counter() - start:.0f} s")
    return raw


def timed_build(settings: Settings, command: str, *extra: str) -> float:
    start = time.perf_counter()
    outcome = run_dbt(settings, command, list(extra))
    elapsed = time.perf_counter() - start
    if not outcome.success:
        raise SystemExit(outcome.summary())
    return elapsed


def median_from(settings: Settings, snapshot: Path | None, command: str, *extra: str) -> float:
    """Median of REPEAT builds, each from the warehouse state saved in ``snapshot``."""
    times = []
    for _ in range(REPEAT):
        if snapshot is not None:
            shutil.copy(snapshot, settings.warehouse)
        times.append(timed_build(settings, command, *extra))
    return statistics.median(times)


def tables(warehouse: Path) -> dict[str, object]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = [
            r[0]
            for r in con.sql(
                "select table_name from information_schema.tables where table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        return {n: con.sql(f"select * from {n} order by all").to_arrow_table() for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=756)
    parser.add_argument("--repeat", type=int, default=3, help="builds per figure (median)")
    args = parser.parse_args()
    global REPEAT
    REPEAT = args.repeat
    spec = DemoSpec(symbols=args.symbols, accounts=args.accounts, days=args.days)
    raw = market(spec)
    days = sorted(pd.read_parquet(raw / "prices.parquet", columns=["ts"])["ts"].unique())
    first = pd.Timestamp(days[0])

    inc = settings_for(ROOT / "inc")
    shutil.rmtree(inc.data_dir, ignore_errors=True)
    write_raw_as_of(raw, inc.raw_dir, pd.Timestamp(days[-2]) + pd.Timedelta("1h"))
    run_dbt(inc, "parse")  # warm-up: imports and manifest, as in a long-lived process
    snap = ROOT / "snapshot.duckdb"

    results: dict[str, dict[str, float]] = {}
    for command in ("run", "build"):
        write_raw_as_of(raw, inc.raw_dir, pd.Timestamp(days[-2]) + pd.Timedelta("1h"))
        full = median_from(inc, None, command, "--full-refresh")
        shutil.copy(inc.warehouse, snap)
        write_raw_as_of(raw, inc.raw_dir, pd.Timestamp(days[-1]) + pd.Timedelta("1h"))
        one_day = median_from(inc, snap, command)
        # dbt's own cost for these nodes with no rows to process (`--empty`): the floor that
        # no incremental logic can go below. It empties tables, so the day is rebuilt after.
        # The raw-contract test (a source holds at least one row) cannot pass on zero rows.
        floor = median_from(inc, snap, command, "--empty", "--exclude", "test_name:raw_contract")
        shutil.copy(snap, inc.warehouse)
        timed_build(inc, command)
        shutil.copy(inc.warehouse, snap)
        append_price_correction(
            inc.raw_dir, "AAA", days[-11], 1.03, pd.Timestamp(days[-1]) + pd.Timedelta("2h")
        )
        correction = median_from(inc, snap, command)
        results[command] = {
            "full": full,
            "one_day": one_day,
            "correction": correction,
            "floor": floor,
        }

    full = settings_for(ROOT / "full")
    shutil.rmtree(full.data_dir, ignore_errors=True)
    shutil.copytree(inc.raw_dir, full.raw_dir)
    timed_build(full, "run", "--full-refresh")
    a, b = tables(inc.warehouse), tables(full.warehouse)
    same = sorted(n for n in a if a[n].equals(b.get(n)))
    differ = sorted(set(a) ^ set(b) | {n for n in a if n in b and not a[n].equals(b[n])})

    with duckdb.connect(str(inc.warehouse), read_only=True) as con:
        sizes = {
            t: con.sql(f"select count(*) from {t}").fetchall()[0][0]
            for t in ("feat_symbol__daily", "feat_market__daily", "feat_account__daily")
        }
        trades = con.sql("select count(*) from int_trades_costed").fetchall()[0][0]
    print(
        f"\nmarket: {args.symbols} symbols x {args.accounts} accounts x {len(days)} trading days "
        f"from {first:%Y-%m-%d}; {trades:,} trades; rows "
        + ", ".join(f"{t} {n:,}" for t, n in sizes.items())
    )
    print(
        "\n| dbt | full build | +1 day, incremental | ratio | +correction 10 days back | ratio "
        "| dbt floor (`--empty`) | +1 day above the floor, vs full |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for command, r in results.items():
        above = (r["one_day"] - r["floor"]) / (r["full"] - r["floor"])
        print(
            f"| `dbt {command}` | {r['full']:.2f} s | {r['one_day']:.2f} s | "
            f"{r['one_day'] / r['full']:.2f} | {r['correction']:.2f} s | "
            f"{r['correction'] / r['full']:.2f} | {r['floor']:.2f} s | {above:.2f} |"
        )
    print(
        f"\nincremental result vs full rebuild: {len(same)} tables identical, differing: {differ}"
    )
    (ROOT / "result.json").write_text(
        json.dumps({"results": results, "identical": same, "differ": differ}, indent=2)
    )
    if differ:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
