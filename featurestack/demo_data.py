"""A deterministic synthetic market that follows the raw data contract exactly.

Real market data cannot ship with the repository, and random noise would teach nothing, so the
generator plants signals a model can learn and a user can reason about:

* a market factor with volatility regimes (a two-state Markov chain) that every symbol loads on;
* short-term mean reversion of each symbol's idiosyncratic return (the 5-day move partly undoes);
* news days: a volume spike with a large move that continues the next day;
* quarterly earnings announcements whose surprise moves the price, sometimes by +10 % or more,
  each scheduled (its date made public) 2-6 weeks ahead;
* accounts with different skill (how often they trade in the direction of the next move),
  activity and favourite symbols, and tiers that change over time;
* a few first prints of a close that are wrong and corrected days later (same ``symbol, ts``,
  later ``ingested_at``).

Everything is drawn from one seeded generator, so the same arguments give byte-identical files.
The market ends on ``DemoSpec.end``, by default the last weekday before today: its newest
features are then as fresh as a real daily feed's, so online reads within a view's TTL behave
as they would in production. Moving the end only moves the dates: every raw price, volume, trade
and EPS value stays the same (features counted in calendar days shift with the weekends).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer

RAW_FILES = ("prices.parquet", "trades.parquet", "earnings.parquet", "accounts.parquet")
TIERS = ("bronze", "silver", "gold", "platinum")

_TS = pa.timestamp("us", tz="UTC")
PRICES_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("ts", _TS),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("ingested_at", _TS),
    ]
)
TRADES_SCHEMA = pa.schema(
    [
        ("trade_id", pa.string()),
        ("account_id", pa.string()),
        ("symbol", pa.string()),
        ("ts", _TS),
        ("side", pa.string()),
        ("quantity", pa.float64()),
        ("price", pa.float64()),
        ("fee", pa.float64()),
    ]
)
EARNINGS_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("announced_at", _TS),
        ("scheduled_at", _TS),
        ("eps_estimate", pa.float64()),
        ("eps_actual", pa.float64()),
    ]
)
ACCOUNTS_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("opened_at", _TS),
        ("tier", pa.string()),
        ("updated_at", _TS),
    ]
)


@dataclass(frozen=True)
class DemoSpec:
    """Size and seed of a demo market."""

    symbols: int = 50
    accounts: int = 200
    days: int = 756
    seed: int = 42
    #: the last trading day; None: the last weekday before today (UTC)
    end: date | None = None

    def __post_init__(self) -> None:
        if self.symbols < 1 or self.accounts < 1:
            raise ValueError("--symbols and --accounts must be at least 1")
        if self.days < 30:
            raise ValueError("--days must be at least 30 (the longest feature window is 20 days)")


def symbol_names(n: int, rng: np.random.Generator) -> list[str]:
    """AAA, BBB, … ZZZ first (easy to type in examples), then unique random tickers."""
    names = [c * 3 for c in string.ascii_uppercase][:n]
    seen = set(names)
    while len(names) < n:
        cand = "".join(rng.choice(list(string.ascii_uppercase), size=int(rng.integers(3, 5))))
        if cand not in seen:
            seen.add(cand)
            names.append(cand)
    return names


def last_weekday_before(today: date | None = None) -> date:
    """The last weekday strictly before ``today`` (UTC today by default)."""
    day = (today or datetime.now(UTC).date()) - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def trading_days(days: int, end: date | None = None) -> pd.DatetimeIndex:
    """``days`` weekdays ending on ``end``, stamped at the 21:00 UTC close."""
    last = pd.Timestamp(end or last_weekday_before()).tz_localize("UTC")
    dates = pd.bdate_range(end=last, periods=days)
    return dates + pd.Timedelta(hours=21)


def _market_returns(rng: np.random.Generator, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Market factor returns and the regime (0 calm, 1 turbulent) of each day."""
    regime = np.zeros(days, dtype=np.int8)
    for t in range(1, days):
        stay = 0.985 if regime[t - 1] == 0 else 0.95
        regime[t] = regime[t - 1] if rng.random() < stay else 1 - regime[t - 1]
    sigma = np.where(regime == 0, 0.008, 0.02)
    return 0.0003 + sigma * rng.standard_normal(days), regime


