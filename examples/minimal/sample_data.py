"""Sample raw data for this project: customers placing orders, deterministic (seeded).

    python sample_data.py --out data/raw [--customers 200] [--days 365] [--seed 7]

Writes ``orders.parquet`` with the columns of the raw contract
(dbt_project/models/staging/shop/_shop__sources.yml). Replace it with your own file: this
script only exists so the project runs the moment it is created.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("customer_id", pa.string()),
        ("ordered_at", pa.timestamp("us", tz="UTC")),
        ("amount", pa.float64()),
        ("channel", pa.string()),  # optional in the contract
    ]
)


def orders(customers: int, days: int, seed: int) -> pa.Table:
    """Each customer orders on a day with its own probability (a weekly rhythm on top), so
    recent ordering predicts the next week's: the label has signal to find."""
    rng = np.random.default_rng(seed)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    propensity = rng.beta(1.2, 12.0, customers)
    spend = rng.lognormal(3.0, 0.5, customers)
    web = rng.uniform(0.1, 0.9, customers)
    rows: dict[str, list] = {name: [] for name in SCHEMA.names}
    for day in range(days):
        weekly = 1.3 if day % 7 in (5, 6) else 0.9
        # customers drift: a slow, customer-specific trend in how often they order
        drift = 1 + 0.6 * np.sin(2 * np.pi * (day / days) + propensity * 20)
        ordering = rng.random(customers) < np.clip(propensity * weekly * drift, 0, 0.9)
        for c in np.flatnonzero(ordering):
            at = start + timedelta(days=day, seconds=int(rng.integers(8 * 3600, 22 * 3600)))
            rows["order_id"].append(f"O{len(rows['order_id']):07d}")
            rows["customer_id"].append(f"C{c:04d}")
            rows["ordered_at"].append(at)
            rows["amount"].append(round(float(spend[c] * rng.lognormal(0, 0.3)), 2))
            rows["channel"].append("web" if rng.random() < web[c] else "store")
    return pa.Table.from_pydict(rows, schema=SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "raw")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = orders(args.customers, args.days, args.seed)
    pq.write_table(table, args.out / "orders.parquet")
    print(f"{table.num_rows} orders of {args.customers} customers in {args.out}")


if __name__ == "__main__":
    main()
