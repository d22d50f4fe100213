"""The Redis store's value layout: every Feast type and every null survives a round trip."""

from __future__ import annotations

import math

from feast.types import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp
from hypothesis import given
from hypothesis import strategies as st

from featurestack.stores.redis_online import RowCodec

TYPES = [Float64, Int64, String, Bool, Bytes, Float32, Int32, UnixTimestamp, Array(Int64)]
VALUES = [
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
    st.text(),
    st.booleans(),
    st.binary(),
    st.floats(width=32),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(0, 2**40),
    st.binary(),  # list types are stored as Feast's serialized Value
]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


@given(
    st.tuples(*(st.none() | v for v in VALUES)),
    st.integers(-(2**62), 2**62),
    st.integers(-(2**63), 2**62),
)
def test_values_round_trip_with_their_nulls(values: tuple, event: int, created: int) -> None:
    codec = RowCodec(TYPES)
    blob = codec.encode(event, created, values)
    got_event, got = codec.decode(blob)
    assert got_event == event
    assert int.from_bytes(blob[8:16], "big", signed=True) == created  # the script compares it
    assert all(_same(a, b) for a, b in zip(values, got, strict=True)), (values, got)


def test_an_empty_string_is_not_null_and_nine_features_need_two_mask_bytes() -> None:
    codec = RowCodec([String] + [Float64] * 8)
    values = ("", *[None] * 7, 1.5)
    assert codec.decode(codec.encode(1, 2, values))[1] == list(values)
    assert codec.mask_bytes == 2
