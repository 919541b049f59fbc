"""A seeded synthetic market for the demo, tests and benchmarks.

Deterministic: a bar's values depend only on the seed, the symbol and its timestamp, never on
the requested range, so overlapping fetches agree. Equities trade on a NYSE-like calendar
(weekends, the usual US holidays, 09:30-16:00 America/New_York); crypto trades 24/7 in UTC.
The daily path is built from per-year random blocks (so extending the horizon never changes
the past) with quarterly volatility/drift regimes and overnight gaps. Intraday bars refine the
day top-down through nested levels (4h > 1h > 30m > 15m > 1m): each bar is split into its
children by a Brownian bridge from its open to its close inside its high/low, one child
touching the high and one the low, its volume shared out on an intraday U-shape. So every
timeframe aggregates exactly to the coarser ones and to the daily bar (volume up to rounding),
and a coarse timeframe never pays for the fine levels. Each level's draws come from a
per-(symbol, year) block (per month for 1m), indexed by the session's day.
Some symbols split, some pay quarterly dividends, and some have a trading halt (a run of
sessions without bars). OHLC and volume follow Yahoo's convention: split-adjusted;
``adj_close`` also adjusts for dividends.

Everything is numpy over whole years of sessions, no per-bar Python: millions of bars per
second. The daily series are those of the per-day generator this replaced; intraday bars
come from the nested levels above (new in this version of the market).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from marketlake.pipeline.providers.base import (
    Capabilities,
    FetchRequest,
    Provider,
    empty_ohlcv,
    profile_row,
    rows_frame,
)

ORIGIN = date(2000, 1, 3)
NY = ZoneInfo("America/New_York")
#: intraday levels, coarse to fine: each bar nests in exactly one bar of the level above
LEVELS = (("4h", 240), ("1h", 60), ("30m", 30), ("15m", 15), ("1m", 1))
_LEVEL = {name: i for i, (name, _) in enumerate(LEVELS)}
_US_PER_MIN = 60_000_000
_SQRT12 = 12**0.5


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


@lru_cache(maxsize=64)
def _holiday_days(year: int) -> np.ndarray:
    return np.array(sorted(holidays(year)), dtype="datetime64[D]")


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


@lru_cache(maxsize=4096)
def _profile(seed: int, symbol: str, crypto: bool) -> _Profile:
    return _Profile(seed, symbol, crypto)


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
        path = self._path(symbol, crypto)
        n = int(np.searchsorted(path.day, np.datetime64(end, "D"), "right"))
        names = ("open", "high", "low", "close", "volume", "adj_close", "dividend")
        return pl.DataFrame(
            {
                "date": path.day[:n],
                **{c: path.values[i, :n] for i, c in enumerate(names)},
                "ts": pl.Series(path.day[:n].astype("datetime64[us]")).dt.replace_time_zone("UTC"),
            }
        )

    def _path(self, symbol: str, crypto: bool) -> _Path:
        # the horizon is the clock's year: adjusted closes are the same for every range asked
        return _daily_path(self.seed, symbol, crypto, self.clock().year)

    def _fetch_ohlcv(self, request: FetchRequest) -> pl.DataFrame:
        crypto = is_crypto(request.symbol, request.instrument)
        now = self.clock()
        end = min(request.end, now)
        if end <= request.start:
            return empty_ohlcv()
        path = self._path(request.symbol, crypto)
        start_us, end_us, now_us = _micros(request.start), _micros(end), _micros(now)
        if request.timeframe == "1D":
            lo, hi = np.searchsorted(path.midnight, [start_us, end_us], "left")
            o, h, low, c, v, adj = path.values[:6, lo:hi]
            final = path.opens[lo:hi] + path.length * _US_PER_MIN <= now_us
            return self._frame(request, path.midnight[lo:hi], o, h, low, c, v, adj, final)
        # sessions open before the range's end and closing after its start
        lo = int(np.searchsorted(path.opens, start_us - path.length * _US_PER_MIN, "right"))
        hi = int(np.searchsorted(path.opens, end_us, "left"))
        if hi <= lo:
            return empty_ohlcv()
        p = _profile(self.seed, request.symbol, crypto)
        o, h, low, c, v, start, dur = _refine(
            self.seed, p, path.day[lo:hi], path.values[:5, lo:hi], _LEVEL[request.timeframe]
        )
        ts = (path.opens[lo:hi, None] + start[None, :] * _US_PER_MIN).ravel()
        keep = (ts >= start_us) & (ts < end_us)
        ts = ts[keep]
        final = ts + np.tile(dur, hi - lo)[keep] * _US_PER_MIN <= now_us
        v = v.ravel()[keep]
        c = c.ravel()[keep]
        return self._frame(
            request,
            ts,
            o.ravel()[keep],
            h.ravel()[keep],
            low.ravel()[keep],
            c,
            v if crypto else np.round(v),
            c,
            final,
        )

    def _frame(self, req: FetchRequest, ts: np.ndarray, *values: np.ndarray) -> pl.DataFrame:
        """An ohlcv frame in the lake's column order and types (ts in microseconds, UTC)."""
        o, h, lo, c, v, adj, final = values
        n = len(ts)

        def text(name: str, value: str) -> pl.Series:
            return pl.Series(name, [value], pl.String).new_from_index(0, n)

        return pl.DataFrame(
            [
                text("symbol", req.symbol),
                text("timeframe", req.timeframe),
                pl.Series("ts", ts, pl.Int64).cast(pl.Datetime("us", "UTC")),
                pl.Series("open", o, pl.Float64),
                pl.Series("high", h, pl.Float64),
                pl.Series("low", lo, pl.Float64),
                pl.Series("close", c, pl.Float64),
                pl.Series("volume", v, pl.Float64),
                pl.Series("adj_close", adj, pl.Float64),
                text("provider", self.name),
                pl.Series("is_final", final, pl.Boolean),
            ]
        )

    # --- other kinds ----------------------------------------------------------------------
    def _fetch_actions(self, request: FetchRequest) -> pl.DataFrame:
        symbol, instrument, start, end = (
            request.symbol,
            request.instrument,
            request.start,
            request.end,
        )
        crypto = is_crypto(symbol, instrument)
        p = _profile(self.seed, symbol, crypto)
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
        p = _profile(self.seed, symbol, is_crypto(symbol, instrument))
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


