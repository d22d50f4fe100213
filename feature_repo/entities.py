"""Entities: the keys features are joined on."""

from feast import Entity, ValueType

symbol = Entity(
    name="symbol",
    join_keys=["symbol"],
    value_type=ValueType.STRING,
    description="A traded instrument, identified by its ticker.",
)
