"""Online update rate of `featurestack learn`'s learner (models_py/online.py): outcomes learned
per second, for a batch of new outcomes (one partial_fit, one SGD step per row) and for one
call per outcome, on rows shaped like the demo model's inputs (docs/benchmarks.md).

    .venv/bin/python bench/online_rate.py [--features 24] [--rows 200000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from models_py.online import OnlineModel
from models_py.spec import OnlineSpec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, default=24)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, args.features))
    y = (X[:, 0] + rng.normal(size=args.rows) > 0).astype(float)
    names = [f"f{i}" for i in range(args.features)]
    batch = OnlineModel(names, "binary", OnlineSpec())
    t = time.perf_counter()
    batch.learn(X, y)
    batched = args.rows / (time.perf_counter() - t)
    single = OnlineModel(names, "binary", OnlineSpec())
    n = min(args.rows, 3000)
    t = time.perf_counter()
    for i in range(n):
        single.learn_one(X[i], y[i])
    one = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(2000):
        batch.predict(X[i : i + 8])
    predict_us = (time.perf_counter() - t) / 2000 * 1e6
    print(f"batch of {args.rows}: {batched:,.0f} outcomes/s")
    print(f"one call per outcome: {one:,.0f} outcomes/s")
    print(f"online score of 8 rows (the blend's extra work per request): {predict_us:.0f} µs")


if __name__ == "__main__":
    main()