def _micros(t: datetime) -> int:
    """``t`` as microseconds since the epoch (UTC)."""
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def _session_opens(days: np.ndarray, crypto: bool) -> np.ndarray:
    """Each session's opening instant (microseconds since the epoch, UTC): midnight UTC for
    crypto, 09:30 New York (daylight saving time included) for equities."""
    midnight = days.astype("datetime64[us]").astype(np.int64)
    if crypto or not len(days):
        return midnight
    years = days.astype("datetime64[Y]")
    offset = np.empty(len(days), dtype=np.int64)
    bounds = np.flatnonzero(np.diff(years.astype(np.int64))) + 1
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(days)], strict=True):
        year = int(years[a].astype(np.int64)) + 1970
        doy = (days[a:b] - years[a].astype("datetime64[D]")).astype(np.int64)
        offset[a:b] = _ny_open_offsets(year)[doy]
    return midnight + offset


@lru_cache(maxsize=128)
def _ny_open_offsets(year: int) -> np.ndarray:
    """For each day of ``year``: microseconds from midnight UTC to 09:30 in New York."""
    first = datetime(year, 1, 1, 9, 30)
    return np.array(
        [
            int(
                (first + timedelta(days=i)).replace(tzinfo=NY).utcoffset().total_seconds()
                * -1_000_000
            )
            + (9 * 60 + 30) * _US_PER_MIN
            for i in range(366)
        ],
        dtype=np.int64,
    )


class _Path(NamedTuple):
    """A symbol's daily sessions: ``day`` (datetime64[D]), their ``midnight`` and ``opens``
    (microseconds, UTC), ``length`` in minutes, and ``values`` (open, high, low, close, volume,
    adj_close, dividend) as rows."""

    day: np.ndarray
    midnight: np.ndarray
    opens: np.ndarray
    length: int
    values: np.ndarray


