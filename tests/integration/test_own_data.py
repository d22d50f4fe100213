"""Your data, your project: the demo project run on raw files as a user brings them — without
any optional column of the contract and with account tiers of their own — from a copy of the
project, through `featurestack run --project-dir`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from featurestack.cli import app
from tests.conftest import copy_demo_project


def test_the_demo_project_runs_on_raw_files_without_optional_columns_and_other_tiers(
    small_raw: Path, tmp_path: Path
) -> None:
    project = copy_demo_project(tmp_path / "project")
    # The project's own value set (dbt var) and a quick spec: what a user edits.
    dbt_yml = project / "dbt_project" / "dbt_project.yml"
    config = yaml.safe_load(dbt_yml.read_text())
    config["vars"]["account_tiers"] = ["basic", "pro"]
    dbt_yml.write_text(yaml.safe_dump(config, sort_keys=False))

    raw = tmp_path / "data" / "raw"
    shutil.copytree(small_raw, raw)
    earnings = pd.read_parquet(raw / "earnings.parquet").drop(columns=["scheduled_at"])
    earnings.to_parquet(raw / "earnings.parquet", index=False)
    accounts = pd.read_parquet(raw / "accounts.parquet").drop(columns=["opened_at"])
    accounts["tier"] = accounts["tier"].map(
        {"bronze": "basic", "silver": "basic", "gold": "pro", "platinum": "pro"}
    )
    accounts.to_parquet(raw / "accounts.parquet", index=False)

    env = {"FEATURESTACK_DATA_DIR": str(tmp_path / "data"), "MLFLOW_TRACKING_URI": None}
    result = CliRunner().invoke(
        app, ["--project-dir", str(project), "run", "--model", "next_day_up"], env=env
    )
    assert result.exit_code == 0, result.output[-4000:]
    for column, source in (("scheduled_at", "earnings"), ("opened_at", "accounts")):
        said = f"optional raw column {column} is absent from {source}"
        assert result.output.count(said) == 1, result.output[-4000:]
    assert "left out (null throughout the published data): days_until_earnings" in result.output

    published = tmp_path / "data" / "published" / "current"
    accounts_out = pq.read_table(published / "feat_account__daily").to_pandas()
    assert set(accounts_out["tier"].dropna()) == {"basic", "pro"}
    assert accounts_out["days_since_opened"].isna().all()
    assert len(accounts_out) > 0  # accounts exist from their first tier record
    symbols_out = pq.read_table(published / "feat_symbol__daily").to_pandas()
    assert symbols_out["days_until_earnings"].isna().all()
    # the announcements themselves still count, from when they are announced
    assert symbols_out["days_since_earnings"].notna().any()
