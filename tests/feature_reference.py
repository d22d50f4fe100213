"""Every feature and label definition written a second time, independently, in pandas/NumPy.

Loops and plain pandas rather than clever vectorisation: this is the reference the dbt models
are compared with, so it should be easy to read against the yml descriptions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def prices(raw_dir: Path) -> pd.DataFrame:
    """Raw prices with corrections resolved (latest ingested_at wins), per symbol by day."""
    p = pd.read_parquet(raw_dir / "prices.parquet")
    p = p.sort_values("ingested_at").drop_duplicates(["symbol", "ts"], keep="last")
    return p.sort_values(["symbol", "ts"]).reset_index(drop=True)


def _days_between(earlier: pd.Series, later: pd.Series) -> pd.Series:
    days = later.dt.tz_convert("UTC").dt.normalize() - earlier.dt.tz_convert("UTC").dt.normalize()
    return days.dt.days.astype("Int64")


def symbol_features(raw_dir: Path) -> pd.DataFrame:
    p = prices(raw_dir)
    g = p.groupby("symbol", group_keys=False)
    out = pd.DataFrame({"symbol": p["symbol"], "event_timestamp": p["ts"], "close": p["close"]})
    prev = g["close"].shift(1)
    out["return_1d"] = p["close"] / prev - 1
    for n, name in [
        (5, "return_5d"),
        (7, "momentum_7d"),
        (14, "momentum_14d"),
        (30, "momentum_30d"),
    ]:
        out[name] = p["close"] / g["close"].shift(n) - 1
    by = out.groupby("symbol")["return_1d"]
    for n in (7, 14, 20, 30):
        out[f"volatility_{n}d"] = by.transform(lambda s, n=n: s.rolling(n, min_periods=n).std())
    vol = p.groupby("symbol")["volume"]
    for n in (20, 30):
        mean = vol.transform(lambda s, n=n: s.rolling(n, min_periods=n).mean())
        std = vol.transform(lambda s, n=n: s.rolling(n, min_periods=n).std())
        out[f"volume_zscore_{n}d"] = ((p["volume"] - mean) / std).where(std > 0)
    out["volume_ma_7d"] = vol.transform(lambda s: s.rolling(7, min_periods=7).mean())
    out["volume_ma_30d"] = vol.transform(lambda s: s.rolling(30, min_periods=30).mean())
    out["high_low_range"] = (p["high"] - p["low"]) / p["close"]
    out["gap_from_previous_close"] = p["open"] / prev - 1

    e = pd.read_parquet(raw_dir / "earnings.parquet")
    e["surprise"] = ((e["eps_actual"] - e["eps_estimate"]) / e["eps_estimate"].abs()).where(
        e["eps_estimate"] != 0
    )
    since, until, surprise = [], [], []
    for sym, ts in zip(out["symbol"], out["event_timestamp"], strict=True):
        mine = e[e["symbol"] == sym]
        past = mine[mine["announced_at"] <= ts]
        if len(past):
            last = past.loc[past["announced_at"].idxmax()]
            since.append((ts.normalize() - last["announced_at"].normalize()).days)
            surprise.append(last["surprise"])
        else:
            since.append(pd.NA)
            surprise.append(np.nan)
        known = mine[(mine["scheduled_at"] <= ts) & (mine["announced_at"] > ts)]
        nxt = known["announced_at"].min() if len(known) else None
        until.append((nxt.normalize() - ts.normalize()).days if nxt is not None else pd.NA)
    out["days_since_earnings"] = pd.array(since, dtype="Int64")
    out["days_until_earnings"] = pd.array(until, dtype="Int64")
    out["last_earnings_surprise"] = surprise
    return out


def market_features(raw_dir: Path) -> pd.DataFrame:
    p = prices(raw_dir)
    p["r"] = p["close"] / p.groupby("symbol")["close"].shift(1) - 1
    market = p.dropna(subset=["r"]).groupby("ts")["r"].mean()
    p["m"] = p["ts"].map(market)
    rows = []
    for sym, s in p.groupby("symbol"):
        x, y = s["r"].to_numpy(), s["m"].to_numpy()
        for i, ts in enumerate(s["ts"]):
            row = {"symbol": sym, "event_timestamp": ts, "market_return_1d": y[i]}
            for n in (20, 60):
                wx, wy = x[max(0, i - n + 1) : i + 1], y[max(0, i - n + 1) : i + 1]
                ok = len(wx) == n and not (np.isnan(wx).any() or np.isnan(wy).any())
                cov = np.cov(wx, wy, ddof=1)[0, 1] if ok else np.nan
                row[f"correlation_{n}d"] = cov / (wx.std(ddof=1) * wy.std(ddof=1)) if ok else np.nan
                row[f"beta_{n}d"] = cov / wy.var(ddof=1) if ok else np.nan
                if n == 20:
                    row["relative_strength_20d"] = (
                        np.prod(1 + wx) / np.prod(1 + wy) - 1 if ok else np.nan
                    )
            rows.append(row)
    return pd.DataFrame(rows)


def costed_trades(raw_dir: Path) -> pd.DataFrame:
    """Moving-average cost, long and short, one trade at a time."""
    t = pd.read_parquet(raw_dir / "trades.parquet").sort_values(["ts", "trade_id"])
    out = []
    for _, trades in t.groupby(["account_id", "symbol"]):
        pos, avg = 0.0, None
        for tr in trades.itertuples():
            q = tr.quantity if tr.side == "buy" else -tr.quantity
            closed, realized = 0.0, 0.0
            if pos == 0 or np.sign(pos) == np.sign(q):
                avg = ((pos * avg if avg is not None else 0.0) + q * tr.price) / (pos + q)
            else:
                closed = min(abs(q), abs(pos))
                realized = closed * np.sign(pos) * (tr.price - avg)
                if pos + q == 0:
                    avg = None
                elif np.sign(pos + q) != np.sign(pos):
                    avg = tr.price
            pos += q
            out.append((tr.trade_id, pos, avg, closed, realized))
    costed = pd.DataFrame(
        out, columns=["trade_id", "position_after", "avg_cost_after", "closed", "realized"]
    )
    return t.merge(costed, on="trade_id")


def account_days(raw_dir: Path) -> pd.DataFrame:
    """One row per account and trading day with the day's trades aggregated."""
    calendar = np.sort(prices(raw_dir)["ts"].unique())
    t = costed_trades(raw_dir)
    idx = np.searchsorted(calendar, t["ts"].to_numpy(), side="left")
    t = t[idx < len(calendar)].copy()
    t["day"] = calendar[idx[idx < len(calendar)]]
    t["signed"] = np.where(t["side"] == "buy", t["quantity"], -t["quantity"])
    daily = t.groupby(["account_id", "day"]).apply(
        lambda d: pd.Series(
            {
                "trade_count": len(d),
                "gross_notional": (d["quantity"] * d["price"]).sum(),
                "fees": d["fee"].sum(),
                "net_cash_flow": (-d["signed"] * d["price"] - d["fee"]).sum(),
                "realized_profit": d["realized"].sum(),
                "closing_trades": int((d["closed"] > 0).sum()),
                "winning_trades": int((d["realized"] > 0).sum()),
            }
        ),
        include_groups=False,
    )
    accounts = pd.read_parquet(raw_dir / "accounts.parquet")
    opened = accounts.groupby("account_id")["opened_at"].min()
    grid = pd.DataFrame(
        [(a, d) for a, o in opened.items() for d in calendar if d >= o],
        columns=["account_id", "day"],
    )
    days = grid.merge(daily.reset_index(), on=["account_id", "day"], how="left")
    days = days.fillna(0).rename(columns={"day": "event_timestamp"})
    days["net_profit"] = days["realized_profit"] - days["fees"]
    days["opened_at"] = days["account_id"].map(opened)
    return days.sort_values(["account_id", "event_timestamp"]).reset_index(drop=True)