@lru_cache(maxsize=32)
def _layout(crypto: bool, level: int) -> dict[str, np.ndarray]:
    """The static shape of one session at ``level``: every parent bar (a row) has ``r``
    child slots (columns), the last parent of an equity session fewer valid ones (its
    padding has duration 0). Parents are the previous level's bars, or the day itself."""
    n = 1440 if crypto else 390
    step = LEVELS[level][1]
    prev = LEVELS[level - 1][1] if level else n
    parents = -(-n // prev)
    r = -(-prev // step)
    start = np.arange(parents)[:, None] * prev + np.arange(r)[None, :] * step
    dur = np.clip(np.minimum(step, n - start), 0, None).astype(np.float64)
    valid = dur > 0
    frac = dur / dur.sum(axis=1, keepdims=True)
    cumfrac = np.cumsum(frac, axis=1)
    last = valid.sum(axis=1, keepdims=True) - 1
    mid = (start + dur / 2) / n
    return {
        "start": start[valid],
        "dur": dur[valid].astype(np.int64),
        "valid": valid,
        "flat": valid.ravel(),
        "sqrt_frac": np.sqrt(frac),
        "cumfrac": cumfrac,
        "tail": np.arange(r)[None, :] >= last,
        "weight": frac * (1.0 + 1.5 * (2.0 * mid - 1.0) ** 2),
    }


def _draws(seed: int, p: _Profile, level: int, days: np.ndarray, width: int) -> np.ndarray:
    """(4, sessions, width) uniform draws of ``level`` for the sessions on ``days`` (sorted),
    from one block per year (per month for 1m) with a row per session of the calendar (per
    day of the month for 1m), so a session's draws never depend on the range requested."""
    monthly = LEVELS[level][0] == "1m"
    block = days.astype("datetime64[M]" if monthly else "datetime64[Y]")
    keys = block.astype(np.int64)
    out = np.empty((4, len(days), width))
    bounds = np.flatnonzero(np.diff(keys)) + 1
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(days)], strict=True):
        if monthly:
            rows = 31
            row = (days[a:b] - block[a].astype("datetime64[D]")).astype(np.int64)
        else:
            calendar = _calendar(int(keys[a]) + 1970, p.crypto)[0]
            rows = len(calendar)
            row = np.searchsorted(calendar, days[a:b])
        rng = np.random.default_rng([seed, p.h % (2**32), int(keys[a]), 100 + level])
        out[:, a:b] = rng.random((4, rows, width))[:, row]
    return out


def _split(parent: tuple[np.ndarray, ...], lay: dict, draws: np.ndarray) -> tuple:
    """One level down: each parent bar (sessions x parents) into its children."""
    o, h, lo, c, v = (x[..., None] for x in parent)
    sessions, parents = parent[0].shape
    z, wh, wl, u = draws.reshape(4, sessions, parents, -1)
    span = h - lo
    # uniform increments of unit variance: a random walk, pinned at both ends (a bridge)
    walk = np.cumsum((z - 0.5) * lay["sqrt_frac"], axis=2) * _SQRT12
    bridge = walk - lay["cumfrac"] * walk[..., -1:]
    close = np.clip(o + (c - o) * lay["cumfrac"] + bridge * span * 0.6, lo, h)
    close = np.where(lay["tail"], c, close)
    open_ = np.concatenate([o, close[..., :-1]], axis=2)
    wick = span * 0.3 * lay["sqrt_frac"]
    hi_c = np.maximum(open_, close) + wh * wick
    lo_c = np.minimum(open_, close) - wl * wick
    high = np.minimum(hi_c, h)
    low = np.maximum(lo_c, lo)
    # the parent's extremes are reached inside the child that comes closest to them
    jh = np.argmax(np.where(lay["valid"], hi_c, -np.inf), axis=2)[..., None]
    jl = np.argmin(np.where(lay["valid"], lo_c, np.inf), axis=2)[..., None]
    np.put_along_axis(high, jh, h, axis=2)
    np.put_along_axis(low, jl, lo, axis=2)
    w = lay["weight"] * (0.5 + u)
    vol = v * w / w.sum(axis=2, keepdims=True)
    flat = lay["flat"]
    return tuple(x.reshape(sessions, -1)[:, flat] for x in (open_, high, low, close, vol))


def _refine(seed: int, p: _Profile, days: np.ndarray, daily: np.ndarray, level: int) -> tuple:
    """Bars of ``level`` for the sessions on ``days`` (rows of ``daily``: open, high, low,
    close, volume), as (sessions x bars) arrays, plus each bar's start and duration in
    minutes from the session open."""
    bars = tuple(x[:, None] for x in daily)
    days = days.astype("datetime64[D]")
    lay = _layout(p.crypto, 0)
    for lvl in range(level + 1):
        lay = _layout(p.crypto, lvl)
        draws = _draws(seed, p, lvl, days, lay["valid"].size)
        bars = _split(bars, lay, draws)
    return (*bars, lay["start"], lay["dur"])


