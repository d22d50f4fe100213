"""Which entities a batch scores when a service's views are keyed by different parts of a
composite key (models_py/predict.py ``_entities``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models_py.dataset import ServiceInfo
from models_py.predict import _entities


def _view(folder: Path, name: str, **columns: list) -> str:
    """A published table as the gate writes it: a folder of monthly Parquet files."""
    path = folder / name
    path.mkdir()
    pd.DataFrame(columns).to_parquet(path / "2024-01.parquet", index=False)
    return str(path)


def _info(keys: list[str], paths: list[str]) -> ServiceInfo:
    return ServiceInfo("svc", keys, [], [], paths)


def test_the_view_with_every_key_names_the_entities(tmp_path: Path) -> None:
    pairs = _view(
        tmp_path,
        "pairs",
        store_id=["S2", "S1", "S1", "S1"],
        product_id=["P1", "P2", "P1", "P1"],
        units=[1, 2, 3, 4],
    )
    stores = _view(tmp_path, "stores", store_id=["S1", "S2", "S3"], units=[5, 6, 7])
    got = _entities(_info(["store_id", "product_id"], [stores, pairs]))
    # S3 sells nothing per product: it is no (store, product) entity
    assert got.to_dict("records") == [
        {"store_id": "S1", "product_id": "P1"},
        {"store_id": "S1", "product_id": "P2"},
        {"store_id": "S2", "product_id": "P1"},
    ]


def test_views_keyed_by_disjoint_parts_give_every_combination(tmp_path: Path) -> None:
    stores = _view(tmp_path, "stores", store_id=["S2", "S1", "S1"], x=[1, 2, 3])
    products = _view(tmp_path, "products", product_id=["P1", "P2"], y=[1, 2])
    got = _entities(_info(["store_id", "product_id"], [stores, products]))
    assert list(got.itertuples(index=False, name=None)) == [
        ("S1", "P1"),
        ("S1", "P2"),
        ("S2", "P1"),
        ("S2", "P2"),
    ]


def test_one_key_is_unchanged(tmp_path: Path) -> None:
    a = _view(tmp_path, "a", symbol=["B", "A", "B"], x=[1, 2, 3])
    b = _view(tmp_path, "b", symbol=["C"], y=[1])
    assert _entities(_info(["symbol"], [a, b]))["symbol"].tolist() == ["A", "B", "C"]
