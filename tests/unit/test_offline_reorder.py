import numpy as np
import pyarrow as pa

from featurestack.stores.offline import restore_input_order


def test_restore_input_order_keeps_every_type_value_and_null() -> None:
    rng = np.random.default_rng(0)
    n = 1000
    positions = rng.permutation(n)
    floats = pa.array(
        [None if i % 7 == 0 else (np.nan if i % 11 == 0 else i / 3) for i in range(n)],
        from_pandas=False,
    )
    original = pa.table(
        {
            "f": floats,
            "u": pa.array(range(n), type=pa.uint32()),
            "i": pa.array([None if i % 5 == 0 else -i for i in range(n)], type=pa.int16()),
            "t": pa.array(range(n), type=pa.timestamp("us", tz="UTC")),
            "s": pa.array([None if i % 3 == 0 else f"s{i}" for i in range(n)]),
            "b": pa.array([i % 2 == 0 for i in range(n)]),
        }
    )
    # What the join returns: rows in some other order, each tagged with its input position,
    # in several chunks.
    shuffled = original.take(pa.array(positions)).append_column("__fs_row", pa.array(positions))
    chunked = pa.concat_tables([shuffled.slice(0, 300), shuffled.slice(300)])
    restored = restore_input_order(chunked, n)
    assert restored.schema == original.schema
    for name in ("u", "i", "t", "s", "b"):
        assert restored.column(name).equals(original.column(name)), name
    got, want = (
        restored.column("f").to_numpy(zero_copy_only=False),
        floats.to_numpy(zero_copy_only=False),
    )
    np.testing.assert_array_equal(got, want)  # NaN == NaN here
    assert restored.column("f").is_null().equals(original.column("f").is_null())
    f = restored.column("f").to_pylist()
    assert f[0] is None and np.isnan(f[11])  # null stays null, NaN stays NaN