def account_features(raw_dir: Path) -> pd.DataFrame:
    d = account_days(raw_dir)
    g = d.groupby("account_id")
    for n in (7, 30):
        d[f"net_profit_{n}d"] = g["net_profit"].transform(
            lambda s, n=n: s.rolling(n, min_periods=n).sum()
        )
        wins = g["winning_trades"].transform(lambda s, n=n: s.rolling(n, min_periods=n).sum())
        closes = g["closing_trades"].transform(lambda s, n=n: s.rolling(n, min_periods=n).sum())
        d[f"win_rate_{n}d"] = (wins / closes).where(closes > 0)
    accounts = pd.read_parquet(raw_dir / "accounts.parquet").sort_values("updated_at")
    accounts["updated_at"] = accounts["updated_at"].astype(d["event_timestamp"].dtype)
    d = pd.merge_asof(
        d.sort_values("event_timestamp"),
        accounts[["account_id", "updated_at", "tier"]],
        left_on="event_timestamp",
        right_on="updated_at",
        by="account_id",
    )
    d["days_since_opened"] = _days_between(d["opened_at"], d["event_timestamp"])
    return d.sort_values(["account_id", "event_timestamp"]).reset_index(drop=True)


def account_labels(raw_dir: Path) -> pd.DataFrame:
    d = account_days(raw_dir)
    g = d.groupby("account_id")
    d["next_day_net_profit"] = g["net_profit"].shift(-1)
    d["next_day_gross_profit"] = g["realized_profit"].shift(-1)
    d["next_day_trade_count"] = g["trade_count"].shift(-1)
    d["label_timestamp"] = g["event_timestamp"].shift(-1)
    return d[d["label_timestamp"].notna()].reset_index(drop=True)


def upper_circuit_labels(raw_dir: Path) -> pd.DataFrame:
    p = prices(raw_dir)
    p["previous_close"] = p.groupby("symbol")["close"].shift(1)
    e = pd.read_parquet(raw_dir / "earnings.parquet")
    rows = []
    for ann in e.itertuples():
        after = p[(p["symbol"] == ann.symbol) & (p["ts"] >= ann.announced_at)]
        if after.empty or np.isnan(after.iloc[0]["previous_close"]):
            continue
        first = after.iloc[0]
        ratio = first["close"] / first["previous_close"]
        rows.append((ann.symbol, ann.announced_at, int(ratio >= 1.1), first["ts"]))
    return pd.DataFrame(
        rows, columns=["symbol", "event_timestamp", "upper_circuit", "label_timestamp"]
    )
