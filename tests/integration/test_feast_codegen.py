"""Feast follows dbt: definitions generated from the manifest, checked against the contracts."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from feast.types import Array, Float64, Int32, Int64, String, UnixTimestamp

from featurestack.core.project import find_project
from featurestack.infra import feast_codegen, feast_ops
from featurestack.infra.feast_codegen import ContractMismatch, FieldSpec, feast_type_for
from tests.conftest import PipelineRun


@pytest.fixture(scope="module")
def specs(pipeline: PipelineRun) -> list[feast_codegen.ViewSpec]:
    """The manifest the pipeline's dbt build left behind."""
    return feast_codegen.view_specs()


@pytest.fixture(scope="module")
def repo(pipeline: PipelineRun):
    from feast.repo_operations import parse_repo

    pipeline.settings.export()
    repo = pipeline.settings.project.feature_repo_dir
    with feast_ops._in_feature_repo(repo):
        return parse_repo(repo)


def test_committed_definitions_are_generated_from_the_current_manifest(specs) -> None:
    assert [s.model for s in specs] == [
        "feat_account__daily",
        "feat_market__daily",
        "feat_symbol__daily",
    ]
    generated = find_project().feature_repo_dir / feast_codegen.GENERATED
    assert generated.read_text() == feast_codegen.render(specs), (
        "feature_repo/dbt_features.py is stale: run `featurestack codegen`"
    )


def test_feast_repo_agrees_with_every_contract(repo, specs) -> None:
    assert feast_codegen.check_views(repo.feature_views, repo.entities, specs) == []
    views = {v.name: v for v in repo.feature_views}
    symbol = views["symbol_daily"]
    assert symbol.ttl == pd.Timedelta(days=7)
    assert symbol.owner == "market-features"
    assert all(f.description for f in symbol.features)
    assert {f.name: f.dtype for f in symbol.features}["days_until_earnings"] == Int64
    assert symbol.batch_source.path.endswith("published/current/feat_symbol__daily")


def test_disagreements_are_named(repo, specs) -> None:
    by_model = {s.model: s for s in specs}
    sym = by_model["feat_symbol__daily"]
    retyped = dataclasses.replace(
        sym,
        features=(
            FieldSpec("close", "bigint", "now an integer"),
            *[f for f in sym.features if f.name not in ("close", "return_1d")],
            FieldSpec("new_feature", "double", "added in dbt"),
        ),
    )
    acct = dataclasses.replace(
        by_model["feat_account__daily"], join_keys=(FieldSpec("acct", "varchar", "renamed"),)
    )
    problems = feast_codegen.check_views(
        repo.feature_views, repo.entities, [acct, by_model["feat_market__daily"], retyped]
    )
    text = "\n".join(problems)
    assert "symbol_daily.close: Feast type Float64 but the dbt contract says bigint" in text
    assert "symbol_daily: column new_feature of feat_symbol__daily is missing in Feast" in text
    assert "symbol_daily: feature return_1d is not a column of feat_symbol__daily" in text
    assert "account_daily: entity account joins on account_id but" in text
    assert len(problems) == 4
    only_two = feast_codegen.check_views(repo.feature_views, repo.entities, [retyped, acct])
    assert any(
        "market_daily: dbt model feat_market__daily is not tagged feast" in p for p in only_two
    )


def test_duckdb_types_map_correctly() -> None:
    from feast.dbt.mapper import map_dbt_type_to_feast_type

    # What feast.dbt alone does with dbt-duckdb types, and why we do not rely on it there.
    assert map_dbt_type_to_feast_type("decimal(18,3)") == Int64
    assert map_dbt_type_to_feast_type("timestamp with time zone") == String
    assert feast_type_for("decimal(18,3)") == Float64
    assert feast_type_for("timestamp with time zone") == UnixTimestamp
    assert feast_type_for("TIMESTAMPTZ") == UnixTimestamp
    assert feast_type_for("double[]") == Array(Float64)
    assert feast_type_for("varchar[]") == Array(String)
    assert feast_type_for("integer") == Int32
    assert feast_type_for("bigint") == Int64
    assert feast_type_for("varchar") == String
    with pytest.raises(ContractMismatch, match="no Feast type"):
        feast_type_for("interval")


