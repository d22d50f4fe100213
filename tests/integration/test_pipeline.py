"""The whole flow on a small market, checked stage by stage against independent references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models_py.contract import CHAMPION, TAG_PREFIX
from models_py.predict import predict_batch, predict_online
from models_py.tracking import file_sha256
from tests import feature_reference as ref
from tests.conftest import PipelineRun

# next_day_up_v1: every column of feat_symbol__daily, then of feat_market__daily (dbt order).
SERVICE_VIEWS = [("symbol_daily", "feat_symbol__daily"), ("market_daily", "feat_market__daily")]


def service_features(settings) -> list[tuple[str, str]]:
    keys = {"symbol", "event_timestamp"}
    return [
        (view, col)
        for view, model in SERVICE_VIEWS
        for col in pq.ParquetDataset(settings.published_table(model)).schema.names
        if col not in keys
    ]


def test_run_succeeds_and_summarises(pipeline: PipelineRun) -> None:
    assert "featurestack run finished" in pipeline.output
    assert "MLflow: " in pipeline.output and "Feast: " in pipeline.output
    # The consistency check ran on every view and found the online store in line.
    check = pipeline.output.split("online vs offline at now:")[1].split("report:")[0]
    for view in ("symbol_daily", "market_daily", "account_daily"):
        line = next(ln for ln in check.splitlines() if ln.startswith(view))
        sampled, mismatches = line.split()[1:3]
        assert int(sampled) >= 8 and mismatches == "0", line
    s = pipeline.summary
    assert s["model"]["name"] == "next_day_up" and s["model"]["version"] == "1"
    assert set(s["stage_seconds"]) == {
        "dbt",
        "gate",
        "feast",
        "train",
        "predict_batch",
        "predict_online",
    }
    for path in s["published"]:  # each table a folder of month files in the current snapshot
        assert Path(path).parent.name == "current" and list(Path(path).glob("*.parquet"))
    # The gate's Data Docs, rendered by its worker after it answered, are there when run ends.
    docs = pipeline.output.split("data docs: ")[1].split()[0]
    html = Path(docs).read_text()
    assert Path(docs).name == "index.html"
    assert "all_tables_columns" in html and "all_tables_profile" in html


def test_corrections_are_resolved_to_the_latest_ingestion(pipeline: PipelineRun) -> None:
    raw = pd.read_parquet(pipeline.settings.raw_dir / "prices.parquet")
    corrected = raw[raw.duplicated(["symbol", "ts"], keep=False)]
    assert len(corrected) > 0
    latest = corrected.sort_values("ingested_at").drop_duplicates(["symbol", "ts"], keep="last")
    ours = pd.read_parquet(pipeline.settings.published_table("feat_symbol__daily"))
    check = latest.merge(ours, left_on=["symbol", "ts"], right_on=["symbol", "event_timestamp"])
    assert len(check) == len(latest)
    np.testing.assert_array_equal(check["close_x"], check["close_y"])


def test_label_is_next_trading_days_direction(pipeline: PipelineRun) -> None:
    settings = pipeline.settings
    p = ref.prices(settings.raw_dir)
    nxt = p.groupby("symbol")["close"].shift(-1)
    expected = p.assign(next_day_up=(nxt > p["close"]).astype(int))[nxt.notna()]
    ours = pd.read_parquet(settings.published_table("lbl_next_day_up"))
    merged = expected.merge(ours, left_on=["symbol", "ts"], right_on=["symbol", "event_timestamp"])
    assert len(ours) == len(expected) == len(merged)
    assert (merged["next_day_up_x"] == merged["next_day_up_y"]).all()
    assert (ours["label_timestamp"] > ours["event_timestamp"]).all()
    last_days = p.groupby("symbol")["ts"].max()
    assert (
        not ours.set_index("symbol")["event_timestamp"]
        .eq(last_days.reindex(ours["symbol"]).values)
        .any()
    )


def test_training_registers_a_champion_with_lineage(pipeline: PipelineRun) -> None:
    import mlflow

    settings = pipeline.settings
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias("next_day_up", CHAMPION)
    assert str(mv.version) == "1"
    assert mv.tags[TAG_PREFIX + "feature_service"] == "next_day_up_v1"
    run = client.get_run(mv.run_id)
    for metric in (
        "holdout_roc_auc",
        "holdout_log_loss",
        "holdout_f1",
        "holdout_precision",
        "holdout_recall",
    ):
        assert metric in run.data.metrics
    tags = run.data.tags
    refs = service_features(settings)
    assert tags[TAG_PREFIX + "feature_refs"].split(",") == [f"{v}:{c}" for v, c in refs]
    published = settings.published_table("feat_symbol__daily")
    assert tags[TAG_PREFIX + "data.feat_symbol__daily.sha256"] == file_sha256(published)
    assert len(tags[TAG_PREFIX + "dbt_manifest_sha256"]) == 64
    assert run.inputs.dataset_inputs, "the entity/label dataframe is logged as a dataset input"
    model = mlflow.models.get_model_info(f"models:/next_day_up@{CHAMPION}")
    assert model.signature is not None
    assert [c.name for c in model.signature.inputs.inputs] == [c for _, c in refs]
    assert model.saved_input_example_info is not None
    # Feast's MLflow integration: its lineage tags on the run, its service tag on the version.
    assert tags["feast.feature_service"] == mv.tags["feast.feature_service"] == "next_day_up_v1"
    assert tags["feast.feature_refs"].split(",") == [f"{v}:{c}" for v, c in refs]
    labels = pd.read_parquet(settings.published_table("lbl_next_day_up"))
    assert tags["feast.entity_count"] == str(len(labels))
    assert tags["feast.entity_df_type"] == "dataframe"
    logged = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/feast_features.json")
    assert logged == [f"{v}:{c}" for v, c in refs]


def test_champion_refused_when_its_feature_service_changed(pipeline: PipelineRun, tmp_path) -> None:
    """Feast's resolver compares the service with the features the version was trained on."""
    from feast import FeatureService

    from featurestack.infra import feast_ops
    from models_py.registry import load_model_version
    from tests.conftest import copy_of_pipeline

    settings = copy_of_pipeline(pipeline, tmp_path)
    store = feast_ops.load_store(settings)
    loaded = load_model_version(settings, "next_day_up", store=store)
    assert loaded.feature_service == "next_day_up_v1"
    view = store.get_feature_view("symbol_daily")
    store.apply([FeatureService(name="next_day_up_v1", features=[view[["return_1d"]]])])
    with pytest.raises(LookupError, match=r"cannot be fed by the current feature registry"):
        load_model_version(settings, "next_day_up", store=feast_ops.load_store(settings))


