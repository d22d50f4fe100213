"""A failed gate publishes nothing: Feast keeps reading exactly the previous files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from featurestack.cli import app
from featurestack.settings import Settings
from models_py.tracking import file_sha256
from tests.conftest import PipelineRun
from validation.gate import run_gate


def copy_state(pipeline: PipelineRun, tmp_path: Path) -> Settings:
    """The pipeline's warehouse and published files, in a folder this test may damage."""
    src = pipeline.settings
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy2(src.warehouse, data / "warehouse.duckdb")
    shutil.copytree(src.published_dir, data / "published")
    return Settings(data, src.raw_dir, f"sqlite:///{data / 'mlflow.db'}")


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (file_sha256(p), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_bad_rows_in_the_warehouse_stop_the_gate_and_publish_nothing(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    settings = copy_state(pipeline, tmp_path)
    before = snapshot(settings.published_dir)
    with duckdb.connect(str(settings.warehouse)) as con:
        # A day arriving twice, and an infinite feature.
        con.execute(
            "insert into feat_symbol__daily select * from feat_symbol__daily "
            "where event_timestamp = (select max(event_timestamp) from feat_symbol__daily)"
        )
        con.execute(
            "update feat_symbol__daily set return_5d = 'inf'::double "
            "where symbol = 'AAA' and event_timestamp = (select event_timestamp "
            "from feat_symbol__daily where symbol = 'AAA' order by 1 limit 1 offset 10)"
        )

    env = {k: str(v) for k, v in settings.environ().items()}
    result = CliRunner().invoke(app, ["validate"], env=env, catch_exceptions=False)

    assert result.exit_code == 1
    assert "FAILED expect_compound_columns_to_be_unique on feat_symbol__daily" in result.output
    assert (
        "FAILED expect_column_values_to_be_between on feat_symbol__daily.return_5d" in result.output
    )
    assert "'symbol': 'AAA'" in result.output
    assert "nothing was published" in result.output
    assert snapshot(settings.published_dir) == before, "published files must not change"
    report = json.loads((settings.reports_dir / "gate" / "latest.json").read_text())
    assert report["success"] is False and report["published"] == []
    failing = {t["table"]: t for t in report["tables"] if not t["success"]}
    assert list(failing) == ["feat_symbol__daily"]


def test_a_passing_gate_replaces_the_files_atomically(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    settings = copy_state(pipeline, tmp_path)
    before = snapshot(settings.published_dir)
    result = run_gate(settings)
    assert result.success, result.summary()
    after = snapshot(settings.published_dir)
    assert set(after) == set(before), "no temporary or extra files are left behind"
    for name in before:
        assert after[name][1] != before[name][1], f"{name} was rewritten"


def test_the_gate_worker_process_returns_results_and_reports_its_errors(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    """`featurestack run` gates in a worker process: its result and its errors come back."""
    from validation.gate import GateWorker

    settings = copy_state(pipeline, tmp_path)
    with GateWorker() as worker:
        result = worker.run(settings, publish=False)
    assert result.success and {t.table for t in result.tables} == set(
        p.stem for p in settings.published_dir.glob("*.parquet")
    )
    with GateWorker() as worker, pytest.raises(RuntimeError, match="ManifestError: dbt manifest"):
        worker.run(settings, manifest_path=tmp_path / "missing.json")
