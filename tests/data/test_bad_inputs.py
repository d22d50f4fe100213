"""The bad-input matrix: each kind of bad raw data through the real pipeline (raw → dbt → gate).

Every case starts from the state the session's pipeline run left (warehouse, published
Parquet, raw files), damages a copy of the raw files the way real feeds break, then runs
`featurestack build` and `featurestack validate` through the CLI. Each asserts where the bad
data was stopped, the exit code, the message that names the problem, and that the published
files Feast reads are byte-for-byte unchanged. The cases that are not errors (a file delivered
twice, a day arriving again) assert that the published values are exactly what they were.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from featurestack.cli import app
from featurestack.core.settings import Settings
from models_py.tracking import file_sha256
from tests.conftest import PipelineRun, published_state, published_tables

#: each case builds the demo with dbt and runs the gate
pytestmark = pytest.mark.slow

Mutation = Callable[[Path], None]


@dataclass
class Outcome:
    stage: str  # where it stopped: "dbt", "gate", or "published" when it went through
    exit_code: int
    output: str
    settings: Settings
    published_before: dict[str, str]

    def published_now(self) -> dict[str, str]:
        return hashes(self.settings.published_dir)


def hashes(folder: Path) -> dict[str, str]:
    return published_state(folder)


def copy_state(pipeline: PipelineRun, tmp_path: Path) -> Settings:
    """The pipeline's raw files, warehouse and published files, in a folder a case may damage."""
    src = pipeline.settings
    data, raw = tmp_path / "data", tmp_path / "raw"
    data.mkdir()
    shutil.copytree(src.raw_dir, raw)
    shutil.copy2(src.warehouse, data / "warehouse.duckdb")
    shutil.copytree(src.published_dir, data / "published", symlinks=True)
    return Settings(data, raw, f"sqlite:///{data / 'mlflow.db'}")


def run_case(
    pipeline: PipelineRun, tmp_path: Path, mutate: Mutation, *validate_args: str
) -> Outcome:
    settings = copy_state(pipeline, tmp_path)
    mutate(settings.raw_dir)
    before = hashes(settings.published_dir)
    env = {k: str(v) for k, v in settings.environ().items()}
    runner = CliRunner()
    build = runner.invoke(app, ["build"], env=env, catch_exceptions=False)
    if build.exit_code != 0:
        return Outcome("dbt", build.exit_code, build.output, settings, before)
    gate = runner.invoke(app, ["validate", *validate_args], env=env, catch_exceptions=False)
    stage = "published" if gate.exit_code == 0 else "gate"
    return Outcome(stage, gate.exit_code, build.output + gate.output, settings, before)


def assert_stopped(outcome: Outcome, stage: str, *messages: str) -> None:
    assert (outcome.stage, outcome.exit_code) == (stage, 1), outcome.output[-3000:]
    for message in messages:
        assert message in outcome.output, f"{message!r} not in:\n{outcome.output[-3000:]}"
    assert outcome.published_now() == outcome.published_before, "published files changed"
    if stage == "gate":
        assert "nothing was published" in outcome.output
        report = json.loads((outcome.settings.reports_dir / "gate" / "latest.json").read_text())
        quarantined = Path(report["quarantine"])
        assert (quarantined / "report.json").exists()
        assert list(quarantined.glob("*.parquet")), "the failing batch is kept"
        assert Path(report["data_docs"]).exists(), "Data Docs are built for a failed run too"


# -- the raw files, as the damage needs them ------------------------------------------------


def read(raw: Path, name: str) -> pd.DataFrame:
    return pq.read_table(raw / f"{name}.parquet").to_pandas()


