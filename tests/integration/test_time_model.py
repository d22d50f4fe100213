"""The time model on a project whose events are not daily (issue 18): request-time features in
training sets, labels met by time, entity lists, leakage checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from featurestack.core.errors import UsageError
from models_py.dataset import service_info, training_frame
from tests.conftest import PipelineRun, copy_of_pipeline
from tests.races import races_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _last_rating(form: pd.DataFrame, dog: int, at: pd.Timestamp) -> float:
    """Brute force: the dog's newest rating at or before ``at`` within the 3-day TTL."""
    rows = form[(form["dog_id"] == dog) & (form["event_timestamp"] <= at)]
    rows = rows[rows["event_timestamp"] >= at - pd.Timedelta(days=3)]
    return float(rows.sort_values("event_timestamp")["rating"].iloc[-1]) if len(rows) else np.nan


def test_on_demand_view_is_computed_in_training_sets_as_online(tmp_path: Path) -> None:
    races = races_store(tmp_path)
    info = service_info(races.store, "race_v1")
    assert info.join_keys == ["dog_id"]
    assert info.request_fields == ["odds"]
    assert info.feature_columns == ["rating", "odds_x_rating"]

    frame = training_frame(races.store, info, races.runs, "won", {"odds": "odds_at_start"})
    assert len(frame) == len(races.runs)
    runs = races.runs.sort_values(["event_timestamp", "dog_id"], kind="stable")
    expected = [
        _last_rating(races.form, d, t)
        for d, t in zip(runs["dog_id"], runs["event_timestamp"], strict=True)
    ]
    np.testing.assert_array_equal(frame["rating"].to_numpy(), np.array(expected))
    np.testing.assert_array_equal(
        frame["odds_x_rating"].to_numpy(), runs["odds_at_start"].to_numpy() * np.array(expected)
    )

    # Online, the same function on the same inputs gives the same value.
    races.store.materialize(
        races.form["event_timestamp"].min().to_pydatetime(),
        races.form["event_timestamp"].max().to_pydatetime(),
    )
    online = races.store.get_online_features(
        features=races.store.get_feature_service("race_v1"),
        entity_rows=[{"dog_id": 1, "odds": 4.0}],
    ).to_dict()
    newest = races.form[races.form["dog_id"] == 1].sort_values("event_timestamp").iloc[-1]
    assert online["odds_x_rating"][0] == 4.0 * newest["rating"]


def test_an_unmapped_request_field_names_the_spec_field(tmp_path: Path) -> None:
    races = races_store(tmp_path)
    info = service_info(races.store, "race_v1")
    with pytest.raises(UsageError, match=r"request_columns.*odds: <column>"):
        training_frame(races.store, info, races.runs, "won")
    with pytest.raises(UsageError, match="odds_now"):
        training_frame(races.store, info, races.runs, "won", {"odds": "odds_now"})


