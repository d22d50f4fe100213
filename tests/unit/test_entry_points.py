"""`python -m featurestack|models_py|validation` must not run the CLI again in the worker
processes they spawn: multiprocessing's spawn re-imports the main module as `__mp_main__`,
which ran the command line a second time in the gate worker (and exited it) under
`python -m featurestack run`."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", ["featurestack", "models_py", "validation"])
def test_main_modules_do_nothing_when_a_spawned_worker_imports_them(package: str) -> None:
    runpy.run_path(str(ROOT / package / "__main__.py"), run_name="__mp_main__")  # no SystemExit


@pytest.mark.parametrize("package", ["featurestack", "models_py", "validation"])
def test_main_modules_run_the_command_line(package: str) -> None:
    with pytest.raises(SystemExit):  # no arguments: the CLI prints its help and exits
        runpy.run_path(str(ROOT / package / "__main__.py"), run_name="__main__")


@pytest.mark.slow  # a fresh interpreter importing Great Expectations (and pyspark under it)
def test_a_process_whose_main_has_no_file_can_import_the_gate() -> None:
    """pytest-xdist's workers and `python -c` have a __main__ without a file; pyspark, imported
    by Great Expectations, took that for a doctest run and exited the process (exit 0, silently)
    unless its `connect` extra is installed."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import validation.suites; print('imported')"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert "imported" in done.stdout, done.stderr[-2000:]