def _prices(
    rng: np.random.Generator, names: list[str], days: pd.DatetimeIndex
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Daily bars, earnings announcements and the close matrix (days × symbols)."""
    n_days, n_sym = len(days), len(names)
    market, regime = _market_returns(rng, n_days)
    beta = rng.uniform(0.6, 1.5, n_sym)
    idio_sigma = rng.uniform(0.01, 0.022, n_sym)
    base_volume = np.exp(rng.uniform(np.log(2e5), np.log(5e6), n_sym))

    # Earnings: roughly quarterly, first one at a random offset per symbol.
    earn_day = np.zeros((n_days, n_sym), dtype=bool)
    for j in range(n_sym):
        t = int(rng.integers(5, 63))
        while t < n_days:
            earn_day[t, j] = True
            t += int(rng.integers(58, 68))
    surprise = np.clip(rng.standard_t(3, size=(n_days, n_sym)) * 0.06 + 0.01, -0.6, 0.6)
    news = (rng.random((n_days, n_sym)) < 0.04) & ~earn_day

    turbulence = np.where(regime == 1, 1.6, 1.0)[:, None]
    eps = rng.standard_normal((n_days, n_sym)) * idio_sigma * turbulence
    idio = np.zeros((n_days, n_sym))
    news_sign = np.where(rng.random((n_days, n_sym)) < 0.5, -1.0, 1.0)
    for t in range(n_days):
        drift = np.zeros(n_sym)
        if t >= 1:
            # Mean reversion of the last five idiosyncratic moves …
            drift -= 0.22 * idio[max(0, t - 5) : t].sum(axis=0)
            # … except after news, which keeps going the next day.
            drift += np.where(news[t - 1], 1.2 * idio_sigma * news_sign[t - 1], 0.0)
        shock = np.where(news[t], 3.0 * idio_sigma * news_sign[t], 0.0)
        shock += np.where(earn_day[t], 0.8 * surprise[t] + 0.02 * (surprise[t] > 0.12), 0.0)
        idio[t] = drift + shock + eps[t]
    returns = np.clip(beta[None, :] * market[:, None] + idio, -0.5, 1.0)
    start_price = np.exp(rng.uniform(np.log(15), np.log(400), n_sym))
    close = start_price[None, :] * np.cumprod(1 + returns, axis=0)

    prev_close = np.vstack([start_price[None, :], close[:-1]])
    gap = returns * rng.uniform(0.1, 0.6, (n_days, n_sym))
    open_ = prev_close * (1 + gap)
    wick = np.abs(rng.standard_normal((n_days, n_sym))) * idio_sigma * 0.4
    high = np.maximum(open_, close) * (1 + wick)
    low = np.minimum(open_, close) * (1 - wick * rng.uniform(0.5, 1.5, (n_days, n_sym)))
    vol_mult = np.exp(0.25 * rng.standard_normal((n_days, n_sym)))
    vol_mult *= 1 + 2.5 * np.abs(idio) / idio_sigma / 3
    vol_mult *= np.where(news | earn_day, rng.uniform(2.5, 5.0, (n_days, n_sym)), 1.0)
    volume = np.round(base_volume[None, :] * vol_mult)

    sym = np.tile(np.array(names, dtype=object), n_days)
    ts = np.repeat(days.values, n_sym)
    ingest_delay = pd.to_timedelta(rng.integers(2, 30, n_days * n_sym), unit="m")
    prices = pd.DataFrame(
        {
            "symbol": sym,
            "ts": ts,
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel(),
            "ingested_at": ts + ingest_delay,
        }
    )

    # A few wrong first prints, each corrected by a later row (1-5 days later).
    n_fix = max(1, len(prices) // 500)
    fix_idx = rng.choice(len(prices), size=n_fix, replace=False)
    wrong = prices.iloc[fix_idx].copy()
    factor = 1 + rng.choice([-1, 1], n_fix) * rng.uniform(0.01, 0.05, n_fix)
    wrong["close"] = wrong["close"] * factor
    wrong["high"] = np.maximum(wrong["high"], wrong["close"])
    wrong["low"] = np.minimum(wrong["low"], wrong["close"])
    corrected = prices.iloc[fix_idx].copy()
    corrected["ingested_at"] = corrected["ts"] + pd.to_timedelta(
        rng.integers(1, 6, n_fix), unit="D"
    )
    prices = pd.concat([prices.drop(prices.index[fix_idx]), wrong, corrected])
    prices = prices.sort_values(["ts", "symbol", "ingested_at"], kind="stable")

    ei, ej = np.nonzero(earn_day)
    eps_est = np.round(rng.uniform(0.2, 4.0, len(ei)), 2)
    earnings = pd.DataFrame(
        {
            "symbol": np.array(names, dtype=object)[ej],
            # Announced at noon UTC on the day, so the close of that day reacts to it.
            "announced_at": days.values[ei] - pd.Timedelta(hours=9),
            "eps_estimate": eps_est,
            "eps_actual": np.round(eps_est * (1 + surprise[ei, ej] * 2.0), 2),
        }
    ).sort_values(["announced_at", "symbol"], kind="stable")
    return prices.reset_index(drop=True), earnings.reset_index(drop=True), close


def _accounts(
    rng: np.random.Generator, n: int, days: pd.DatetimeIndex
) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """Account tier history (one row per change) and each account's opening day index."""
    ids = [f"ACC{i:05d}" for i in range(n)]
    open_idx = np.where(rng.random(n) < 0.7, 0, rng.integers(0, max(1, len(days) // 2), n)).astype(
        int
    )
    rows = []
    for i, acc in enumerate(ids):
        opened = days[open_idx[i]] - pd.Timedelta(days=int(rng.integers(1, 400)), hours=7)
        if open_idx[i] > 0:
            opened = days[open_idx[i]] - pd.Timedelta(hours=10)
        tier_i = int(rng.choice(4, p=[0.5, 0.3, 0.15, 0.05]))
        rows.append((acc, opened, TIERS[tier_i], opened))
        changes = sorted(rng.choice(len(days), size=int(rng.integers(0, 3)), replace=False))
        for c in changes:
            if c <= open_idx[i]:
                continue
            new_tier = int(np.clip(tier_i + rng.choice([-1, 1, 1]), 0, 3))
            if new_tier == tier_i:
                continue
            tier_i = new_tier
            rows.append((acc, opened, TIERS[tier_i], days[c] - pd.Timedelta(hours=3)))
    accounts = pd.DataFrame(rows, columns=["account_id", "opened_at", "tier", "updated_at"])
    return accounts, ids, open_idx


def _trades(
    rng: np.random.Generator,
    ids: list[str],
    open_idx: np.ndarray,
    names: list[str],
    days: pd.DatetimeIndex,
    close: np.ndarray,
) -> pd.DataFrame:
    """Trades by accounts of different skill; skilled ones lean into the next day's move."""
    n_days, n_sym = close.shape
    next_up = np.vstack([close[1:] > close[:-1], np.zeros((1, n_sym), dtype=bool)])
    frames = []
    for i, acc in enumerate(ids):
        skill = rng.uniform(-0.05, 0.25)
        rate = rng.uniform(0.2, 2.5)
        favourites = rng.choice(n_sym, size=min(n_sym, int(rng.integers(2, 8))), replace=False)
        active = np.arange(open_idx[i], n_days)
        counts = rng.poisson(rate, len(active))
        day_idx = np.repeat(active, counts)
        if len(day_idx) == 0:
            continue
        sym_idx = rng.choice(favourites, size=len(day_idx))
        informed = rng.random(len(day_idx)) < 0.5 + skill
        goes_up = next_up[day_idx, sym_idx]
        buy = np.where(informed, goes_up, rng.random(len(day_idx)) < 0.5)
        qty = np.round(np.exp(rng.uniform(np.log(5), np.log(800), len(day_idx))))
        px = close[day_idx, sym_idx] * (1 + rng.normal(0, 0.004, len(day_idx)))
        intraday = pd.to_timedelta(rng.integers(60, 390 * 60, len(day_idx)), unit="s")
        ts = days.values[day_idx] - pd.Timedelta(hours=6, minutes=30) + intraday
        frames.append(
            pd.DataFrame(
                {
                    "account_id": acc,
                    "symbol": np.array(names, dtype=object)[sym_idx],
                    "ts": ts,
                    "side": np.where(buy, "buy", "sell"),
                    "quantity": qty,
                    "price": np.round(px, 4),
                    "fee": np.round(np.maximum(1.0, 0.0005 * qty * px), 2),
                }
            )
        )
    trades = pd.concat(frames).sort_values(["ts", "account_id"], kind="stable")
    trades.insert(0, "trade_id", [f"T{k:09d}" for k in range(len(trades))])
    return trades.reset_index(drop=True)


def generate(spec: DemoSpec) -> dict[str, pd.DataFrame]:
    """Build the four raw tables in memory (pure: same spec, same frames)."""
    rng = np.random.default_rng(spec.seed)
    names = symbol_names(spec.symbols, rng)
    days = trading_days(spec.days, spec.end)
    prices, earnings, close = _prices(rng, names, days)
    accounts, ids, open_idx = _accounts(rng, spec.accounts, days)
    trades = _trades(rng, ids, open_idx, names, days, close)
    # The date of an announcement is published 2-6 weeks ahead. Drawn from a second generator
    # so adding the column left every other demo value unchanged.
    lead = np.random.default_rng([spec.seed, 1]).integers(14, 43, len(earnings))
    earnings.insert(2, "scheduled_at", earnings["announced_at"] - pd.to_timedelta(lead, unit="D"))
    return {"prices": prices, "trades": trades, "earnings": earnings, "accounts": accounts}


_SCHEMAS = {
    "prices": PRICES_SCHEMA,
    "trades": TRADES_SCHEMA,
    "earnings": EARNINGS_SCHEMA,
    "accounts": ACCOUNTS_SCHEMA,
}


def existing_raw_files(raw_dir: Path) -> list[Path]:
    """Files already in the raw folder (user data is never overwritten)."""
    if not raw_dir.exists():
        return []
    return sorted(p for p in raw_dir.iterdir() if not p.name.startswith("."))


def write_demo_data(raw_dir: Path, spec: DemoSpec) -> dict[str, int]:
    """Write the demo market into an empty raw folder; return rows per table.

    Refuses a folder that already holds files: they may be the user's own data. All files are
    written under temporary names first and renamed together at the end, so an interrupted
    run leaves no partial file behind.
    """
    present = existing_raw_files(raw_dir)
    if present:
        raise FileExistsError(
            f"{raw_dir} already holds {len(present)} file(s) ({present[0].name}, …); "
            "demo data only fills an empty raw folder. Empty it or set FEATURESTACK_RAW_DIR."
        )
    raw_dir.mkdir(parents=True, exist_ok=True)
    counts, staged = {}, []
    for name, frame in generate(spec).items():
        table = pa.Table.from_pandas(frame, schema=_SCHEMAS[name], preserve_index=False)
        tmp = raw_dir / f".{name}.parquet.tmp"
        pq.write_table(table, tmp)
        staged.append((tmp, raw_dir / f"{name}.parquet"))
        counts[name] = table.num_rows
    for tmp, final in staged:
        tmp.rename(final)
    return counts


def write_raw_as_of(raw_dir: Path, out_dir: Path, at: pd.Timestamp) -> None:
    """The raw files as they stood at instant ``at``: for leakage tests and incremental runs.

    Prices and trades up to their event time ``at`` (corrections ingested later included:
    features use corrected history), account changes that took effect by then, and earnings
    rows whose date was scheduled by then, with results announced later blanked.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    read = {name: pd.read_parquet(raw_dir / f"{name}.parquet") for name in _SCHEMAS}
    earnings = read["earnings"][read["earnings"]["scheduled_at"] <= at].copy()
    earnings.loc[earnings["announced_at"] > at, ["eps_estimate", "eps_actual"]] = np.nan
    frames = {
        "prices": read["prices"][read["prices"]["ts"] <= at],
        "trades": read["trades"][read["trades"]["ts"] <= at],
        "earnings": earnings,
        "accounts": read["accounts"][read["accounts"]["updated_at"] <= at],
    }
    for name, frame in frames.items():
        table = pa.Table.from_pandas(frame, schema=_SCHEMAS[name], preserve_index=False)
        tmp = out_dir / f".{name}.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.replace(out_dir / f"{name}.parquet")


def append_price_correction(
    raw_dir: Path, symbol: str, ts: pd.Timestamp, factor: float, ingested_at: pd.Timestamp
) -> None:
    """Append a late correction: the (symbol, ts) close times ``factor``, ingested later."""
    path = raw_dir / "prices.parquet"
    prices = pd.read_parquet(path)
    rows = prices[(prices["symbol"] == symbol) & (prices["ts"] == ts)]
    if rows.empty:
        raise ValueError(f"no price row for {symbol} at {ts} in {path}")
    fix = rows.sort_values("ingested_at").tail(1).copy()
    fix["close"] *= factor
    fix["high"] = np.maximum(fix["high"], fix["close"])
    fix["low"] = np.minimum(fix["low"], fix["close"])
    fix["ingested_at"] = ingested_at
    table = pa.Table.from_pandas(
        pd.concat([prices, fix]), schema=PRICES_SCHEMA, preserve_index=False
    )
    tmp = path.with_name(".prices.parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def demo_data_command(
    symbols: Annotated[int, typer.Option(help="Number of symbols.")] = 50,
    accounts: Annotated[int, typer.Option(help="Number of trading accounts.")] = 200,
    days: Annotated[int, typer.Option(help="Trading days, ending on --end.")] = 756,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same values).")] = 42,
    end: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Last trading day (default: the last weekday before today, so the newest "
            "features are fresh). Same seed and end: byte-identical files.",
        ),
    ] = None,
) -> None:
    """Fill an empty raw folder with the market demo's deterministic data (never overwrites
    files). The demo project is this repository's own; other projects bring their files.

    Example: featurestack demo-data --symbols 20 --days 300 --end 2025-06-30
    """
    from featurestack.core.settings import load_settings

    settings = load_settings()
    present = settings.raw_files()
    if present:
        typer.echo(
            f"{settings.raw_dir} already holds {len(present)} file(s); using them as they are "
            "(demo data only fills an empty raw folder)."
        )
        return
    try:
        spec = DemoSpec(
            symbols=symbols,
            accounts=accounts,
            days=days,
            seed=seed,
            end=end.date() if end else None,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    counts = write_demo_data(settings.raw_dir, spec)
    rows = ", ".join(f"{name} {n:,}" for name, n in counts.items())
    typer.echo(f"demo data written to {settings.raw_dir}: {rows} rows")