def test_stale_generated_module_refuses_to_load(specs) -> None:
    feast_codegen.verify_fingerprint(feast_codegen.fingerprint(specs))
    with pytest.raises(ContractMismatch, match="featurestack codegen"):
        feast_codegen.verify_fingerprint("0" * 16)


def test_on_demand_feature_online_and_offline(pipeline: PipelineRun) -> None:
    settings = pipeline.settings
    settings.export()
    store = feast_ops.load_store(settings)
    service = store.get_feature_service("quote_check_v1")
    feats = pd.read_parquet(settings.published_table("feat_symbol__daily"))
    last = feats[feats["symbol"] == "AAA"].sort_values("event_timestamp").iloc[-1]
    online = store.get_online_features(
        features=service, entity_rows=[{"symbol": "AAA", "quote_price": 1.1 * last["close"]}]
    ).to_dict()
    assert online["quote_vs_close"][0] == pytest.approx(0.1, rel=1e-12)
    assert online["quote_move_in_vols"][0] == pytest.approx(0.1 / last["volatility_20d"])

    entity_df = pd.DataFrame(
        {
            "symbol": ["AAA"],
            "event_timestamp": [last["event_timestamp"] + pd.Timedelta(hours=1)],
            "quote_price": [0.9 * last["close"]],
        }
    )
    offline = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    assert offline["quote_vs_close"].iloc[0] == pytest.approx(-0.1, rel=1e-12)


def test_every_model_has_a_feature_service(repo) -> None:
    services = {s.name: s for s in repo.feature_services}
    assert {"next_day_up_v1", "account_profit_v1", "upper_circuit_v1"} <= set(services)
    views = {p.name for p in services["account_profit_v1"].feature_view_projections}
    assert views == {"account_daily"}


def test_codegen_check_passes_on_the_committed_file(pipeline: PipelineRun) -> None:
    from typer.testing import CliRunner

    from featurestack.cli import app

    env = {"FEATURESTACK_DATA_DIR": str(pipeline.settings.data_dir)}
    result = CliRunner().invoke(app, ["codegen", "--check"], env=env)
    assert result.exit_code == 0, result.output
    assert "→ feature view symbol_daily (19 features, entity symbol, ttl 7 d)" in result.output
    assert "is up to date" in result.output


def test_dbt_docs_generate_documents_every_column(pipeline: PipelineRun) -> None:
    import json

    target = find_project().dbt_target_dir
    from featurestack.infra.dbt_ops import run_dbt

    outcome = run_dbt(pipeline.settings, "docs generate")
    assert outcome.success, outcome.summary()
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    for node_id, node in catalog["nodes"].items():
        documented = manifest["nodes"][node_id]["columns"]
        for column in node["columns"]:
            assert documented.get(column, {}).get("description"), f"{node_id}.{column}"
    assert "model.featurestack.feat_account__daily" in catalog["nodes"]


@pytest.mark.parametrize("stale_module", [True, False])
def test_apply_refuses_definitions_that_disagree_with_dbt(
    pipeline: PipelineRun, specs, monkeypatch: pytest.MonkeyPatch, stale_module: bool
) -> None:
    """Both guards: the generated module's fingerprint, then the field-by-field comparison."""
    from typer.testing import CliRunner

    from featurestack.cli import app

    changed = [
        dataclasses.replace(
            s, features=(FieldSpec("close", "bigint", "retyped in dbt"), *s.features[1:])
        )
        if s.model == "feat_symbol__daily"
        else s
        for s in specs
    ]
    monkeypatch.setattr(feast_codegen, "view_specs", lambda manifest=None: changed)
    if not stale_module:
        monkeypatch.setattr(feast_codegen, "verify_fingerprint", lambda expected: None)
    registry = pipeline.settings.feast_dir / "registry.db"
    before = registry.read_bytes()
    env = {"FEATURESTACK_DATA_DIR": str(pipeline.settings.data_dir)}
    result = CliRunner().invoke(app, ["apply"], env=env)
    assert result.exit_code == 1, result.output
    assert "feast apply refused" in result.output
    expected = "generated from other dbt contracts" if stale_module else "symbol_daily.close: Feast"
    assert expected in result.output
    assert registry.read_bytes() == before
