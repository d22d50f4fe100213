"""Benchmarks cannot rot: every bench/ script runs here at a tiny size, in a data folder of the
test's own. Their figures are not judged (a test never holds a timing); each script checks its
own results (identical tables, same rows as the bare join, the same signal as the library,
every request answered 200) and exits non-zero when they do not hold, which fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PipelineRun

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def run_bench(tmp_path: Path, *args: str, timeout: float = 600) -> str:
    """Run a bench script as a user would, with its state under ``tmp_path``."""
    env = {**os.environ, "FEATURESTACK_DATA_DIR": str(tmp_path / "data")}
    for name in ("FEATURESTACK_RAW_DIR", "MLFLOW_TRACKING_URI", "FEATURESTACK_PROFILE"):
        env.pop(name, None)
    command = [sys.executable, *args] if args[0].endswith(".py") else ["bash", *args]
    proc = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def test_incremental_bench_builds_and_finds_the_tables_identical(tmp_path: Path) -> None:
    out = run_bench(
        tmp_path,
        str(BENCH / "incremental.py"),
        *("--symbols", "4", "--accounts", "8", "--days", "60", "--repeat", "1"),
    )
    assert "| `dbt build` |" in out and "differing: []" in out


def test_gate_bench_builds_gates_and_publishes(tmp_path: Path) -> None:
    out = run_bench(
        tmp_path,
        str(BENCH / "gate.py"),
        # the demo's null-share ceilings (gate.yml) assume the windows have filled: 260 days
        *("--symbols", "4", "--accounts", "8", "--days", "260", "--repeat", "1"),
    )
    assert "what the gate adds" in out and "| +1 day, incremental (warm) |" in out


def test_pit_bench_gives_the_same_rows_as_the_bare_join(tmp_path: Path) -> None:
    out = run_bench(
        tmp_path, str(BENCH / "pit.py"), "--sizes", "tiny", "--runs", "1", "--file-store-sizes"
    )
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 4, out
    assert all("same rows" in r for r in rows if "skipped" not in r), rows


def test_online_bench_materializes_every_entity(tmp_path: Path, redis_url: str) -> None:
    out = run_bench(
        tmp_path,
        str(BENCH / "online.py"),
        *("--entities", "2000", "--feast-entities", "300", "--calls", "20", "--feast-calls", "5"),
    )
    assert "redis-ours" in out and "p99" in out


def test_train_bench_does_the_same_work_as_the_library(tmp_path: Path) -> None:
    out = run_bench(
        tmp_path,
        str(BENCH / "train.py"),
        *("--rows", "6000", "--features", "5", "--trials", "2", "--tuning-rows", "3000"),
    )
    assert "| lightgbm |" in out and "| xgboost |" in out and "speed-up" in out


def test_serve_bench_answers_every_request(tmp_path: Path, pipeline: PipelineRun) -> None:
    out = run_bench(
        tmp_path,
        str(BENCH / "serve.py"),
        *("--data-dir", str(pipeline.settings.data_dir)),
        *("--seconds", "1", "--requests", "40", "--concurrency", "1", "2"),
    )
    assert "shadow on/off p99 at concurrency 2" in out


def test_make_demo_bench_runs_the_quickstart_from_a_clone(tmp_path: Path) -> None:
    out = run_bench(tmp_path, str(BENCH / "make_demo.sh"), "--tiny", str(tmp_path / "work"))
    assert "make demo (fresh clone, warm uv cache, small market)" in out
    assert "holdout: ROC-AUC" in out


def test_soak_bench_answers_mixed_traffic_while_materializing(
    tmp_path: Path, pipeline: PipelineRun
) -> None:
    out = run_bench(
        tmp_path,
        str(BENCH / "soak.py"),
        *("--data-dir", str(pipeline.settings.data_dir)),
        *("--seconds", "6", "--interval", "3"),
    )
    assert "soak passed" in out and "| 1 |" in out


def test_spark_bench_gives_the_same_rows_on_both_engines(tmp_path: Path) -> None:
    out = run_bench(tmp_path, str(BENCH / "spark.py"), "--tiny")
    rows = [line for line in out.splitlines() if line.startswith(("| point-in-time", "| mat"))]
    assert len(rows) == 2 and all("same rows" in r for r in rows), out[-3000:]
