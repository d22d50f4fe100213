"""Feast codegen for a dbt model keyed by several columns: one entity per key column, and the
mistakes a project can make in meta named with their fix."""

from __future__ import annotations

import ast
import dataclasses
from datetime import timedelta

import pytest
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

from featurestack.infra import feast_codegen
from featurestack.infra.feast_codegen import ContractMismatch, FieldSpec, ViewSpec

STORE = FieldSpec("store_id", "varchar", "Store identifier.")
PRODUCT = FieldSpec("product_id", "bigint", "Product identifier.")

SPEC = ViewSpec(
    model="feat_store_product__daily",
    unique_id="model.retail.feat_store_product__daily",
    description="Demand per store and product.",
    entities=("store", "product"),
    join_keys=(STORE, PRODUCT),
    timestamp_field="event_timestamp",
    ttl_days=14,
    owner="team",
    features=(FieldSpec("units_sold", "double", "Units sold that day."),),
)


def test_a_composite_key_renders_one_entity_per_key_column() -> None:
    code = feast_codegen.render([SPEC])
    tree = ast.parse(code)
    calls = {
        node.targets[0].id: node.value  # type: ignore[attr-defined]
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
    }
    entities = {
        name: {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg == "join_keys"}
        for name, call in calls.items()
        if isinstance(call.func, ast.Name) and call.func.id == "Entity"
    }
    assert entities == {
        "store": {"join_keys": ["store_id"]},
        "product": {"join_keys": ["product_id"]},
    }
    assert "value_type=ValueType.INT64" in code and "value_type=ValueType.STRING" in code
    assert "entities=[store, product]," in code


def test_one_key_keeps_its_fingerprint_form() -> None:
    """A one-key model fingerprints as before composite keys: generated modules stay valid."""
    single = dataclasses.replace(SPEC, entities=("store",), join_keys=(STORE,))
    assert feast_codegen._as_dict(single)["entity"] == "store"
    assert feast_codegen._as_dict(SPEC)["entity"] == ["store", "product"]


@pytest.mark.parametrize(
    ("entity", "keys", "words"),
    [
        ("store", ["store_id", "product_id"], ["2 key column(s)", "entity: [store, product]"]),
        (["store"], ["store_id", "product_id"], ["one entity per key column"]),
        (["store", "store"], ["store_id", "product_id"], ["names an entity twice"]),
        ("store", [], ["no key column besides event_timestamp"]),
    ],
)
def test_meta_mistakes_name_the_model_and_the_fix(
    entity: object, keys: list[str], words: list[str]
) -> None:
    with pytest.raises(ContractMismatch) as err:
        feast_codegen._entities("feat_x__daily", entity, keys, "event_timestamp")
    assert "feat_x__daily" in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_an_entity_shared_by_two_models_must_be_keyed_alike() -> None:
    other = dataclasses.replace(
        SPEC,
        model="feat_store__daily",
        entities=("store",),
        join_keys=(FieldSpec("store_code", "varchar", "Another key."),),
    )
    with pytest.raises(ContractMismatch, match=r"entity 'store': .* by store_id .* by store_code"):
        feast_codegen.render([SPEC, other])
    same = dataclasses.replace(other, join_keys=(STORE,))
    assert "store = Entity(" in feast_codegen.render([SPEC, same])


def _view(entities: list[Entity]) -> FeatureView:
    return FeatureView(
        name="store_product_daily",
        entities=entities,
        ttl=timedelta(days=14),
        schema=[Field(name="units_sold", dtype=Float64)],
        source=FileSource(
            name="src", path="/p/feat_store_product__daily", timestamp_field="event_timestamp"
        ),
    )


def test_check_views_compares_every_entity_of_a_composite_key() -> None:
    store = Entity(name="store", join_keys=["store_id"], value_type=ValueType.STRING)
    product = Entity(name="product", join_keys=["product_id"], value_type=ValueType.INT64)
    assert feast_codegen.check_views([_view([store, product])], [store, product], [SPEC]) == []

    only_store = feast_codegen.check_views([_view([store])], [store, product], [SPEC])
    assert only_store == [
        "store_product_daily: entities ['store'], dbt meta says ['store', 'product']"
    ]
    as_text = Entity(name="product", join_keys=["product_id"], value_type=ValueType.STRING)
    retyped = feast_codegen.check_views([_view([store, as_text])], [store, as_text], [SPEC])
    assert retyped == [
        "store_product_daily: entity product is STRING, the dbt key product_id is bigint"
    ]
