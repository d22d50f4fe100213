"""A failed gate publishes nothing: Feast keeps reading exactly the previous files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from featurestack.cli import app
from featurestack.core.settings import Settings
from tests.conftest import PipelineRun, published_state, published_tables
from validation.gate import run_gate


def copy_state(pipeline: PipelineRun, tmp_path: Path) -> Settings:
    """The pipeline's warehouse and published files, in a folder this test may damage."""
    src = pipeline.settings
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy2(src.warehouse, data / "warehouse.duckdb")
    shutil.copytree(src.published_dir, data / "published", symlinks=True)
    return Settings(data, src.raw_dir, f"sqlite:///{data / 'mlflow.db'}")


def snapshot(folder: Path) -> dict[str, str]:
    return published_state(folder)


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


def test_a_passing_gate_swaps_in_a_new_snapshot_linking_unchanged_months(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    """Readers see the old snapshot or the new one, whole; a month that did not change is the
    same file (a hard link), one that changed is written anew; old snapshots stay readable."""
    settings = copy_state(pipeline, tmp_path)
    old = (settings.published_dir / "current").resolve()
    with duckdb.connect(str(settings.warehouse)) as con:  # one value of the newest day changes
        con.execute(
            "update feat_symbol__daily set close = close * 1.01 where symbol = 'AAA' "
            "and event_timestamp = (select max(event_timestamp) from feat_symbol__daily)"
        )
        newest = con.execute("select max(event_timestamp) from feat_symbol__daily").fetchall()
    month = f"{newest[0][0]:%Y-%m}.parquet"
    result = run_gate(settings)
    assert result.success, result.summary()
    new = (settings.published_dir / "current").resolve()
    assert new != old and new.parent == old.parent
    assert published_tables(settings.published_dir) == sorted(t.table for t in result.tables)
    for table in published_tables(settings.published_dir):
        for file in sorted((old / table).glob("*.parquet")):
            same = file.stat().st_ino == (new / table / file.name).stat().st_ino
            assert same is not (table == "feat_symbol__daily" and file.name == month), file
    assert (new / "_fingerprints" / "feat_symbol__daily.parquet").exists()
    assert not list((settings.published_dir / "snapshots").glob(".staging-*"))
    report = {t.table: t for t in result.tables}
    assert report["feat_symbol__daily"].changed_rows == 1
    assert {t.changed_rows for name, t in report.items() if name != "feat_symbol__daily"} == {0}
    # The previous snapshot is still whole for a reader that resolved it before the swap.
    assert (
        pd.read_parquet(old / "feat_symbol__daily").shape
        == pd.read_parquet(new / "feat_symbol__daily").shape
    )


def test_only_the_newest_snapshots_are_kept(pipeline: PipelineRun, tmp_path: Path) -> None:
    from validation.publish import KEEP

    settings = copy_state(pipeline, tmp_path)
    for _ in range(KEEP + 1):
        assert run_gate(settings).success
    snapshots = [p for p in (settings.published_dir / "snapshots").iterdir()]
    assert len(snapshots) == KEEP
    assert (settings.published_dir / "current").resolve() in snapshots


def test_the_gate_worker_process_returns_results_and_reports_its_errors(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    """`featurestack run` gates in a worker process: its result and its errors come back."""
    from validation.gate import GateWorker

    settings = copy_state(pipeline, tmp_path)
    with GateWorker() as worker:
        result = worker.run(settings, publish=False)
    assert result.success and sorted(t.table for t in result.tables) == published_tables(
        settings.published_dir
    )
    with GateWorker() as worker, pytest.raises(RuntimeError, match="ManifestError: dbt manifest"):
        worker.run(settings, manifest_path=tmp_path / "missing.json")
