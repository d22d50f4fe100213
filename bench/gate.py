"""What the gate adds to the dbt build it follows, on the demo market scaled to 3 years.

On 500 symbols x 1,000 accounts x 756 trading days (bench/incremental.py's market):

1. raw data as of the day before the last one: full `dbt build`, then the gate (first
   publication: every table validated whole), which publishes;
2. the last day arrives: incremental `dbt build`, then the gate (only the rows that would
   change are validated row by row), which publishes;
3. baseline, same state as 2: the gate validating every table whole (what it did before it
   compared with the published files).

Two ways of timing step 2:

* **as `featurestack run` runs them** (the daily case as users run it): a fresh process per
  repetition runs stage 1 (dbt build in-process, cold, while the gate's worker process imports
  Great Expectations, as `featurestack run` does) and stage 2 (the gate + publish), against the
  same cold build in a fresh process with no gate at all;
* **warm, in one process**: dbt after a warm-up parse, Great Expectations imported before
  timing: the stricter comparison, where dbt pays no start-up at all.

Median of 3 runs each (``--repeat``), from the same starting state.

Usage: .venv/bin/python bench/gate.py [--symbols 500 --accounts 1000 --days 756] [--repeat 3]
Data goes to $FEATURESTACK_DATA_DIR/bench/gate/ (default data/bench/gate/; the raw market is
shared with bench/incremental.py). `make test` runs it at a tiny size (tests/integration/test_bench.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from incremental import market, settings_for, timed_build

from featurestack.core.settings import load_settings
from featurestack.demo_data import DemoSpec, write_raw_as_of
from validation.config import GateConfig, load_gate_config

ROOT = load_settings().data_dir / "bench" / "gate"


def stages_as_in_run(folder: str, with_gate: bool) -> None:
    """Stages 1 and 2 of `featurestack run` in this (fresh) process; prints their seconds.

    ``with_gate=False`` is the baseline: the same dbt build, cold, with no gate at all.
    """
    from featurestack.infra.dbt_ops import run_dbt
    from validation.gate import GateWorker

    s = settings_for(Path(folder))
    start = time.perf_counter()
    worker = GateWorker() if with_gate else None  # imports GX on the other core, as run does
    outcome = run_dbt(s)
    build = time.perf_counter() - start
    if not outcome.success:
        raise SystemExit(outcome.summary())
    gate = waited = 0.0
    if worker is not None:
        start = time.perf_counter()
        result = worker.run(s)
        gate = time.perf_counter() - start
        waited = worker.waited
        worker.close()
        if not result.success:
            raise SystemExit(result.summary())
    print(json.dumps({"build": build, "gate": gate, "waited_for_worker": waited}))


REPEAT = 3


def median_of_3(prepare: Callable[[], None], work: Callable[[], object]) -> tuple[float, object]:
    times, out = [], None
    for _ in range(REPEAT):
        prepare()
        start = time.perf_counter()
        out = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=756)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--stages", help=argparse.SUPPRESS)  # internal: one run's stages 1-2
    parser.add_argument("--no-gate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages:
        stages_as_in_run(args.stages, with_gate=not args.no_gate)
        return
    global REPEAT
    REPEAT = args.repeat
    spec = DemoSpec(symbols=args.symbols, accounts=args.accounts, days=args.days)
    raw = market(spec)
    days = sorted(pd.read_parquet(raw / "prices.parquet", columns=["ts"])["ts"].unique())

    start = time.perf_counter()
    import great_expectations  # noqa: F401

    gx_import = time.perf_counter() - start
    from validation.gate import run_gate

    s = settings_for(ROOT / "run")
    shutil.rmtree(s.data_dir, ignore_errors=True)
    write_raw_as_of(raw, s.raw_dir, pd.Timestamp(days[-2]) + pd.Timedelta("1h"))
    timed_build(s, "parse")  # warm-up
    config = load_gate_config()
    snap = ROOT / "snapshot"

    def restore(published: bool) -> Callable[[], None]:
        def go() -> None:
            shutil.copy(snap / "warehouse.duckdb", s.warehouse)
            shutil.rmtree(s.published_dir, ignore_errors=True)
            if published:
                shutil.copytree(snap / "published", s.published_dir, symlinks=True)

        return go

    def gate(cfg: GateConfig, whole: bool = False) -> Callable[[], object]:
        def go() -> object:
            if whole:  # baseline: nothing published to compare with → every table whole
                shutil.rmtree(s.published_dir, ignore_errors=True)
            result = run_gate(s, config=cfg)
            if not result.success:
                raise SystemExit(result.summary())
            return result

        return go

    # 1. full build, first publication
    full_build = timed_build(s, "build", "--full-refresh")
    snap.mkdir(parents=True, exist_ok=True)
    shutil.copy(s.warehouse, snap / "warehouse.duckdb")
    full_gate, _ = median_of_3(restore(False), gate(config))
    shutil.rmtree(snap / "published", ignore_errors=True)
    shutil.copytree(s.published_dir, snap / "published", symlinks=True)

    # 2. the last day, incremental
    write_raw_as_of(raw, s.raw_dir, pd.Timestamp(days[-1]) + pd.Timedelta("1h"))
    shutil.copy(s.warehouse, snap / "warehouse_before.duckdb")

    def fresh_process(*flags: str) -> dict[str, float]:
        shutil.copy(snap / "warehouse_before.duckdb", s.warehouse)
        restore(True)()
        shutil.copy(snap / "warehouse_before.duckdb", s.warehouse)
        out = subprocess.run(
            [sys.executable, __file__, "--stages", str(s.data_dir), *flags],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])

    # stages 1-2 as `featurestack run` runs them, and the same build with no gate at all,
    # alternating, each in a fresh process
    as_in_run, alone = [], []
    for _ in range(REPEAT):
        as_in_run.append(fresh_process())
        alone.append(fresh_process("--no-gate"))
    run_build = statistics.median(r["build"] for r in as_in_run)
    run_gate_s = statistics.median(r["gate"] for r in as_in_run)
    run_total = statistics.median(r["build"] + r["gate"] for r in as_in_run)
    dbt_alone = statistics.median(r["build"] for r in alone)
    builds = []
    for _ in range(REPEAT):
        shutil.copy(snap / "warehouse_before.duckdb", s.warehouse)
        builds.append(timed_build(s, "build"))
    inc_build = statistics.median(builds)
    shutil.copy(s.warehouse, snap / "warehouse.duckdb")
    inc_gate, result = median_of_3(restore(True), gate(config))
    # 3. baseline: the same state validated whole (no row-count ratio or drift: nothing published)
    whole_gate, _ = median_of_3(restore(True), gate(config, whole=True))

    rows = {t.table: (t.rows, t.batch_rows) for t in result.tables}  # type: ignore[attr-defined]
    print(f"\nmarket: {args.symbols} symbols x {args.accounts} accounts x {len(days)} days")
    print("rows (table: total, validated row by row after +1 day): " + str(rows))
    print(
        f"Great Expectations import: {gx_import:.2f} s (paid while dbt builds in `featurestack run`)"
    )
    print("\n| step | dbt build | gate | gate / dbt build |")
    print("|---|---|---|---|")
    print(
        f"| +1 day, as `featurestack run` runs stages 1-2 (fresh process) | {run_build:.2f} s | {run_gate_s:.2f} s | {run_gate_s / run_build:.2f} |"
    )
    print(
        f"\nwhat the gate adds, fresh processes: stages 1-2 {run_total:.2f} s vs the same dbt build "
        f"with no gate {dbt_alone:.2f} s → +{(run_total - dbt_alone) / dbt_alone:.0%} (goal < 30 %)"
    )
    print(
        f"what the gate adds to the full build of the market: +{full_gate / full_build:.0%} (goal < 30 %)"
    )
    print(
        f"| full build, first publication (warm) | {full_build:.2f} s | {full_gate:.2f} s | {full_gate / full_build:.2f} |"
    )
    print(
        f"| +1 day, incremental (warm) | {inc_build:.2f} s | {inc_gate:.2f} s | {inc_gate / inc_build:.2f} |"
    )
    print(
        f"| +1 day, every table validated whole (baseline) | {inc_build:.2f} s | {whole_gate:.2f} s | {whole_gate / inc_build:.2f} |"
    )
    (ROOT / "result.json").write_text(
        json.dumps(
            {
                "gx_import": gx_import,
                "full": {"build": full_build, "gate": full_gate},
                "incremental": {"build": inc_build, "gate": inc_gate, "whole_gate": whole_gate},
                "as_in_run": {"build": run_build, "gate": run_gate_s, "runs": as_in_run},
                "dbt_alone": {"build": dbt_alone, "runs": alone},
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
