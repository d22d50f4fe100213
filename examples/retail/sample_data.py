"""Sample raw data for the retail project: daily sales per store and product, seeded.

    python sample_data.py --out data/raw [--stores 3] [--products 4] [--days 150] [--seed 11]

Writes ``sales.parquet`` with the columns of the raw contract
(dbt_project/models/staging/pos/_pos__sources.yml): one row per store, product and day that
sold anything. Small on purpose (a few thousand rows): the project builds, trains and serves
in well under a minute. Replace it with your own file.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("store_id", pa.string()),
        ("product_id", pa.string()),
        ("sales_date", pa.date32()),
        ("units_sold", pa.int64()),
        ("unit_price", pa.float64()),
        ("on_promotion", pa.bool_()),  # optional in the contract
    ]
)


def sales(stores: int, products: int, days: int, seed: int) -> pa.Table:
    """Each store and product has its own base demand, a weekly rhythm, a slow trend and
    promotions that lift demand and lower the price: yesterday's and last week's sales predict
    tomorrow's, so both labels have signal to find."""
    rng = np.random.default_rng(seed)
    end: date = datetime.now(UTC).date()
    start = end - timedelta(days=days)
    base = rng.lognormal(2.0, 0.5, (stores, products))
    price = rng.uniform(1.5, 12.0, products)
    weekday = np.array([0.8, 0.85, 0.9, 1.0, 1.2, 1.45, 1.3])
    rows: dict[str, list] = {name: [] for name in SCHEMA.names}
    promo_left = np.zeros((stores, products), dtype=int)
    for day in range(days):
        on = start + timedelta(days=day)
        trend = 1 + 0.3 * np.sin(2 * np.pi * day / 60 + np.arange(products))
        starting = (promo_left == 0) & (rng.random((stores, products)) < 0.04)
        promo_left[starting] = rng.integers(2, 6, int(starting.sum()))
        promo = promo_left > 0
        mean = base * weekday[on.weekday()] * trend * np.where(promo, 1.6, 1.0)
        units = rng.poisson(mean)
        for s in range(stores):
            for p in range(products):
                if units[s, p] == 0:
                    continue
                rows["store_id"].append(f"S{s + 1}")
                rows["product_id"].append(f"P{p + 1}")
                rows["sales_date"].append(on)
                rows["units_sold"].append(int(units[s, p]))
                rows["unit_price"].append(round(float(price[p] * (0.8 if promo[s, p] else 1)), 2))
                rows["on_promotion"].append(bool(promo[s, p]))
        promo_left = np.maximum(promo_left - 1, 0)
    return pa.Table.from_pydict(rows, schema=SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "raw")
    parser.add_argument("--stores", type=int, default=3)
    parser.add_argument("--products", type=int, default=4)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = sales(args.stores, args.products, args.days, args.seed)
    pq.write_table(table, args.out / "sales.parquet")
    shape = f"{args.stores} stores x {args.products} products"
    print(f"{table.num_rows} daily sales of {shape} in {args.out}")


if __name__ == "__main__":
    main()