def test_batch_and_online_predictions_agree(pipeline: PipelineRun) -> None:
    """Same champion, same feature service, same instant → same features and same score."""
    settings = pipeline.settings
    settings.export()
    features = [c for _, c in service_features(settings)]
    feats = pd.read_parquet(settings.published_table("feat_symbol__daily"))
    last_day = feats["event_timestamp"].max().date()
    path, batch = predict_batch(settings, "next_day_up", last_day)
    assert path.exists() and pd.read_parquet(path).shape == batch.shape
    assert batch["score"].notna().all() and (batch["model_version"] == "1").all()
    symbols = sorted(batch["symbol"])
    online = predict_online(settings, "next_day_up", [{"symbol": s} for s in symbols])
    online = online.sort_values("symbol").reset_index(drop=True)
    batch = batch.sort_values("symbol").reset_index(drop=True)
    np.testing.assert_allclose(
        online[features].to_numpy(float), batch[features].to_numpy(float), rtol=1e-12
    )
    np.testing.assert_allclose(online["score"], batch["score"], rtol=1e-12)


def test_online_unknown_entity_gets_noscore(pipeline: PipelineRun) -> None:
    settings = pipeline.settings
    settings.export()
    out = predict_online(settings, "next_day_up", [{"symbol": "AAA"}, {"symbol": "NOT_A_SYMBOL"}])
    assert out.loc[out["symbol"] == "AAA", "score"].notna().all()
    assert out.loc[out["symbol"] == "NOT_A_SYMBOL", "score"].isna().all()


def test_batch_prediction_before_any_data_scores_nothing(pipeline: PipelineRun) -> None:
    settings = pipeline.settings
    settings.export()
    first = pd.read_parquet(settings.published_table("feat_symbol__daily"))["event_timestamp"].min()
    before = (first - pd.Timedelta(days=30)).date()
    _, batch = predict_batch(settings, "next_day_up", before)
    assert batch["score"].isna().all()


def test_unknown_model_is_a_clear_error(pipeline: PipelineRun) -> None:
    with pytest.raises(LookupError, match=r"no 'champion' version.*featurestack train"):
        predict_online(pipeline.settings, "no_such_model", [{"symbol": "AAA"}])