def test_an_entity_list_is_read_as_feasts_entity_df(tmp_path: Path) -> None:
    """Races: a CSV of (dog, race start, odds) rows, several a day, becomes the entity_df
    Feast scores point in time: times as UTC instants, keys as the views type them; a file
    without a column the service needs is refused naming it."""
    from models_py.predict import read_entities

    races = races_store(tmp_path)
    info = service_info(races.store, "race_v1")
    runs = races.runs.head(12)
    path = tmp_path / "card.csv"
    runs.assign(
        event_timestamp=runs["event_timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        odds=runs["odds_at_start"],
    ).to_csv(path, index=False)
    entity_df = read_entities(path, info, "race_winner")
    assert list(entity_df.columns) == ["dog_id", "event_timestamp", "odds"]
    assert entity_df["event_timestamp"].tolist() == runs["event_timestamp"].tolist()
    assert entity_df["event_timestamp"].dt.date.nunique() < len(entity_df)  # several a day
    frame = races.store.get_historical_features(
        entity_df=entity_df, features=races.store.get_feature_service("race_v1")
    ).to_df()
    frame = frame.merge(entity_df.reset_index(), on=list(entity_df.columns))
    expected = [
        _last_rating(races.form, d, t)
        for d, t in zip(runs["dog_id"], runs["event_timestamp"], strict=True)
    ]
    got = frame.sort_values("index")["rating"].to_numpy()
    np.testing.assert_array_equal(got, np.array(expected))

    runs[["dog_id", "event_timestamp"]].to_parquet(tmp_path / "no_odds.parquet")
    with pytest.raises(UsageError, match=r"lacks column\(s\) \['odds'\].*request values"):
        read_entities(tmp_path / "no_odds.parquet", info, "race_winner")
    (tmp_path / "card.json").write_text("[]")
    with pytest.raises(UsageError, match=r"\.parquet or \.csv"):
        read_entities(tmp_path / "card.json", info, "race_winner")


# -- on the demo: predict --entities and check-leakage ----------------------------------------


def test_predict_entities_scores_each_row_as_of_its_own_instant(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    from featurestack.cli import app
    from models_py.predict import predict_batch, predict_entities

    settings = copy_of_pipeline(pipeline, tmp_path)
    feats = pd.read_parquet(settings.published_table("feat_symbol__daily"))
    days = sorted(feats["event_timestamp"].unique())
    close = days[-2]  # a close (21:00 UTC)
    noon = pd.Timestamp(close).normalize() + pd.Timedelta(hours=12)  # before it: the day before
    rows = pd.DataFrame(
        {
            "symbol": ["BBB", "AAA", "AAA", "BBB", "AAA"],
            "event_timestamp": [noon, close, noon, close, close + pd.Timedelta(minutes=5)],
        }
    )
    path = tmp_path / "runners.csv"
    rows.assign(event_timestamp=rows["event_timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(
        path, index=False
    )
    out_path, out = predict_entities(settings, "next_day_up", path)
    assert out_path.exists()
    assert out["symbol"].tolist() == rows["symbol"].tolist()  # the file's order
    expected_close = []
    for symbol, at in zip(rows["symbol"], rows["event_timestamp"], strict=True):
        known = feats[(feats["symbol"] == symbol) & (feats["event_timestamp"] <= at)]
        expected_close.append(known.sort_values("event_timestamp")["close"].iloc[-1])
    assert out["close"].tolist() == expected_close
    assert out.loc[0, "close"] != out.loc[3, "close"]  # noon sees the day before, not the close

    # At a close, the same score as the batch of every entity as of that day.
    _, batch = predict_batch(settings, "next_day_up", pd.Timestamp(close).date())
    by_symbol = batch.set_index("symbol")["score"]
    assert out.loc[1, "score"] == pytest.approx(by_symbol["AAA"], abs=1e-12)
    assert out.loc[3, "score"] == pytest.approx(by_symbol["BBB"], abs=1e-12)

    # A file without the instant column: a clear error naming it, exit 2 (usage).
    rows[["symbol"]].to_csv(tmp_path / "no_time.csv", index=False)
    env = {
        "FEATURESTACK_DATA_DIR": str(settings.data_dir),
        "FEATURESTACK_RAW_DIR": str(settings.raw_dir),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
    }
    result = CliRunner().invoke(
        app,
        ["predict", "--model", "next_day_up", "--entities", str(tmp_path / "no_time.csv")],
        env=env,
    )
    assert result.exit_code == UsageError.exit_code, result.output
    assert "lacks column(s) ['event_timestamp']" in result.output


def test_check_leakage_on_another_project_passes_then_catches_a_feature_that_sees_the_future(
    tmp_path: Path,
) -> None:
    """The same command on the `minimal` example (a shop: its own names, nothing of the demo),
    then on a copy whose 30-day amount is summed over the customer's whole history."""
    import shutil
    import subprocess
    import sys

    from featurestack.core.settings import Settings
    from featurestack.leakage import check_leakage

    project = tmp_path / "shop"
    shutil.copytree(
        EXAMPLES / "minimal", project, ignore=shutil.ignore_patterns("target", "logs", "data")
    )
    raw = tmp_path / "raw"
    sample = [sys.executable, str(project / "sample_data.py"), "--out", str(raw)]
    subprocess.run([*sample, "--customers", "25", "--days", "60"], check=True)
    settings = Settings(
        tmp_path / "data", raw, f"sqlite:///{tmp_path / 'mlflow.db'}", project_dir=project
    )
    times = pd.read_parquet(raw / "orders.parquet")["ordered_at"].sort_values()
    # just after an order in the middle of the history: that day's row (stamped at the day's
    # end) exists in the build as of the cut, from the part of the day known then
    cut = (times.iloc[len(times) // 2] + pd.Timedelta(seconds=1)).to_pydatetime()

    report = check_leakage(settings, [cut], work=tmp_path / "ok")
    assert report.ok, "\n".join(report.lines())
    assert {c.table for c in report.checks} == {"feat_customer__daily", "lbl_customer_reorders"}

    sql = project / "dbt_project/models/features/feat_customer__daily.sql"
    window = "sum(amount_today) over last_30_days as amount_30d"
    assert window in sql.read_text()
    sql.write_text(
        sql.read_text().replace(
            window, "sum(amount_today) over (partition by customer_id) as amount_30d"
        )
    )
    from featurestack.cli import app

    env = {
        "FEATURESTACK_PROJECT_DIR": str(project),
        "FEATURESTACK_DATA_DIR": str(settings.data_dir),
        "FEATURESTACK_RAW_DIR": str(raw),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
    }
    at = pd.Timestamp(cut).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S")
    args = ["check-leakage", "--cut", at, "--no-incremental", "--work", str(tmp_path / "leaks")]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    failed = [
        line for line in result.output.splitlines() if "differs" in line or "rows instead" in line
    ]
    assert len(failed) == 1 and "feat_customer__daily" in failed[0], result.output
    assert "amount_30d differs at" in failed[0]

    # Staging that ignores as_of would make the check vacuous: it fails instead of passing.
    sql.write_text(sql.read_text().replace("over (partition by customer_id)", "over last_30_days"))
    staging = project / "dbt_project/models/staging/shop/stg_shop__orders.sql"
    staging.write_text(staging.read_text().replace("{{ known_at('ordered_at') }}", "true"))
    report = check_leakage(settings, [cut], incremental=False, work=tmp_path / "ignored")
    assert {c.table for c in report.failed} == {"feat_customer__daily", "lbl_customer_reorders"}
    assert all("ignore var('as_of')" in (c.problem or "") for c in report.failed)
