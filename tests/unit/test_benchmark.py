"""Issue 20: benchmark regressions against a history file, and the calibration table."""

from __future__ import annotations

import numpy as np

from models_py.benchmark import Benchmark, calibration_table, regressions


def run(values: dict[str, float], metric: str = "f1", champion: str = "2") -> Benchmark:
    versions = [
        {"version": v, "aliases": ["champion"] if v == champion else [], "metrics": {metric: x}}
        for v, x in values.items()
    ]
    return Benchmark("m", metric, 100, "2024-01-01 → 2024-02-01", versions)


def test_a_drop_beyond_the_tolerance_is_a_regression() -> None:
    before = {"versions": run({"1": 0.50, "2": 0.60}).versions}
    assert regressions(run({"1": 0.49, "2": 0.59}), before, 0.05) == []
    found = regressions(run({"1": 0.40, "2": 0.59}), before, 0.05)
    assert found == ["v1 f1 0.5000 → 0.4000 (-20.0%)"]
    # a new champion worse than the old one is a regression of the champion
    found = regressions(run({"1": 0.50, "2": 0.60, "3": 0.30}, champion="3"), before, 0.05)
    assert found == ["champion f1 0.6000 → 0.3000 (-50.0%)"]


def test_lower_is_better_metrics_regress_upwards() -> None:
    before = {"versions": run({"1": 10.0}, metric="rmse", champion="1").versions}
    assert regressions(run({"1": 10.4}, metric="rmse", champion="1"), before, 0.05) == []
    assert len(regressions(run({"1": 11.0}, metric="rmse", champion="1"), before, 0.05)) == 2


def test_calibration_table_compares_predicted_and_observed() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20000)
    y = (rng.uniform(size=p.size) < p).astype(float)  # perfectly calibrated
    table = calibration_table(y, p)
    assert len(table) == 10 and sum(r["rows"] for r in table) == p.size
    assert all(abs(r["predicted"] - r["observed"]) < 0.03 for r in table)
