from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from featurestack.demo_data import RAW_FILES, DemoSpec, generate, write_demo_data

TINY = DemoSpec(symbols=4, accounts=6, days=60, seed=3)


def test_same_seed_gives_identical_data_and_another_seed_does_not() -> None:
    a, b, c = generate(TINY), generate(TINY), generate(DemoSpec(4, 6, 60, seed=4))
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    assert not a["prices"]["close"].equals(c["prices"]["close"])


def test_files_follow_the_raw_data_contract(tmp_path: Path) -> None:
    counts = write_demo_data(tmp_path, TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(RAW_FILES)
    schemas = {name: pq.read_schema(tmp_path / f"{name}.parquet") for name in counts}
    assert schemas["prices"].names == [
        "symbol", "ts", "open", "high", "low", "close", "volume", "ingested_at",
    ]  # fmt: skip
    assert schemas["trades"].names == [
        "trade_id", "account_id", "symbol", "ts", "side", "quantity", "price", "fee",
    ]  # fmt: skip
    assert schemas["earnings"].names == [
        "symbol",
        "announced_at",
        "scheduled_at",
        "eps_estimate",
        "eps_actual",
    ]
    assert schemas["accounts"].names == ["account_id", "opened_at", "tier", "updated_at"]
    for schema in schemas.values():
        for field in schema:
            if str(field.type).startswith("timestamp"):
                assert field.type.tz == "UTC", field.name
    trades = pd.read_parquet(tmp_path / "trades.parquet")
    assert set(trades["side"]) == {"buy", "sell"}
    assert trades["trade_id"].is_unique


def test_corrections_are_later_rows_for_the_same_symbol_and_day() -> None:
    prices = generate(TINY)["prices"]
    dup = prices[prices.duplicated(["symbol", "ts"], keep=False)]
    assert len(dup) > 0
    for _, group in dup.groupby(["symbol", "ts"]):
        assert group["ingested_at"].nunique() == len(group)
        assert (group["ingested_at"] > group["ts"].iloc[0]).all()


def test_ohlc_are_consistent() -> None:
    prices = generate(TINY)["prices"]
    assert (prices["high"] >= prices[["open", "close"]].max(axis=1) - 1e-9).all()
    assert (prices["low"] <= prices[["open", "close"]].min(axis=1) + 1e-9).all()
    assert (prices["low"] > 0).all() and (prices["volume"] > 0).all()


def test_user_files_are_never_overwritten(tmp_path: Path) -> None:
    own = tmp_path / "prices.parquet"
    own.write_bytes(b"the user's own data")
    with pytest.raises(FileExistsError, match="only fills an empty raw folder"):
        write_demo_data(tmp_path, TINY)
    assert own.read_bytes() == b"the user's own data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices.parquet"]


def test_too_short_a_market_is_rejected() -> None:
    with pytest.raises(ValueError, match="--days"):
        DemoSpec(days=10)


def test_the_market_ends_yesterday_and_moving_the_end_moves_only_dates() -> None:
    from datetime import date

    from featurestack.demo_data import last_weekday_before

    assert last_weekday_before(date(2026, 11, 25)) == date(2026, 11, 24)  # a Wednesday
    assert last_weekday_before(date(2026, 11, 23)) == date(2026, 11, 20)  # Monday → Friday
    assert last_weekday_before(date(2026, 11, 22)) == date(2026, 11, 20)  # Sunday → Friday
    default = generate(TINY)["prices"]
    assert default["ts"].max().date() == last_weekday_before()
    earlier = generate(DemoSpec(4, 6, 60, seed=3, end=date(2024, 6, 28)))["prices"]
    assert earlier["ts"].max() == pd.Timestamp("2024-06-28 21:00")  # naive UTC in frames
    assert earlier["close"].tolist() == default["close"].tolist()
    assert earlier["ts"].dt.weekday.max() <= 4
