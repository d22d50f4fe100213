"""The model server's pure parts: the traffic split, the prediction log, the drift verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from models_py.monitor import MonitorConfig, compare, feature_drift, ks_critical
from models_py.prediction_log import PredictionLog, expand, read_log
from models_py.serving import entity_key, in_challenger_share


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_the_split_sends_the_configured_share_and_is_stable(share: float) -> None:
    keys = [entity_key({"symbol": f"S{i:05d}"}, ["symbol"]) for i in range(20_000)]
    first = [in_challenger_share(k, share) for k in keys]
    assert first == [in_challenger_share(k, share) for k in keys]  # same key, same side
    assert np.mean(first) == pytest.approx(share, abs=0.015)
    if 0 < share < 1:  # a larger share only adds entities: nobody flips back
        wider = [in_challenger_share(k, min(share + 0.1, 1)) for k in keys]
        assert all(w for f, w in zip(first, wider, strict=True) if f)


def _row(request_id: str, at: datetime, role: str = "champion") -> tuple:
    return (
        request_id,
        at,
        "m",
        "1",
        role,
        {"symbol": "AAA"},
        {"close": 1.5, "volume": float("nan")},
        at - timedelta(hours=3),
        0.4,
        False,
        None,
        None,
        ["close"],
    )


def test_the_log_writes_one_partition_per_day_and_reads_back_in_order(tmp_path) -> None:
    log = PredictionLog(tmp_path, flush_rows=10_000, flush_seconds=60)
    log.start()
    day1 = datetime(2026, 11, 2, 23, 59, tzinfo=UTC)
    log.append([_row("a", day1), _row("a", day1, "shadow")])
    log.append([_row("b", day1 + timedelta(minutes=2))])
    # no Parquet before a flush: only the journal the rows were appended to
    assert log.pending == 3 and [p.name for p in tmp_path.iterdir()] == ["_journal"]
    log.close()  # a clean stop writes everything, and leaves no journal segment
    assert sorted(p.name for p in tmp_path.glob("date=*")) == ["date=2026-11-02", "date=2026-11-03"]
    assert list((tmp_path / "_journal").iterdir()) == []
    frame = read_log(tmp_path)
    assert list(frame["request_id"]) == ["a", "a", "b"]
    assert list(frame["role"]) == ["champion", "shadow", "champion"]
    features = expand(frame, "features")
    assert features["close"].tolist() == [1.5] * 3 and features["volume"].isna().all()
    assert frame["out_of_range"].iloc[0].tolist() == ["close"]
    only_day2 = read_log(tmp_path, since=datetime(2026, 11, 3, tzinfo=UTC))
    assert list(only_day2["request_id"]) == ["b"]


def test_drift_fires_on_a_shift_and_not_on_a_resample() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"a": rng.normal(size=4000), "b": rng.lognormal(size=4000)})
    resample = reference.sample(frac=0.5, replace=True, random_state=1)
    config = MonitorConfig()
    assert not any(d["drifted"] for d in feature_drift(reference, resample, ["a", "b"], config))
    shifted = resample.assign(a=resample["a"] + 0.5)
    verdict = {
        d["feature"]: d["drifted"] for d in feature_drift(reference, shifted, ["a", "b"], config)
    }
    assert verdict == {"a": True, "b": False}
    few = compare(resample["a"].head(10), reference["a"], config)
    assert few["psi"] is None and not few["drifted"]  # too few rows to judge


def test_the_ks_limit_grows_for_small_samples() -> None:
    assert ks_critical(100, 5000) > ks_critical(5000, 5000)
    assert ks_critical(100, 5000) == pytest.approx(0.164, abs=0.002)


def test_two_apps_in_one_process_keep_their_own_counts(tmp_path, monkeypatch) -> None:
    """Feast's metrics module switches prometheus_client to values in files shared by every
    metric of one name and labels in the process; the server's counts must stay its own."""
    from prometheus_client import generate_latest, values

    from featurestack.core.settings import Settings
    from models_py.server_metrics import Metrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())  # as Feast leaves it
    settings = Settings(tmp_path, tmp_path, "sqlite://")
    first, second = Metrics(settings), Metrics(settings)
    first.observe("m", "1", "champion", 3, 0.01)
    first.observe("m", "1", "champion", 3, 0.01)
    second.observe("m", "1", "champion", 1, 0.01)
    second.error("m", "bad_request")
    text = generate_latest(second.registry).decode()
    assert 'featurestack_requests_total{model="m",role="champion",version="1"} 1.0' in text
    assert 'featurestack_predictions_total{model="m",role="champion",version="1"} 1.0' in text
    assert 'featurestack_errors_total{kind="bad_request",model="m"} 1.0' in text
