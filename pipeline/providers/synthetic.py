"""A seeded synthetic market for the demo, tests and benchmarks.

Deterministic: a bar's values depend only on the seed, the symbol and its timestamp, never on
the requested range, so overlapping fetches agree. Sessions come from the exchange calendar
the instrument trades on (:mod:`.synthetic_sessions`, the ``exchange-calendars`` library that
planning and ``status`` use): NYSE/NASDAQ, NSE/BSE, IDX with their holidays, special closures
and early closes, 24/5 FX and 24/7 crypto.

The daily path is random-access by year: each symbol's log price at the start of every year
is fixed by one draw of annual returns, and a year's daily log prices are a random walk with
quarterly volatility/drift regimes bridged between its two anchors (one block of draws per
symbol and year). Returns accrue on every weekday and session; a day the exchange is closed
(a holiday, a special closure, a trading halt) has no bar, and its move shows in the next
session's opening gap. So fetching the last days of a series costs one year of draws, not the
whole history. Intraday bars refine each session top-down through nested levels (4h > 1h > 30m
> 15m > 1m): each bar is split into its children by a Brownian bridge from its open to its
close inside its high/low, one child touching the high and one the low, its volume shared out
on an intraday U-shape. So every timeframe aggregates exactly to the coarser ones and to the
daily bar (volume up to rounding). Each level's draws come from a per-(symbol, year) block
(per month for 1m), indexed by the day of the year.
Some symbols split, some pay quarterly dividends (on the first session on or after each
91-day anniversary), and some have a trading halt (a run of days without bars). OHLC and
volume follow Yahoo's convention: split-adjusted; ``adj_close`` also adjusts for dividends.

Everything is numpy over whole years of sessions, no per-bar Python: a path's years are
computed together, and each intraday level splits all of a request's sessions in one pass.
This version of the market (calendars from exchange-calendars, year anchors) replaced one with
hand-written NYSE holidays and a path cumulated from 2000: the same seed gives different
series.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from marketlake.pipeline import freshness
from marketlake.pipeline.providers import synthetic_sessions
from marketlake.pipeline.providers.base import (
    Capabilities,
    FetchRequest,
    Provider,
    empty_ohlcv,
    profile_row,
    rows_frame,
)
from marketlake.pipeline.providers.synthetic_sessions import ORIGIN, sessions

#: intraday levels, coarse to fine: each bar nests in exactly one bar of the level above
LEVELS = (("4h", 240), ("1h", 60), ("30m", 30), ("15m", 15), ("1m", 1))
_LEVEL = {name: i for i, (name, _) in enumerate(LEVELS)}
_US_PER_MIN = 60_000_000
_US_PER_DAY = 1440 * _US_PER_MIN
_SQRT12 = 12**0.5
_ANCHOR_YEARS = 400


def _h(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def is_crypto(symbol: str, instrument: Mapping[str, Any] | None = None) -> bool:
    if instrument and instrument.get("asset_type"):
        return instrument["asset_type"] == "crypto"
    return "/" in symbol or symbol.endswith("-USD")


def calendar_of(symbol: str, instrument: Mapping[str, Any] | None = None) -> str:
    """The exchange calendar ``symbol`` trades on (as planning and ``status`` see it)."""
    inst = instrument or {}
    asset = "crypto" if is_crypto(symbol, inst) else inst.get("asset_type")
    return freshness.calendar_for(inst.get("exchange"), asset, inst.get("timezone"))


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
        # log price at the start of each year from the origin's (annual returns, one draw)
        annual = np.random.default_rng([seed, h % (2**32), 11]).standard_normal(_ANCHOR_YEARS)
        scale = 0.45 if crypto else 0.22
        self.anchors = np.log(self.price0) + np.concatenate(
            [[0.0], np.cumsum(0.04 + scale * annual)]
        )

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
            "1h": timedelta(days=3660),  # ten years of hourly bars per request
            "4h": timedelta(days=3660),
            "1D": None,
        },
        default_concurrency=2,
        asset_types=frozenset({"equity", "etf", "index", "crypto", "fx", "future"}),
        local=True,
        batched=True,
    )

    def __init__(self, settings=None, **kw) -> None:
        super().__init__(settings, **kw)
        self.seed = int(self.settings.options.get("seed", 42))

    # --- daily path -----------------------------------------------------------------------
    def _path(self, request: FetchRequest, first: date) -> _Path:
        """The daily path from the year of ``first`` through the clock's year (the horizon
        of adjusted closes: they are the same for every range asked)."""
        crypto = is_crypto(request.symbol, request.instrument)
        cal = calendar_of(request.symbol, request.instrument)
        first_year = min(max(first.year, ORIGIN.year), self.clock().year)
        return _daily_path(self.seed, request.symbol, crypto, cal, first_year, self.clock().year)

    def fetch_many(self, requests: Sequence[FetchRequest]) -> list[pl.DataFrame]:
        """Daily bars of many symbols built as one frame and answered as its slices, in
        order: the rows :meth:`fetch` gives each request, without a frame built per symbol
        (a nightly run asks one new day of thousands). Other requests: one by one."""
        if any(r.kind != "ohlcv" or r.timeframe != "1D" for r in requests) or not requests:
            return super().fetch_many(requests)
        now = self.clock()
        parts = [self._daily(r, now) for r in requests]
        lengths = np.array([len(p[0]) for p in parts], dtype=np.int64)
        cols = [np.concatenate([p[i] for p in parts]) for i in range(8)]
        symbols = pl.Series("symbol", [r.symbol for r in requests], pl.String)
        whole = self._frame(
            symbols.gather(np.repeat(np.arange(len(requests)), lengths)), "1D", *cols
        )
        starts = np.cumsum(lengths) - lengths
        return [whole.slice(int(a), int(n)) for a, n in zip(starts, lengths, strict=True)]

    def _daily(self, request: FetchRequest, now: datetime) -> tuple[np.ndarray, ...]:
        """The daily bars of ``request`` as arrays: ts, open, high, low, close, volume,
        adj_close and is_final."""
        end = min(request.end, now)
        if end <= request.start:
            return (np.empty(0, np.int64), *[np.empty(0)] * 6, np.empty(0, bool))
        path = self._path(request, (request.start - timedelta(days=1)).date())
        lo, hi = np.searchsorted(path.midnight, [_micros(request.start), _micros(end)], "left")
        final = path.opens[lo:hi] + path.minutes[lo:hi] * _US_PER_MIN <= _micros(now)
        return (path.midnight[lo:hi], *path.values[:6, lo:hi], final)

    def _fetch_ohlcv(self, request: FetchRequest) -> pl.DataFrame:
        crypto = is_crypto(request.symbol, request.instrument)
        now = self.clock()
        end = min(request.end, now)
        if end <= request.start:
            return empty_ohlcv()
        if request.timeframe == "1D":
            ts, *values = self._daily(request, now)
            return self._frame(request.symbol, request.timeframe, ts, *values)
        path = self._path(request, (request.start - timedelta(days=1)).date())
        start_us, end_us, now_us = _micros(request.start), _micros(end), _micros(now)
        closes = path.opens + path.minutes * _US_PER_MIN
        # sessions open before the range's end and closing after its start
        lo = int(np.searchsorted(closes, start_us, "right"))
        hi = int(np.searchsorted(path.opens, end_us, "left"))
        if hi <= lo:
            return empty_ohlcv()
        p = _profile(self.seed, request.symbol, crypto)
        o, h, low, c, v, ts, ends = _refine(
            self.seed,
            p,
            path.day[lo:hi],
            path.values[:5, lo:hi],
            path.opens[lo:hi],
            path.minutes[lo:hi],
            _LEVEL[request.timeframe],
            int(path.widest),
        )
        keep = (ts >= start_us) & (ts < end_us)
        if not keep.all():
            o, h, low, c, v, ts, ends = (x[keep] for x in (o, h, low, c, v, ts, ends))
        return self._frame(
            request.symbol,
            request.timeframe,
            ts,
            o,
            h,
            low,
            c,
            v if crypto else np.round(v),
            c,
            ends <= now_us,
        )

    def _frame(
        self, symbol: str | pl.Series, timeframe: str, ts: np.ndarray, *values: np.ndarray
    ) -> pl.DataFrame:
        """An ohlcv frame in the lake's column order and types (ts in microseconds, UTC),
        every column included (``symbol``: one, or a series of one per row): built from
        arrays, with no polars query (fetch threads must not queue behind a commit's work on
        polars' thread pool)."""
        o, h, lo, c, v, adj, final = values
        n = len(ts)

        def text(name: str, value: str) -> pl.Series:
            return pl.Series(name, [value], pl.String).new_from_index(0, n)

        return pl.DataFrame(
            [
                symbol if isinstance(symbol, pl.Series) else text("symbol", symbol),
                text("timeframe", timeframe),
                pl.Series("ts", ts, pl.Int64).cast(pl.Datetime("us", "UTC")),
                pl.Series("open", o, pl.Float64),
                pl.Series("high", h, pl.Float64),
                pl.Series("low", lo, pl.Float64),
                pl.Series("close", c, pl.Float64),
                pl.Series("volume", v, pl.Float64),
                pl.Series("adj_close", adj, pl.Float64),
                text("provider", self.name),
                pl.Series("is_final", final, pl.Boolean),
                pl.Series("open_interest", [None], pl.Float64).new_from_index(0, n),
            ]
        )

    # --- other kinds ----------------------------------------------------------------------
    def _fetch_actions(self, request: FetchRequest) -> pl.DataFrame:
        symbol, start, end = request.symbol, request.start, min(request.end, self.clock())
        p = _profile(self.seed, symbol, is_crypto(symbol, request.instrument))
        rows = []
        if p.split_date and start.date() <= p.split_date < request.end.date():
            rows.append(
                {
                    "symbol": symbol,
                    "ex_date": p.split_date,
                    "kind": "split",
                    "ratio": p.split_ratio,
                    "amount": None,
                }
            )
        if end > start:
            path = self._path(request, start.date())
            days = path.day
            paid = (
                (path.values[6] > 0)
                & (days >= np.datetime64(start.date()))
                & (days < np.datetime64(end.date()))
            )
            for d, amount in zip(days[paid].tolist(), path.values[6][paid].tolist(), strict=True):
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


class _Path(NamedTuple):
    """A symbol's daily sessions from the start of a year on: ``day`` (datetime64[D]), their
    ``midnight`` and ``opens`` (microseconds, UTC), ``minutes`` (session lengths), the
    calendar's ``widest`` session, and ``values`` (open, high, low, close, volume, adj_close,
    dividend) as rows."""

    day: np.ndarray
    midnight: np.ndarray
    opens: np.ndarray
    minutes: np.ndarray
    widest: int
    values: np.ndarray
    first_year: int


def _shape(level: int, longest: int) -> tuple[int, int, int, int]:
    """(parents, children per parent, minutes of a parent, of a child) of ``level`` for
    sessions up to ``longest`` minutes: the parents are the previous level's bars (at the
    first level, the day itself)."""
    step = LEVELS[level][1]
    if level == 0:
        return 1, -(-longest // step), longest, step
    prev = LEVELS[level - 1][1]
    return -(-longest // prev), -(-prev // step), prev, step


@lru_cache(maxsize=256)
def _layout(minutes: int, level: int, longest: int) -> dict[str, np.ndarray]:
    """The static shape of one session of ``minutes`` at ``level``, padded to the shape of a
    session of ``longest`` minutes: every parent bar (a row) has child slots (columns);
    slots past the session's end have duration 0 and are dropped in the end. A session's
    valid slots are a prefix of the flattened rows (children are whole divisions of their
    parent), so one (sessions x slots) block holds sessions of every length."""
    parents, r, prev, step = _shape(level, longest)
    start = np.arange(parents)[:, None] * prev + np.arange(r)[None, :] * step
    dur = np.clip(np.minimum(step, minutes - start), 0, None).astype(np.float64)
    valid = dur > 0
    total = dur.sum(axis=1, keepdims=True)
    frac = np.divide(dur, total, out=np.zeros_like(dur), where=total > 0)
    cumfrac = np.cumsum(frac, axis=1)
    last = valid.sum(axis=1, keepdims=True) - 1
    mid = (start + dur / 2) / minutes
    out = {
        "invalid": ~valid,
        "sqrt_frac": np.sqrt(frac),
        "cumfrac": cumfrac,
        "tail": np.arange(r)[None, :] >= last,
        "weight": frac * (1.0 + 1.5 * (2.0 * mid - 1.0) ** 2),
    }
    for x in out.values():
        x.setflags(write=False)
    return out


class _Blocks(NamedTuple):
    """Where each session's draws are: the ``keys`` of the blocks (one per year, or month
    for 1m) the sessions fall in, and each session's row in the stack of those blocks
    (block number x rows per block + day of the year, or of the month)."""

    keys: list[int]
    rows: int
    at: np.ndarray


def _blocks(days: np.ndarray, monthly: bool) -> _Blocks:
    block = days.astype("datetime64[M]" if monthly else "datetime64[Y]")
    keys = block.astype(np.int64)
    rows = 31 if monthly else 366
    which = np.zeros(len(days), dtype=np.int64)
    np.cumsum(keys[1:] != keys[:-1], out=which[1:])
    at = which * rows + (days - block.astype("datetime64[D]")).astype(np.int64)
    return _Blocks(np.unique(keys).tolist(), rows, at)


def _draws(
    seed: int, p: _Profile, level: int, blocks: _Blocks, width: int, widest: int
) -> np.ndarray:
    """(4, sessions, width) uniform draws of ``level`` for the sessions of ``blocks``, from
    one block per year (per month for 1m) with a row per day of the year (of the month for
    1m) and a column per slot of the calendar's widest session, so a session's draws never
    depend on the range requested."""
    stack = np.empty((4, len(blocks.keys), blocks.rows, widest), dtype=np.float32)
    for i, key in enumerate(blocks.keys):
        rng = np.random.default_rng([seed, p.h % (2**32), key, 100 + level])
        stack[:, i] = rng.random((4, blocks.rows, widest), dtype=np.float32)
    out = np.take(stack.reshape(4, -1, widest), blocks.at, axis=1)
    return out if width == widest else out[..., :width]


def _split(parent: tuple[np.ndarray, ...], lay: dict, draws: np.ndarray) -> tuple:
    """One level down: each parent bar (sessions x parents) into its children (sessions x
    parents * children; padding slots hold values that are never used)."""
    o, h, lo, c, v = (x[..., None] for x in parent)
    sessions, parents = parent[0].shape
    z, wh, wl, u = draws.reshape(4, sessions, parents, -1)
    r = z.shape[2]
    sqrt_frac, cumfrac = lay["sqrt_frac"], lay["cumfrac"]
    span = h - lo
    # uniform increments of unit variance: a random walk, pinned at both ends (a bridge)
    walk = (z - 0.5) * sqrt_frac
    np.cumsum(walk, axis=2, out=walk)
    walk *= _SQRT12
    bridge = cumfrac * walk[..., -1:]
    np.subtract(walk, bridge, out=bridge)
    bridge *= span
    bridge *= 0.6
    close = (c - o) * cumfrac
    close += o
    close += bridge
    np.clip(close, lo, h, out=close)
    np.copyto(close, c, where=lay["tail"])
    open_ = np.concatenate([o, close[..., :-1]], axis=2)
    # the walk's and the bridge's buffers reused (fresh arrays cost more than their math)
    wick = np.multiply(span * 0.3, sqrt_frac, out=walk)
    hi_c = np.maximum(open_, close)
    hi_c += np.multiply(wh, wick, out=bridge)
    lo_c = np.minimum(open_, close)
    lo_c -= np.multiply(wl, wick, out=bridge)
    high = np.minimum(hi_c, h)
    low = np.maximum(lo_c, lo)
    # the parent's extremes are reached inside the child that comes closest to them
    np.copyto(hi_c, -np.inf, where=lay["invalid"])
    np.copyto(lo_c, np.inf, where=lay["invalid"])
    first = np.arange(sessions * parents) * r
    high.reshape(-1)[first + np.argmax(hi_c, axis=2).ravel()] = h.ravel()
    low.reshape(-1)[first + np.argmin(lo_c, axis=2).ravel()] = lo.ravel()
    vol = lay["weight"] * (0.5 + u)
    total = vol.sum(axis=2, keepdims=True)
    np.multiply(v, vol, out=vol)
    vol /= np.where(total > 0, total, 1.0)  # a padding parent has no weight
    return tuple(x.reshape(sessions, -1) for x in (open_, high, low, close, vol))


def _refine(
    seed: int,
    p: _Profile,
    days: np.ndarray,
    daily: np.ndarray,
    opens: np.ndarray,
    minutes: np.ndarray,
    level: int,
    widest: int,
) -> tuple:
    """Bars of ``level`` for the sessions on ``days`` (rows of ``daily``: open, high, low,
    close, volume; ``opens`` in microseconds, ``minutes`` long) in time order: open, high,
    low, close, volume, start and end (microseconds). Every level splits all sessions in
    one pass, padded to the longest, with the layout of the most common length; sessions of
    other lengths (early closes) are split again with their own and written over."""
    longest = int(minutes.max())
    counts = np.bincount(minutes)
    common = int(np.argmax(counts))
    others = [(int(n), np.flatnonzero(minutes == n)) for n in np.flatnonzero(counts) if n != common]
    bars = tuple(x[:, None] for x in daily)
    days = days.astype("datetime64[D]")
    yearly = _blocks(days, monthly=False)
    for lvl in range(level + 1):
        parents, r, _, step = _shape(lvl, longest)
        most, each = _shape(lvl, widest)[:2]
        blocks = yearly if LEVELS[lvl][0] != "1m" else _blocks(days, monthly=True)
        draws = _draws(seed, p, lvl, blocks, parents * r, most * each)
        lay = _layout(common, lvl, longest)
        out = _split(bars, {k: x[None] for k, x in lay.items()}, draws)
        for n, sel in others:
            lay = _layout(n, lvl, longest)
            part = _split(tuple(x[sel] for x in bars), lay, draws[:, sel])
            for whole, some in zip(out, part, strict=True):
                whole[sel] = some
        width = -(-longest // step)  # slots some session fills (a prefix for every session)
        bars = tuple(x[:, :width] for x in out)
    start = np.arange(width) * step
    dur = np.minimum(step, minutes[:, None] - start[None, :])
    keep = dur > 0
    ts = (opens[:, None] + start[None, :] * _US_PER_MIN)[keep]
    ends = ts + dur[keep] * _US_PER_MIN
    return (*(x[keep] for x in bars), ts, ends)


class _Days(NamedTuple):
    """The days of a year on which a calendar's prices move (every weekday and session):
    their ``doy`` (day of the year), ``quarter`` and ``traded`` flag, and ``pos``, the
    calendar index of each traded one."""

    doy: np.ndarray
    quarter: np.ndarray
    traded: np.ndarray
    pos: np.ndarray


@lru_cache(maxsize=1024)
def _days(calendar: str, last_year: int, year: int, halt: tuple[date, int] | None) -> _Days:
    """:class:`_Days` of ``year`` (shared by every symbol of the calendar; a halt, the days
    it covers, are neither traded nor moving)."""
    cal = sessions(calendar, last_year)
    origin = np.datetime64(ORIGIN, "D")
    first = max(np.datetime64(f"{year}-01-01"), origin)
    a = int((first - origin).astype(np.int64))
    b = int((np.datetime64(f"{year + 1}-01-01") - origin).astype(np.int64))
    days = first + np.arange(b - a)
    traded = cal.traded[a:b].copy()
    latent = traded | (((days.astype(np.int64) + 3) % 7) < 5)  # 1970-01-01: a Thursday
    if halt is not None:
        age = (days - np.datetime64(halt[0], "D")).astype(np.int64)
        halted = (age >= 0) & (age < halt[1])
        latent &= ~halted
        traded &= ~halted
    idx = np.flatnonzero(latent)
    doy = (days[idx] - np.datetime64(f"{year}-01-01")).astype(np.int64)
    quarter = (days[idx].astype("datetime64[M]").astype(np.int64) % 12) // 3
    on = traded[idx]
    return _Days(doy, quarter, on, np.searchsorted(cal.day, days[idx][on]))


def _years(seed: int, p: _Profile, calendar: str, first_year: int, last_year: int) -> tuple:
    """The sessions of ``first_year`` through ``last_year`` (indices into the calendar) with
    their log close, the log price before them (the previous day's), and their gap, wick and
    volume draws. Each year is a random walk of its own draws (one block per year) over the
    days prices move, bridged between the year's anchor and the next; all years computed in
    one pass (a year's walk is a cumulative sum along its row of a years x 366 grid)."""
    years = range(first_year, last_year + 1)
    halt = p.halt_start
    ds = [
        _days(
            calendar,
            last_year,
            y,
            (halt, p.halt_days) if halt is not None and halt.year <= y <= halt.year + 1 else None,
        )
        for y in years
    ]
    z = np.empty((len(years), 5, 366))
    regime_vol = np.empty((len(years), 4))
    regime_drift = np.empty((len(years), 4))
    for i, y in enumerate(years):
        rng = np.random.default_rng([seed, p.h % (2**32), y])
        z[i] = rng.standard_normal((5, 366))
        regime_vol[i] = rng.uniform(0.006, 0.03, 4)
        regime_drift[i] = rng.uniform(-0.0013, 0.0015, 4)
    regime_vol *= 1.6 if p.crypto else 1.0
    n = np.array([len(d.doy) for d in ds])
    ends = np.cumsum(n)
    row = np.repeat(np.arange(len(years)), n)
    doy, quarter, on = (np.concatenate(x) for x in zip(*(d[:3] for d in ds), strict=True))
    vol = regime_vol[row, quarter]
    grid = np.zeros((len(years), 366))
    grid[row, doy] = regime_drift[row, quarter] + vol * z[row, 0, doy]
    walk = np.cumsum(grid, axis=1)[row, doy]
    # bridged between each year's anchor and the next: its last moving day ends on it
    y = np.asarray(years) - ORIGIN.year
    a0, a1 = p.anchors[y], p.anchors[y + 1]
    slope = (walk[ends - 1] - (a1 - a0)) / n
    k = np.arange(1, len(walk) + 1) - np.repeat(ends - n, n)
    lp = walk - k * slope[row] + a0[row]
    before = np.empty_like(lp)
    before[1:] = lp[:-1]
    before[ends - n] = a0
    pos = np.concatenate([d.pos for d in ds])
    v = vol[on]
    zs = z[row[on], 1:, doy[on]].T
    gaps = v * 0.35 * zs[0] * np.where(np.abs(zs[3]) > 2.3, 3.0, 1.0)
    wick = np.abs(zs[1:3]) * (v * 0.6)
    return pos, lp[on], before[on], gaps, wick[0], wick[1], 0.35 * zs[3]


_PATHS: OrderedDict[tuple, _Path] = OrderedDict()
_PATHS_LOCK = threading.Lock()


def _daily_path(
    seed: int, symbol: str, crypto: bool, calendar: str, first_year: int, last_year: int
) -> _Path:
    """The path from ``first_year`` (or earlier: a path already built from an earlier year
    is reused, its values are the same) through ``last_year``; the 512 latest kept."""
    key = (seed, symbol, crypto, calendar, last_year)
    with _PATHS_LOCK:
        path = _PATHS.get(key)
        if path is not None and path.first_year <= first_year:
            _PATHS.move_to_end(key)
            return path
    path = _build_path(seed, symbol, crypto, calendar, first_year, last_year)
    with _PATHS_LOCK:
        _PATHS[key] = path
        _PATHS.move_to_end(key)
        while len(_PATHS) > 512:
            _PATHS.popitem(last=False)
    return path


def _build_path(
    seed: int, symbol: str, crypto: bool, calendar: str, first_year: int, last_year: int
) -> _Path:
    """The sessions of ``calendar`` from ``first_year`` through ``last_year``: a block of
    draws per year, each bridged between fixed anchors, so no year depends on another."""
    p = _profile(seed, symbol, crypto)
    cal = sessions(calendar, last_year)
    pos, lclose, lbefore, gaps, hix, lox, volm = _years(seed, p, calendar, first_year, last_year)
    darr = cal.day[pos]
    close = np.exp(lclose)
    before = np.exp(lbefore)
    open_ = before * np.exp(gaps)
    high = np.maximum(open_, close) * np.exp(hix)
    low = np.minimum(open_, close) * np.exp(-lox)
    volume = p.volume0 * np.exp(volm)
    if p.split_date is not None:
        volume = np.where(darr < np.datetime64(p.split_date), volume * p.split_ratio, volume)
    if not crypto:
        volume = np.round(volume)
    dividend = np.zeros(len(darr))
    if p.dividend_anchor is not None and len(darr):
        # the first session on or after each 91-day anniversary of the anchor; the session
        # before the first one comes from the calendar (no values needed)
        anchor = np.datetime64(p.dividend_anchor, "D")
        prior = int(pos[0]) - 1
        while prior >= 0 and p.halted(cal.day[prior].astype(date)):
            prior -= 1
        prev_day = cal.day[prior] if prior >= 0 else np.datetime64(ORIGIN, "D") - 1
        days = np.concatenate([[prev_day], darr])
        age = (days - anchor).astype(np.int64)
        n = np.where(age >= 0, age // 91, -1)
        paid = np.diff(n) != 0
        dividend = np.where(paid, np.round(before * 0.005, 4), 0.0)
    # back-adjust closes for dividends (Yahoo's multiplicative method)
    factor = np.where(dividend > 0, 1.0 - dividend / before, 1.0)
    adj = np.cumprod(factor[::-1])[::-1]
    adj = np.concatenate([adj[1:], [1.0]])
    values = np.stack([open_, high, low, close, volume, close * adj, dividend])
    values.setflags(write=False)
    return _Path(
        darr,
        darr.astype("datetime64[us]").astype(np.int64),
        cal.opens[pos],
        cal.minutes[pos],
        int(cal.minutes.max()),
        values,
        first_year,
    )


def clear_caches() -> None:
    """Forget every built path and calendar (benchmarks measure cold generation)."""
    with _PATHS_LOCK:
        _PATHS.clear()
    _days.cache_clear()
    synthetic_sessions.clear()
