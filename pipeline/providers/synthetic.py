"""A seeded synthetic market for the demo, tests and benchmarks.

Deterministic: a bar's values depend only on the seed, the symbol and its timestamp, never on
the requested range, so overlapping fetches agree. Equities trade on a NYSE-like calendar
(weekends, the usual US holidays, 09:30-16:00 America/New_York); crypto trades 24/7 in UTC.
The daily path is built from per-year random blocks (so extending the horizon never changes
the past) with quarterly volatility/drift regimes and overnight gaps; intraday bars come from
a per-session Brownian bridge between the session's open and close. Some symbols split, some
pay quarterly dividends, and some have a trading halt (a run of sessions without bars).
OHLC and volume follow Yahoo's convention: split-adjusted; ``adj_close`` also adjusts for
dividends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from marketlake.pipeline.providers.base import (
    Capabilities,
    FetchRequest,
    Provider,
    empty_ohlcv,
    frame_schema,
    profile_row,
    rows_frame,
)

ORIGIN = date(2000, 1, 3)
NY = ZoneInfo("America/New_York")
_MINUTES = {"1m": 1, "15m": 15, "30m": 30, "1h": 60, "4h": 240}


def _h(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def is_crypto(symbol: str, instrument: Mapping[str, Any] | None = None) -> bool:
    if instrument and instrument.get("asset_type"):
        return instrument["asset_type"] == "crypto"
    return "/" in symbol or symbol.endswith("-USD")


def _observed(d: date) -> date:
    if d.weekday() == 5:
        return d - timedelta(days=1)
    if d.weekday() == 6:
        return d + timedelta(days=1)
    return d


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    d = date(year, month, 1)
    d += timedelta(days=(weekday - d.weekday()) % 7)
    return d + timedelta(weeks=n - 1)


def _last_weekday(year: int, month: int, weekday: int) -> date:
    d = date(year, month + 1, 1) - timedelta(days=1) if month < 12 else date(year, 12, 31)
    return d - timedelta(days=(d.weekday() - weekday) % 7)


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 19 * l_) // 433
    month = (h + l_ - 7 * m + 90) // 25
    return date(year, month, (h + l_ - 7 * m + 33 * month + 19) % 32)


@lru_cache(maxsize=64)
def holidays(year: int) -> frozenset[date]:
    """NYSE-style holidays of ``year`` (fixed-date ones observed on the nearest weekday)."""
    juneteenth = {_observed(date(year, 6, 19))} if year >= 2022 else set()
    return frozenset(
        juneteenth
        | {
            _easter(year) - timedelta(days=2),  # Good Friday
            _observed(date(year, 1, 1)),
            _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
            _nth_weekday(year, 2, 0, 3),  # Presidents' Day
            _last_weekday(year, 5, 0),  # Memorial Day
            _observed(date(year, 7, 4)),
            _nth_weekday(year, 9, 0, 1),  # Labor Day
            _nth_weekday(year, 11, 3, 4),  # Thanksgiving
            _observed(date(year, 12, 25)),
        }
    )


def is_session(d: date, crypto: bool) -> bool:
    return crypto or (d.weekday() < 5 and d not in holidays(d.year))


class _Profile:
    """Per-symbol constants derived from the seed."""

    def __init__(self, seed: int, symbol: str, crypto: bool) -> None:
        h = _h(seed, symbol)
        self.h = h
        self.crypto = crypto
        self.price0 = 20.0 + (h % 28_000) / 100.0 if not crypto else 100.0 + (h % 50_000)
        self.volume0 = 200_000.0 + (h >> 8) % 5_000_000 if not crypto else 50.0 + (h >> 8) % 5_000
        rng = np.random.default_rng([seed, h % (2**32), 7])
        self.split_date = None
        self.split_ratio = 1.0
        if h % 4 == 0:
            self.split_date = ORIGIN + timedelta(days=int(rng.integers(2_000, 9_000)))
            self.split_ratio = float(rng.choice([2.0, 3.0, 4.0]))
        self.dividend_anchor = None
        if not crypto and h % 3 == 0:
            self.dividend_anchor = ORIGIN + timedelta(days=int(rng.integers(10, 80)))
        self.halt_start = None
        if not crypto and h % 7 == 0:
            self.halt_start = ORIGIN + timedelta(days=int(rng.integers(3_000, 9_000)))
        self.halt_days = int(rng.integers(3, 12))

    def halted(self, d: date) -> bool:
        return self.halt_start is not None and 0 <= (d - self.halt_start).days < self.halt_days


class SyntheticProvider(Provider):
    """The seeded market (``options``: ``seed``)."""

    name = "synthetic"
    capabilities = Capabilities(
        kinds=frozenset({"ohlcv", "actions", "profile"}),
        timeframes=("1m", "15m", "30m", "1h", "4h", "1D"),
        max_range={
            "1m": timedelta(days=8),
            "15m": timedelta(days=60),
            "30m": timedelta(days=60),
            "1h": timedelta(days=365),
            "4h": timedelta(days=365),
            "1D": None,
        },
        default_concurrency=2,
        asset_types=frozenset({"equity", "etf", "index", "crypto", "fx", "future"}),
    )

    def __init__(self, settings=None, **kw) -> None:
        super().__init__(settings, **kw)
        self.seed = int(self.settings.options.get("seed", 42))

    # --- daily path -----------------------------------------------------------------------
    def daily(self, symbol: str, crypto: bool, end: date) -> pl.DataFrame:
        """All sessions from the origin through ``end`` (inclusive)."""
        frame = _daily_path(self.seed, symbol, crypto, end.year)
        return frame.filter(pl.col("date") <= end)

    def _fetch_ohlcv(self, request: FetchRequest) -> pl.DataFrame:
        crypto = is_crypto(request.symbol, request.instrument)
        now = self.clock()
        end = min(request.end, now)
        if end <= request.start:
            return empty_ohlcv()
        last_day = end.date()
        days = self.daily(request.symbol, crypto, last_day)
        if request.timeframe == "1D":
            out = days.filter((pl.col("ts") >= request.start) & (pl.col("ts") < end))
            close_local = time(0, 0) if crypto else time(16, 0)
            tz = UTC if crypto else NY
            finals = [
                datetime.combine(d, close_local, tzinfo=tz)
                + (timedelta(days=1) if crypto else timedelta(0))
                <= now
                for d in out.get_column("date").to_list()
            ]
            out = out.with_columns(pl.Series("is_final", finals, dtype=pl.Boolean))
            return self._finish(out, request)
        return self._intraday(request, days, end, crypto, now)

    def _intraday(
        self, req: FetchRequest, days: pl.DataFrame, end: datetime, crypto: bool, now: datetime
    ) -> pl.DataFrame:
        step = _MINUTES[req.timeframe]
        first = (req.start - timedelta(days=1)).date()
        sel = days.filter(pl.col("date") >= first)
        pieces = []
        p = _Profile(self.seed, req.symbol, crypto)
        for d, o, h, lo, c, v in sel.select(
            "date", "open", "high", "low", "close", "volume"
        ).iter_rows():
            if crypto:
                t0 = datetime.combine(d, time(0, 0), tzinfo=UTC)
                n = 1440
            else:
                t0 = datetime.combine(d, time(9, 30), tzinfo=NY).astimezone(UTC)
                n = 390
            if t0 + timedelta(minutes=n) <= req.start or t0 >= end:
                continue
            rng = np.random.default_rng([self.seed, p.h % (2**32), d.toordinal(), 1])
            inc = rng.standard_normal(n)
            walk = np.concatenate([[0.0], np.cumsum(inc)])
            bridge = walk - np.linspace(0.0, 1.0, n + 1) * walk[-1]
            scale = (h - lo) / max(np.ptp(bridge), 1e-9) * 0.5
            path = np.linspace(o, c, n + 1) + bridge * scale
            path = np.clip(path, lo, h)
            m_open, m_close = path[:-1], path[1:]
            wig = np.abs(rng.standard_normal(n)) * scale * 0.3
            m_high = np.minimum(np.maximum(m_open, m_close) + wig, h)
            m_low = np.maximum(np.minimum(m_open, m_close) - wig, lo)
            shape = 1.0 + 1.5 * (np.linspace(-1, 1, n) ** 2)
            w = shape * rng.uniform(0.5, 1.5, n)
            m_vol = v * w / w.sum()
            idx = np.arange(0, n, step)
            k = len(idx)
            b_open = m_open[idx]
            b_close = m_close[np.concatenate([idx[1:] - 1, [n - 1]])]
            b_high = np.maximum.reduceat(m_high, idx)
            b_low = np.minimum.reduceat(m_low, idx)
            b_vol = np.add.reduceat(m_vol, idx)
            if not crypto:
                b_vol = np.round(b_vol)
            ts = [t0 + timedelta(minutes=step * i) for i in range(k)]
            bar_end = [min(t + timedelta(minutes=step), t0 + timedelta(minutes=n)) for t in ts]
            pieces.append(
                pl.DataFrame(
                    {
                        "ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
                        "open": b_open,
                        "high": b_high,
                        "low": b_low,
                        "close": b_close,
                        "volume": b_vol,
                        "adj_close": b_close,
                        "is_final": [e <= now for e in bar_end],
                    }
                )
            )
        if not pieces:
            return empty_ohlcv()
        out = pl.concat(pieces).filter((pl.col("ts") >= req.start) & (pl.col("ts") < end))
        return self._finish(out, req)

    def _finish(self, out: pl.DataFrame, req: FetchRequest) -> pl.DataFrame:
        return out.with_columns(
            pl.lit(req.symbol).alias("symbol"),
            pl.lit(req.timeframe).alias("timeframe"),
            pl.lit(self.name).alias("provider"),
        ).select([pl.col(c).cast(t) for c, t in frame_schema("ohlcv").items()])

    # --- other kinds ----------------------------------------------------------------------
    def _fetch_actions(self, request: FetchRequest) -> pl.DataFrame:
        symbol, instrument, start, end = (
            request.symbol,
            request.instrument,
            request.start,
            request.end,
        )
        crypto = is_crypto(symbol, instrument)
        p = _Profile(self.seed, symbol, crypto)
        rows = []
        if p.split_date and start.date() <= p.split_date < end.date():
            rows.append(
                {
                    "symbol": symbol,
                    "ex_date": p.split_date,
                    "kind": "split",
                    "ratio": p.split_ratio,
                    "amount": None,
                }
            )
        days = self.daily(symbol, crypto, min(end, self.clock()).date())
        divs = days.filter(pl.col("dividend") > 0)
        for d, amount in divs.select("date", "dividend").iter_rows():
            if start.date() <= d < end.date():
                rows.append(
                    {
                        "symbol": symbol,
                        "ex_date": d,
                        "kind": "dividend",
                        "ratio": None,
                        "amount": amount,
                    }
                )
        return rows_frame(
            "actions", [{**r, "currency": "USD", "provider": self.name} for r in rows]
        )

    def _fetch_profile(self, request: FetchRequest) -> pl.DataFrame:
        symbol, instrument = request.symbol, request.instrument
        p = _Profile(self.seed, symbol, is_crypto(symbol, instrument))
        sectors = [
            "Technology",
            "Health Care",
            "Financials",
            "Energy",
            "Industrials",
            "Consumer Discretionary",
            "Utilities",
            "Materials",
        ]
        sector = "Digital Assets" if p.crypto else sectors[p.h % len(sectors)]
        return profile_row(
            symbol=symbol,
            provider=self.name,
            name=instrument.get("name") or f"{symbol} Synthetic",
            description=f"Synthetic instrument {symbol} (seed {self.seed}).",
            sector=sector,
            industry=sector + " (synthetic)",
            country="US",
            market_cap=p.price0 * p.volume0 * 50.0,
            fetched_at=self.clock(),
        )


@lru_cache(maxsize=4096)
def _daily_path(seed: int, symbol: str, crypto: bool, last_year: int) -> pl.DataFrame:
    """Every session from the origin through ``last_year``: a per-year block of draws each,
    so the past never depends on the horizon."""
    p = _Profile(seed, symbol, crypto)
    dates: list[date] = []
    rets, gaps, hix, lox, volm = [], [], [], [], []
    for year in range(ORIGIN.year, last_year + 1):
        rng = np.random.default_rng([seed, p.h % (2**32), year])
        n = 366
        z = rng.standard_normal((5, n))
        regime_vol = rng.uniform(0.006, 0.03, 4) * (1.6 if crypto else 1.0)
        regime_drift = rng.uniform(-0.0013, 0.0015, 4)
        d0 = date(year, 1, 1)
        for i in range(n):
            d = d0 + timedelta(days=i)
            if d.year != year or d < ORIGIN:
                continue
            if not is_session(d, crypto) or p.halted(d):
                continue
            q = (d.month - 1) // 3
            dates.append(d)
            rets.append(regime_drift[q] + regime_vol[q] * z[0, i])
            gaps.append(regime_vol[q] * 0.35 * z[1, i] * (3.0 if abs(z[4, i]) > 2.3 else 1.0))
            hix.append(abs(z[2, i]) * regime_vol[q] * 0.6)
            lox.append(abs(z[3, i]) * regime_vol[q] * 0.6)
            volm.append(0.35 * z[4, i])
    r = np.asarray(rets)
    close = p.price0 * np.exp(np.cumsum(r))
    prev = np.concatenate([[p.price0], close[:-1]])
    open_ = prev * np.exp(np.asarray(gaps))
    high = np.maximum(open_, close) * np.exp(np.asarray(hix))
    low = np.minimum(open_, close) * np.exp(-np.asarray(lox))
    volume = p.volume0 * np.exp(np.asarray(volm))
    darr = np.asarray(dates, dtype="datetime64[D]")
    if p.split_date is not None:
        volume = np.where(darr < np.datetime64(p.split_date), volume * p.split_ratio, volume)
    if not crypto:
        volume = np.round(volume)
    dividend = np.zeros(len(dates))
    if p.dividend_anchor is not None:
        age = (darr - np.datetime64(p.dividend_anchor)).astype(int)
        first_of_quarter = (age >= 0) & (np.diff(np.concatenate([[-1], age // 91])) != 0)
        dividend = np.where(first_of_quarter, np.round(prev * 0.005, 4), 0.0)
    # back-adjust closes for dividends (Yahoo's multiplicative method)
    factor = np.where(dividend > 0, 1.0 - dividend / prev, 1.0)
    adj = np.cumprod(factor[::-1])[::-1]
    adj = np.concatenate([adj[1:], [1.0]])
    return pl.DataFrame(
        {
            "date": darr.astype("datetime64[D]"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "adj_close": close * adj,
            "dividend": dividend,
        }
    ).with_columns(
        pl.col("date").cast(pl.Date),
        pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts"),
    )