@lru_cache(maxsize=128)
def _calendar(year: int, crypto: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sessions of ``year`` from the origin on: their days, their index into the
    year's 366 draws, and their quarter (0-3)."""
    days = np.datetime64(date(year, 1, 1), "D") + np.arange(366)
    keep = (days < np.datetime64(date(year + 1, 1, 1), "D")) & (days >= np.datetime64(ORIGIN))
    if not crypto:
        weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        keep &= (weekday < 5) & ~np.isin(days, _holiday_days(year))
    idx = np.flatnonzero(keep)
    quarter = (days[idx].astype("datetime64[M]").astype(np.int64) % 12) // 3
    return days[idx], idx, quarter


def _year_sessions(seed: int, p: _Profile, year: int) -> tuple[np.ndarray, ...]:
    """The sessions of ``year`` and their daily draws (returns, gaps, wicks, volume)."""
    rng = np.random.default_rng([seed, p.h % (2**32), year])
    z = rng.standard_normal((5, 366))
    regime_vol = rng.uniform(0.006, 0.03, 4) * (1.6 if p.crypto else 1.0)
    regime_drift = rng.uniform(-0.0013, 0.0015, 4)
    days, idx, q = _calendar(year, p.crypto)
    if p.halt_start is not None and p.halt_start.year <= year <= p.halt_start.year + 1:
        age = (days - np.datetime64(p.halt_start, "D")).astype(np.int64)
        open_ = ~((age >= 0) & (age < p.halt_days))
        days, idx, q = days[open_], idx[open_], q[open_]
    vol, drift = regime_vol[q], regime_drift[q]
    z = z[:, idx]
    rets = drift + vol * z[0]
    gaps = vol * 0.35 * z[1] * np.where(np.abs(z[4]) > 2.3, 3.0, 1.0)
    hix = np.abs(z[2]) * vol * 0.6
    lox = np.abs(z[3]) * vol * 0.6
    return days, rets, gaps, hix, lox, 0.35 * z[4]


@lru_cache(maxsize=512)
def _daily_path(seed: int, symbol: str, crypto: bool, last_year: int) -> _Path:
    """Every session from the origin through ``last_year``: a per-year block of draws each,
    so the past never depends on the horizon."""
    p = _profile(seed, symbol, crypto)
    years = [_year_sessions(seed, p, y) for y in range(ORIGIN.year, last_year + 1)]
    darr, r, gaps, hix, lox, volm = (np.concatenate(x) for x in zip(*years, strict=True))
    close = p.price0 * np.exp(np.cumsum(r))
    prev = np.concatenate([[p.price0], close[:-1]])
    open_ = prev * np.exp(gaps)
    high = np.maximum(open_, close) * np.exp(hix)
    low = np.minimum(open_, close) * np.exp(-lox)
    volume = p.volume0 * np.exp(volm)
    if p.split_date is not None:
        volume = np.where(darr < np.datetime64(p.split_date), volume * p.split_ratio, volume)
    if not crypto:
        volume = np.round(volume)
    dividend = np.zeros(len(darr))
    if p.dividend_anchor is not None:
        age = (darr - np.datetime64(p.dividend_anchor)).astype(int)
        first_of_quarter = (age >= 0) & (np.diff(np.concatenate([[-1], age // 91])) != 0)
        dividend = np.where(first_of_quarter, np.round(prev * 0.005, 4), 0.0)
    # back-adjust closes for dividends (Yahoo's multiplicative method)
    factor = np.where(dividend > 0, 1.0 - dividend / prev, 1.0)
    adj = np.cumprod(factor[::-1])[::-1]
    adj = np.concatenate([adj[1:], [1.0]])
    values = np.stack([open_, high, low, close, volume, close * adj, dividend])
    values.setflags(write=False)
    return _Path(
        darr,
        darr.astype("datetime64[us]").astype(np.int64),
        _session_opens(darr, crypto),
        1440 if crypto else 390,
        values,
    )
