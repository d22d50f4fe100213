"""Every published feature and label equals an independent pandas computation on the raw data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests import feature_reference as ref
from tests.conftest import PipelineRun


def assert_matches(ours: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    """Same rows, and in every shared column the same nulls and values (rtol 1e-9)."""
    merged = expected.merge(ours, on=keys, how="outer", suffixes=("_ref", ""), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    assert len(merged) == len(ours) == len(expected)
    for col in [c for c in ours.columns if c not in keys and c in expected.columns]:
        a, b = merged[col], merged[f"{col}_ref"]
        assert (a.isna().to_numpy() == b.isna().to_numpy()).all(), f"{col}: nulls differ"
        a, b = a[a.notna()], b[b.notna()]
        numeric = pd.api.types.is_numeric_dtype
        if not (numeric(a) and numeric(b)):
            assert list(a) == list(b), col
        else:
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=1e-9, err_msg=col)


@pytest.fixture(scope="module")
def published(pipeline: PipelineRun):
    return lambda model: pd.read_parquet(pipeline.settings.published_table(model))


def test_symbol_features(pipeline: PipelineRun, published) -> None:
    ours = published("feat_symbol__daily")
    expected = ref.symbol_features(pipeline.settings.raw_dir)
    assert set(ours.columns) == set(expected.columns)
    assert_matches(ours, expected, ["symbol", "event_timestamp"])
    # The calendar features are not trivially null: upcoming announcements are often known.
    assert ours["days_until_earnings"].notna().mean() > 0.15
    assert (ours["days_until_earnings"].dropna() >= 0).all()
    # Warm-up nulls are exactly where the definitions say.
    by_symbol = ours.sort_values("event_timestamp").groupby("symbol")
    assert by_symbol["return_1d"].apply(lambda s: s.head(1).isna().all()).all()
    assert by_symbol["volatility_30d"].apply(lambda s: s.head(30).isna().all()).all()
    assert by_symbol["volatility_30d"].apply(lambda s: s.iloc[30:].notna().all()).all()


def test_market_features(pipeline: PipelineRun, published) -> None:
    ours = published("feat_market__daily")
    expected = ref.market_features(pipeline.settings.raw_dir)
    assert set(ours.columns) == set(expected.columns)
    assert_matches(ours, expected, ["symbol", "event_timestamp"])
    # An equal-weighted market: the symbols' betas average to about one.
    assert 0.8 < ours["beta_60d"].mean() < 1.2


def test_account_features(pipeline: PipelineRun, published) -> None:
    ours = published("feat_account__daily")
    expected = ref.account_features(pipeline.settings.raw_dir)
    assert_matches(ours, expected, ["account_id", "event_timestamp"])
    assert ours["realized_profit"].ne(0).any() and ours["win_rate_30d"].notna().any()
    assert ours["tier"].nunique() > 1


def test_account_profit_labels(pipeline: PipelineRun, published) -> None:
    ours = published("lbl_account_next_day_profit")
    expected = ref.account_labels(pipeline.settings.raw_dir)
    assert_matches(ours, expected, ["account_id", "event_timestamp"])


def test_upper_circuit_labels(pipeline: PipelineRun, published) -> None:
    ours = published("lbl_upper_circuit_on_earnings")
    expected = ref.upper_circuit_labels(pipeline.settings.raw_dir)
    assert_matches(ours, expected, ["symbol", "event_timestamp"])
    assert (ours["label_timestamp"] > ours["event_timestamp"]).all()