def write(
    raw: Path,
    name: str,
    frame: pd.DataFrame,
    schema: pa.Schema | None = None,
    keep_nan: bool = False,
) -> None:
    """Write a raw file. pandas' conversion turns NaN into NULL; ``keep_nan`` keeps it NaN."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    for i, field in enumerate(table.schema):
        if keep_nan and pa.types.is_floating(field.type):
            values = pa.array(frame[field.name].to_numpy(), type=field.type, from_pandas=False)
            table = table.set_column(i, field, values)
    pq.write_table(table.replace_schema_metadata(None), raw / f"{name}.parquet")


def prices_schema(raw: Path) -> pa.Schema:
    return pq.read_schema(raw / "prices.parquet").remove_metadata()


def edit_last_day(
    raw: Path, edit: Callable[[pd.DataFrame, pd.Series], pd.DataFrame], keep_nan: bool = False
) -> None:
    """Apply ``edit(prices, is_last_day)`` to the prices file, keeping its schema."""
    schema = prices_schema(raw)
    prices = read(raw, "prices")
    last = prices["ts"] == prices["ts"].max()
    write(raw, "prices", edit(prices, last), schema, keep_nan=keep_nan)


def first_symbol(prices: pd.DataFrame) -> str:
    return str(sorted(prices["symbol"].unique())[0])


def published_values(settings: Settings) -> dict[str, pd.DataFrame]:
    out = {}
    for name in published_tables(settings.published_dir):
        frame = pd.read_parquet(settings.published_table(name))
        out[name] = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)
    return out


# -- cases stopped by dbt: the raw contract and the staging tests ----------------------------


def test_a_renamed_raw_column_is_stopped_before_any_model_reads_it(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    def rename(raw: Path) -> None:
        write(raw, "prices", read(raw, "prices").rename(columns={"close": "close_price"}))

    outcome = run_case(pipeline, tmp_path, rename)
    assert_stopped(
        outcome,
        "dbt",
        "source_raw_contract_market_prices",
        "SKIP",
        "e.g. column_name=close, expected=double, observed=missing",
    )


def test_a_retyped_raw_column_is_stopped_and_named(pipeline: PipelineRun, tmp_path: Path) -> None:
    def retype(raw: Path) -> None:
        prices = read(raw, "prices")
        write(raw, "prices", prices.assign(ts=prices["ts"].dt.strftime("%Y-%m-%d")))

    outcome = run_case(pipeline, tmp_path, retype)
    assert_stopped(
        outcome,
        "dbt",
        "source_raw_contract_market_prices",
        "e.g. column_name=ts, expected=timestamp with time zone, observed=VARCHAR",
    )


def test_an_empty_raw_file_is_stopped(pipeline: PipelineRun, tmp_path: Path) -> None:
    def empty(raw: Path) -> None:
        write(raw, "prices", read(raw, "prices").iloc[0:0], prices_schema(raw))

    outcome = run_case(pipeline, tmp_path, empty)
    assert_stopped(
        outcome,
        "dbt",
        "source_raw_contract_market_prices",
        "e.g. column_name=(rows), expected=at least 1 row, observed=empty",
    )


@pytest.mark.parametrize("damage", ["truncated", "not parquet"])
def test_a_corrupt_parquet_file_is_stopped(
    pipeline: PipelineRun, tmp_path: Path, damage: str
) -> None:
    def corrupt(raw: Path) -> None:
        path = raw / "prices.parquet"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"x" * 4096)

    outcome = run_case(pipeline, tmp_path, corrupt)
    assert_stopped(outcome, "dbt", "prices.parquet")


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("symbol", "not_null_stg_market__prices_symbol"),
        ("ts", "not_null_stg_market__prices_event_timestamp"),
        # A missing close makes the label unknowable: the label model's contract refuses it.
        ("close", "NOT NULL constraint failed: lbl_next_day_up.next_day_up"),
    ],
)
def test_a_null_key_timestamp_or_close_is_stopped(
    pipeline: PipelineRun, tmp_path: Path, column: str, message: str
) -> None:
    def null(raw: Path) -> None:
        def edit(prices: pd.DataFrame, last: pd.Series) -> pd.DataFrame:
            prices.loc[last[last].index[0], column] = None
            return prices

        edit_last_day(raw, edit)

    outcome = run_case(pipeline, tmp_path, null)
    assert_stopped(outcome, "dbt", message)


def test_conflicting_duplicate_key_and_timestamp_rows_are_stopped(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    """Two different closes for one (symbol, ts) loaded at the same instant: no winner."""

    def conflict(raw: Path) -> None:
        def edit(prices: pd.DataFrame, last: pd.Series) -> pd.DataFrame:
            twin = prices[last].head(1).assign(close=lambda f: f["close"] * 1.01)
            return pd.concat([prices, twin], ignore_index=True)

        edit_last_day(raw, edit)

    outcome = run_case(pipeline, tmp_path, conflict)
    assert_stopped(outcome, "dbt", "no_conflicting_duplicates_base_market__prices")


# -- cases stopped by the gate ---------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_prices_are_stopped_with_their_key(
    pipeline: PipelineRun, tmp_path: Path, bad: float
) -> None:
    symbol = first_symbol(read(pipeline.settings.raw_dir, "prices"))

    def poison(raw: Path) -> None:
        def edit(prices: pd.DataFrame, last: pd.Series) -> pd.DataFrame:
            prices.loc[last & (prices["symbol"] == symbol), "close"] = bad
            return prices

        edit_last_day(raw, edit, keep_nan=True)

    outcome = run_case(pipeline, tmp_path, poison)
    assert_stopped(
        outcome,
        "gate",
        "FAILED expect_column_values_to_be_between on feat_symbol__daily.return_1d",
        f"'symbol': '{symbol}'",
    )


def test_a_price_that_jumps_a_thousandfold_is_stopped_by_its_range(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    symbol = first_symbol(read(pipeline.settings.raw_dir, "prices"))

    def jump(raw: Path) -> None:
        def edit(prices: pd.DataFrame, last: pd.Series) -> pd.DataFrame:
            rows = last & (prices["symbol"] == symbol)
            prices.loc[rows, ["open", "high", "low", "close"]] *= 1000
            return prices

        edit_last_day(raw, edit)

    outcome = run_case(pipeline, tmp_path, jump)
    assert_stopped(
        outcome,
        "gate",
        "FAILED expect_column_values_to_be_between on feat_symbol__daily.return_1d",
        "declared range (gate.yml)",
        f"'symbol': '{symbol}'",
    )


def test_timestamps_in_the_future_are_stopped(pipeline: PipelineRun, tmp_path: Path) -> None:
    def future(raw: Path) -> None:
        def edit(prices: pd.DataFrame, last: pd.Series) -> pd.DataFrame:
            ahead = prices[last].copy()
            ahead["ts"] += pd.Timedelta(days=7)
            ahead["ingested_at"] += pd.Timedelta(days=7)
            return pd.concat([prices, ahead], ignore_index=True)

        edit_last_day(raw, edit)

    outcome = run_case(pipeline, tmp_path, future)
    assert_stopped(
        outcome,
        "gate",
        "FAILED expect_column_values_to_be_between on feat_symbol__daily.newest_event_age_hours",
        "no event time in the future",
    )


def test_stale_data_is_stopped_by_freshness(pipeline: PipelineRun, tmp_path: Path) -> None:
    newest = read(pipeline.settings.raw_dir, "prices")["ts"].max()
    as_of = (newest + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S")
    outcome = run_case(pipeline, tmp_path, lambda raw: None, "--as-of", as_of)
    assert_stopped(
        outcome,
        "gate",
        "on feat_symbol__daily.newest_event_age_hours",
        "newest at most 100 h old (gate.yml)",
    )


# -- cases that are not errors: the result is exactly what was published --------------------


@pytest.mark.parametrize("later_by", [timedelta(0), timedelta(days=1)], ids=["same", "later"])
def test_a_day_delivered_twice_changes_nothing_published(
    pipeline: PipelineRun, tmp_path: Path, later_by: timedelta
) -> None:
    """The last day again, identical (a file loaded twice) or re-sent later: deduplicated."""

    def again(raw: Path) -> None:
        def edit(prices: pd.DataFrame, last: pd.Series) -> pd.DataFrame:
            twice = prices[last].copy()
            twice["ingested_at"] += later_by
            return pd.concat([prices, twice], ignore_index=True)

        edit_last_day(raw, edit)

    before = published_values(pipeline.settings)
    outcome = run_case(pipeline, tmp_path, again)
    assert (outcome.stage, outcome.exit_code) == ("published", 0), outcome.output[-3000:]
    after = published_values(outcome.settings)
    assert list(after) == list(before)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame, obj=name)
    report = json.loads((outcome.settings.reports_dir / "gate" / "latest.json").read_text())
    assert {t["table"]: t["changed_rows"] for t in report["tables"]} == dict.fromkeys(before, 0)


# -- the whole flow: a failed gate stops `featurestack run` before Feast -------------------


def test_featurestack_run_stops_at_the_gate_and_feast_is_untouched(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    """Published files, the Feast registry and the online store keep their exact bytes."""
    src = pipeline.settings
    data, raw = tmp_path / "data", tmp_path / "raw"
    shutil.copytree(src.data_dir, data, symlinks=True)
    shutil.copytree(src.raw_dir, raw)
    settings = Settings(data, raw, f"sqlite:///{data / 'mlflow' / 'mlflow.db'}")
    symbol = first_symbol(read(raw, "prices"))

    def jump(prices: pd.DataFrame, last: pd.Series) -> pd.DataFrame:
        prices.loc[last & (prices["symbol"] == symbol), ["open", "high", "low", "close"]] *= 1000
        return prices

    edit_last_day(raw, jump)
    watched = [settings.published_dir, settings.feast_dir, settings.mlflow_dir]
    before = {str(p): file_sha256(p) for d in watched for p in sorted(d.rglob("*")) if p.is_file()}
    assert any("registry" in p for p in before) and any("online" in p for p in before)

    env = {k: str(v) for k, v in settings.environ().items()}
    result = CliRunner().invoke(app, ["run"], env=env, catch_exceptions=False)

    assert result.exit_code == 1, result.output[-3000:]
    assert "[2/6] gate" in result.output and "[3/6]" not in result.output
    assert f"'symbol': '{symbol}'" in result.output
    after = {str(p): file_sha256(p) for d in watched for p in sorted(d.rglob("*")) if p.is_file()}
    assert after == before
