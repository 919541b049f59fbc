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

Everything is numpy over whole years of sessions, no per-bar Python: the daily paths of many
symbols (a nightly run asks one new day of thousands) are computed together, all their years
on one grid of symbols x sessions, their generators seeded in one pass
(:mod:`.synthetic_seeds`); each intraday level splits all sessions of a pack of requests in
one call of a compiled kernel (:mod:`.synthetic_split`, the same arithmetic in one
pass; built ahead of time by :mod:`.synthetic_split_aot`), their generators seeded in one
pass too.
This version of the market (calendars from exchange-calendars, year anchors) replaced one with
hand-written NYSE holidays and a path cumulated from 2000: the same seed gives different
series.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from marketlake.pipeline import freshness
from marketlake.pipeline.providers import (
    synthetic_seeds,
    synthetic_sessions,
    synthetic_split_aot,
)
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
_ANCHOR_YEARS = 400
_RATIOS = (2.0, 3.0, 4.0)


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
    """Per-symbol constants derived from the seed. The events' generator is seeded only for
    a symbol that has one (a split, dividends or a halt): most have none."""

    def __init__(
        self,
        seed: int,
        symbol: str,
        crypto: bool,
        rng: Callable[[int], np.random.Generator] | None = None,
        *,
        h: int | None = None,
        anchors: np.ndarray | None = None,
    ) -> None:
        """``rng(key)``: the generator seeded ``[seed, h % 2**32, key]`` (by default a new
        one; a batch passes its :class:`~.synthetic_seeds.Seeded`); ``h``: the symbol's hash,
        ``anchors``: its year anchors, when a batch made them (:func:`_profiles`)."""
        h = _h(seed, symbol) if h is None else h
        self.h = h
        if rng is None:
            rng = lambda key: np.random.default_rng([seed, h % (2**32), key])  # noqa: E731
        self.crypto = crypto
        self.price0 = _price0(h, crypto)
        self.volume0 = 200_000.0 + (h >> 8) % 5_000_000 if not crypto else 50.0 + (h >> 8) % 5_000
        self.split_date = None
        self.split_ratio = 1.0
        self.dividend_anchor = None
        self.halt_start = None
        self.halt_days = 0  # meaningful only with a halt_start
        split, dividends, halt = h % 4 == 0, not crypto and h % 3 == 0, not crypto and h % 7 == 0
        if split or dividends or halt:
            events = rng(7)
            if split:
                self.split_date = ORIGIN + timedelta(days=int(events.integers(2_000, 9_000)))
                # events.choice([2.0, 3.0, 4.0]), the same draw without building an array
                self.split_ratio = _RATIOS[int(events.integers(3))]
            if dividends:
                self.dividend_anchor = ORIGIN + timedelta(days=int(events.integers(10, 80)))
            if halt:
                self.halt_start = ORIGIN + timedelta(days=int(events.integers(3_000, 9_000)))
                self.halt_days = int(events.integers(3, 12))
        if anchors is None:
            anchors = _anchors(np.log(self.price0), rng(11), crypto)
        self.anchors = anchors

    def halted(self, d: date) -> bool:
        return self.halt_start is not None and 0 <= (d - self.halt_start).days < self.halt_days


def _price0(h: int, crypto: bool) -> float:
    """A symbol's price at the origin, from its hash."""
    return 20.0 + (h % 28_000) / 100.0 if not crypto else 100.0 + (h % 50_000)


def _anchors(
    log_price0: float | np.ndarray, draws: np.random.Generator | np.ndarray, crypto: bool
) -> np.ndarray:
    """Log prices at the start of each year from the origin's: one draw of annual returns
    (``draws``: the generator seeded with key 11, or its :data:`_ANCHOR_YEARS` normals, one
    row per symbol), cumulated. Rows of many symbols give each one's values bit for bit
    (each row cumulates on its own, in order)."""
    if isinstance(draws, np.random.Generator):
        draws = draws.standard_normal(_ANCHOR_YEARS)
    scale = 0.45 if crypto else 0.22
    steps = np.cumsum(0.04 + scale * draws, axis=-1)
    start = np.zeros((*steps.shape[:-1], 1))
    return np.asarray(log_price0)[..., None] + np.concatenate([start, steps], axis=-1)


_PROFILES: OrderedDict[tuple, _Profile] = OrderedDict()
_PROFILES_LOCK = threading.Lock()
_PROFILES_KEPT = 4096


def _profile(seed: int, symbol: str, crypto: bool) -> _Profile:
    return _profiles(seed, [symbol], crypto)[0]


def _profiles(seed: int, symbols: Sequence[str], crypto: bool) -> list[_Profile]:
    """The profiles of ``symbols``; those not kept made together, their generators seeded
    in one pass; the latest 4096 kept."""
    with _PROFILES_LOCK:
        found = [_PROFILES.get((seed, s, crypto)) for s in symbols]
        for s, p in zip(symbols, found, strict=True):
            if p is not None:
                _PROFILES.move_to_end((seed, s, crypto))
    missing = list(dict.fromkeys(s for s, p in zip(symbols, found, strict=True) if p is None))
    if not missing:
        return found
    hs = [_h(seed, s) for s in missing]
    seeded = synthetic_seeds.Seeded([seed], [(h % (2**32), key) for h in hs for key in (7, 11)])
    # every symbol's anchors at once: its draws, then one pass over all of them
    draws = np.empty((len(missing), _ANCHOR_YEARS))
    for i in range(len(missing)):
        seeded[2 * i + 1].standard_normal(out=draws[i])
    logs = np.array([np.log(_price0(h, crypto)) for h in hs])
    anchors = _anchors(logs, draws, crypto)
    made = {
        s: _Profile(
            seed,
            s,
            crypto,
            lambda key, i=i: seeded[2 * i + (7, 11).index(key)],
            h=hs[i],
            anchors=anchors[i],
        )
        for i, s in enumerate(missing)
    }
    with _PROFILES_LOCK:
        for s in missing[-_PROFILES_KEPT:]:
            _PROFILES[(seed, s, crypto)] = made[s]
        while len(_PROFILES) > _PROFILES_KEPT:
            _PROFILES.popitem(last=False)
    return [p or made[s] for s, p in zip(symbols, found, strict=True)]


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
        # intraday: five ten-year hourly series per call (17,500 bars each for an equity):
        # the fixed cost of a call (seeding, the layouts, the frame) is then a few percent
        pack_bars={tf: 500_000 for tf in ("1m", "15m", "30m", "1h", "4h")},
    )

    def __init__(self, settings=None, **kw) -> None:
        super().__init__(settings, **kw)
        self.seed = int(self.settings.options.get("seed", 42))

    def prepare(self, timeframes: Sequence[str] = ()) -> None:
        """Load the compiled intraday split when the run asked for intraday bars (its first
        intraday request would wait for it, with every fetch thread behind it)."""
        if any(tf in _LEVEL for tf in timeframes):
            synthetic_split_aot.kernel()

    # --- daily path -----------------------------------------------------------------------
    def _first_year(self, start: datetime, now: datetime) -> int:
        """The first year of the path a range from ``start`` needs (its day before)."""
        return min(max((start - timedelta(days=1)).year, ORIGIN.year), now.year)

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
        (a nightly run asks one new day of thousands), the paths of the symbols sharing a
        calendar and a first year built together. Intraday bars of one timeframe: their
        sessions split together (:meth:`_intraday_many`). Other requests: one by one."""
        if requests and all(r.kind == "ohlcv" for r in requests):
            timeframes = {r.timeframe for r in requests}
            if len(timeframes) == 1 and timeframes <= _LEVEL.keys():
                return self._intraday_many(requests)
        if any(r.kind != "ohlcv" or r.timeframe != "1D" for r in requests) or not requests:
            return super().fetch_many(requests)
        now = self.clock()
        groups: dict[tuple[bool, str, int], list[str]] = {}
        wanted: list[tuple[bool, str, int] | None] = []
        for r in requests:
            if min(r.end, now) <= r.start:
                wanted.append(None)
                continue
            crypto = is_crypto(r.symbol, r.instrument)
            key = (crypto, calendar_of(r.symbol, r.instrument), self._first_year(r.start, now))
            groups.setdefault(key, []).append(r.symbol)
            wanted.append(key)
        paths = {
            key: dict(zip(symbols, _daily_paths(self.seed, symbols, *key, now.year), strict=True))
            for key, symbols in groups.items()
        }
        parts = [
            self._daily(r, now, None if key is None else paths[key][r.symbol])
            for r, key in zip(requests, wanted, strict=True)
        ]
        lengths = np.array([len(p[0]) for p in parts], dtype=np.int64)
        cols = [np.concatenate([p[i] for p in parts]) for i in range(8)]
        return self._answers(requests, "1D", cols, lengths)

    def _answers(
        self,
        requests: Sequence[FetchRequest],
        timeframe: str,
        cols: Sequence[np.ndarray],
        lengths: np.ndarray,
    ) -> list[pl.DataFrame]:
        """The frames of ``requests``, in order, from the columns of all their rows one
        request after the other (``cols``: ts, open, high, low, close, volume, adj_close and
        is_final; ``lengths``: each request's rows): one frame built, answered as its
        slices."""
        if len(requests) == 1:
            symbol: str | pl.Series = requests[0].symbol
        else:
            symbols = pl.Series("symbol", [r.symbol for r in requests], pl.String)
            symbol = symbols.gather(np.repeat(np.arange(len(requests)), lengths))
        whole = self._frame(symbol, timeframe, *cols)
        starts = np.cumsum(lengths) - lengths
        return [whole.slice(int(a), int(n)) for a, n in zip(starts, lengths, strict=True)]

    def _daily(
        self, request: FetchRequest, now: datetime, path: _Path | None = None
    ) -> tuple[np.ndarray, ...]:
        """The daily bars of ``request`` as arrays: ts, open, high, low, close, volume,
        adj_close and is_final (from ``path`` when given)."""
        end = min(request.end, now)
        if end <= request.start:
            return _NO_BARS
        if path is None:
            path = self._path(request, (request.start - timedelta(days=1)).date())
        lo, hi = np.searchsorted(path.midnight, [_micros(request.start), _micros(end)], "left")
        final = path.opens[lo:hi] + path.minutes[lo:hi] * _US_PER_MIN <= _micros(now)
        return (path.midnight[lo:hi], *path.values[:6, lo:hi], final)

    def _fetch_ohlcv(self, request: FetchRequest) -> pl.DataFrame:
        now = self.clock()
        if min(request.end, now) <= request.start:
            return empty_ohlcv()
        if request.timeframe == "1D":
            ts, *values = self._daily(request, now)
            return self._frame(request.symbol, request.timeframe, ts, *values)
        return self._intraday_many([request])[0]

    def _sessions(self, request: FetchRequest, now: datetime) -> _Sessions | None:
        """The sessions an intraday ``request`` needs (None: none)."""
        if min(request.end, now) <= request.start:
            return None
        path = self._path(request, (request.start - timedelta(days=1)).date())
        closes = path.opens + path.minutes * _US_PER_MIN
        # sessions open before the range's end and closing after its start
        lo = int(np.searchsorted(closes, _micros(request.start), "right"))
        hi = int(np.searchsorted(path.opens, _micros(min(request.end, now)), "left"))
        if hi <= lo:
            return None
        crypto = is_crypto(request.symbol, request.instrument)
        return _Sessions(
            _profile(self.seed, request.symbol, crypto),
            path.day[lo:hi],
            path.values[:5, lo:hi],
            path.opens[lo:hi],
            path.minutes[lo:hi],
            int(path.widest),
        )

    def _intraday_many(self, requests: Sequence[FetchRequest]) -> list[pl.DataFrame]:
        """Intraday bars of one timeframe for each request, in order: the sessions of the
        requests whose calendars have the same widest session split together (one call of
        the compiled split per level, their generators seeded in one pass), the answers
        slices of one frame. A session's bars depend only on its own draws and length, so
        each request gets the rows it gets alone (``tests/pipeline/test_synthetic.py``)."""
        now = self.clock()
        level = _LEVEL[requests[0].timeframe]
        wanted = [self._sessions(r, now) for r in requests]
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(wanted):
            if w is not None:
                groups.setdefault(w.widest, []).append(i)
        refined = {
            widest: _refine_many(self.seed, [wanted[i] for i in members], level, widest)
            for widest, members in groups.items()
        }
        if [len(m) for m in groups.values()] == [len(requests)]:
            # every request, of one kind of calendar, in order: the columns as they are
            cols, lengths = next(iter(refined.values()))
        else:  # requests of other calendars, or without sessions: put in order
            parts: list[tuple] = [_NO_REFINED] * len(requests)
            for widest, members in groups.items():
                flat, counts = refined[widest]
                cut = np.cumsum(counts)[:-1]
                for i, *got in zip(members, *(np.split(x, cut) for x in flat), strict=True):
                    parts[i] = tuple(got)
            lengths = np.array([len(x[0]) for x in parts], dtype=np.int64)
            cols = [np.concatenate([x[j] for x in parts]) for j in range(7)]
        o, h, low, c, v, ts, ends = cols
        lo = np.array([_micros(r.start) for r in requests], dtype=np.int64)
        hi = np.array([_micros(min(r.end, now)) for r in requests], dtype=np.int64)
        # each request's bars are in time order: its first and last tell whether sessions
        # reach past its range, without a pass over every bar
        first = np.cumsum(lengths) - lengths
        some = lengths > 0
        ends_in = (ts[first[some]] >= lo[some]).all()
        ends_in &= (ts[first[some] + lengths[some] - 1] < hi[some]).all()
        owner = None if ends_in else np.repeat(np.arange(len(requests)), lengths)
        if owner is not None:  # sessions reaching past a request's range: cut to it
            keep = (ts >= lo[owner]) & (ts < hi[owner])
            o, h, low, c, v, ts, ends, owner = (x[keep] for x in (o, h, low, c, v, ts, ends, owner))
            lengths = np.bincount(owner, minlength=len(requests))
        crypto = np.array([is_crypto(r.symbol, r.instrument) for r in requests])
        if not crypto.any():
            v = np.round(v)
        elif not crypto.all():
            if owner is None:
                owner = np.repeat(np.arange(len(requests)), lengths)
            v = np.where(crypto[owner], v, np.round(v))
        final = ends <= _micros(now)
        return self._answers(
            requests, requests[0].timeframe, (ts, o, h, low, c, v, c, final), lengths
        )

    def _frame(
        self, symbol: str | pl.Series, timeframe: str, ts: np.ndarray, *values: np.ndarray
    ) -> pl.DataFrame:
        """An ohlcv frame in the lake's column order and types (ts in microseconds, UTC),
        every column included (``symbol``: one, or a series of one per row): built from
        arrays. The columns of one value (the timeframe, the provider, a null open interest)
        are polars literals: kept as one value, not one per row, through slicing, checks and
        concatenation (a ten-year hourly bulk load had spent a sixth of its page faults
        writing them out)."""
        o, h, lo, c, v, adj, final = values
        n = len(ts)
        if not isinstance(symbol, pl.Series):
            symbol = pl.Series("symbol", [symbol], pl.String).new_from_index(0, n)
        return pl.DataFrame(
            [
                symbol,
                pl.Series("ts", ts, pl.Int64).cast(pl.Datetime("us", "UTC")),
                pl.Series("open", o, pl.Float64),
                pl.Series("high", h, pl.Float64),
                pl.Series("low", lo, pl.Float64),
                pl.Series("close", c, pl.Float64),
                pl.Series("volume", v, pl.Float64),
                pl.Series("adj_close", adj, pl.Float64),
                pl.Series("is_final", final, pl.Boolean),
            ]
        ).select(
            "symbol",
            pl.lit(timeframe, pl.String).alias("timeframe"),
            *("ts", "open", "high", "low", "close", "volume", "adj_close"),
            pl.lit(self.name, pl.String).alias("provider"),
            "is_final",
            pl.lit(None, pl.Float64).alias("open_interest"),
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


class _Draws(NamedTuple):
    """Where the draws of one level come from: the ``blocks`` of each part's sessions, the
    distinct generator each of those blocks is (``where``: numbers from ``first`` on, in the
    generators seeded for all levels together) and how many distinct ones there are."""

    blocks: Sequence[_Blocks]
    where: list[np.ndarray]
    first: int
    count: int


def _generators(
    ps: Sequence[_Profile], per_level: Sequence[Sequence[_Blocks]]
) -> tuple[list[_Draws], list[tuple[int, int, int]]]:
    """The :class:`_Draws` of each level (``per_level``: the blocks of each part's sessions,
    one part per symbol of ``ps``) and the seed tails of all their generators, ``(h, key, 100
    + level)`` each, so that one :class:`.synthetic_seeds.Seeded` seeds every level. A block
    several parts share (a symbol's consecutive chunks meet inside a year) is drawn once."""
    out, tails = [], []
    for level, blocks in enumerate(per_level):
        index: dict[tuple[int, int], int] = {}
        where = []
        for p, b in zip(ps, blocks, strict=True):
            h = p.h % (2**32)
            where.append(np.array([index.setdefault((h, key), len(index)) for key in b.keys]))
        out.append(_Draws(blocks, where, len(tails), len(index)))
        tails += [(h, key, 100 + level) for h, key in index]
    return out, tails


def _draws(seeded: synthetic_seeds.Seeded, plan: _Draws, width: int, widest: int) -> np.ndarray:
    """(4, sessions, width) uniform draws of a level for the sessions of ``plan.blocks``, from
    one block per symbol and year (per month for 1m) with a row per day of the year (of the
    month for 1m) and a column per slot of the calendar's widest session, so a session's
    draws never depend on the range requested. Each block's generator is
    ``default_rng([seed, h, key, 100 + level])`` (``seeded``, from :func:`_generators`)."""
    blocks = plan.blocks
    rows = blocks[0].rows if blocks else 0
    stack = np.empty((plan.count, 4, rows, widest), dtype=np.float32)
    for i in range(plan.count):  # filled in the order random((4, rows, widest)) fills
        seeded[plan.first + i].random(dtype=np.float32, out=stack[i])
    # each session's row of the stack's (block, plane, day) rows, in plane 0
    at = [
        w[b.at // rows] * (4 * rows) + b.at % rows for w, b in zip(plan.where, blocks, strict=True)
    ]
    at = np.concatenate(at) if at else np.empty(0, np.int64)
    slots = stack.reshape(-1, widest)[:, :width]
    out = np.empty((4, len(at), width), dtype=np.float32)
    for j in range(4):
        np.take(slots, at + j * rows, axis=0, out=out[j])
    return out


def _split(parent: tuple[np.ndarray, ...], lay: dict, draws: np.ndarray) -> tuple:
    """One level down: each parent bar (sessions x parents) into its children (sessions x
    parents * children; padding slots hold values that are never used), by the compiled
    bridge (:func:`.synthetic_split.split_into`, built ahead of time where it could be:
    :mod:`.synthetic_split_aot`), loaded on the first intraday request."""
    split_into = synthetic_split_aot.kernel()
    sessions, parents = parent[0].shape
    r = lay["sqrt_frac"].shape[-1]
    names = ("sqrt_frac", "cumfrac", "tail", "invalid", "weight")
    inputs = [*parent, *(np.reshape(lay[k], (parents, r)) for k in names), draws]
    out = np.empty((5, sessions, parents * r))
    split_into(*map(_read_only, inputs), out)
    return tuple(out)


def _read_only(a: np.ndarray) -> np.ndarray:
    """``a`` C-contiguous and read-only (a view when it already is contiguous): the one array
    type the compiled split is built for, whatever the caller's flags."""
    a = np.ascontiguousarray(a).view()
    a.flags.writeable = False
    return a


class _Sessions(NamedTuple):
    """A request's sessions to refine: its symbol's profile, their ``days``, ``daily`` bars
    (open, high, low, close, volume as rows), ``opens`` (microseconds, UTC) and ``minutes``,
    and the calendar's ``widest`` session."""

    p: _Profile
    days: np.ndarray
    daily: np.ndarray
    opens: np.ndarray
    minutes: np.ndarray
    widest: int


def _refine_many(
    seed: int, parts: Sequence[_Sessions], level: int, widest: int
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Bars of ``level`` for the sessions of ``parts`` (of calendars whose widest session is
    ``widest``), each part's in time order and the parts one after the other: open, high,
    low, close, volume, start and end (microseconds), and each part's number of bars. All
    sessions, stacked, are split in one pass per level, padded to the longest, with the
    layout of the most common length; sessions of other lengths (early closes) are split
    again with their own and written over. A session's bars depend only on its draws and
    length (padding slots come after its valid ones and weigh nothing)."""
    minutes = np.concatenate([x.minutes for x in parts])
    opens = np.concatenate([x.opens for x in parts])
    longest = int(minutes.max())
    counts = np.bincount(minutes)
    common = int(np.argmax(counts))
    others = [(int(n), np.flatnonzero(minutes == n)) for n in np.flatnonzero(counts) if n != common]
    daily = parts[0].daily if len(parts) == 1 else np.concatenate([x.daily for x in parts], axis=1)
    bars = tuple(x[:, None] for x in daily)
    days = [x.days.astype("datetime64[D]") for x in parts]
    ps = [x.p for x in parts]
    yearly = [_blocks(d, monthly=False) for d in days]
    plans, tails = _generators(
        ps,
        [
            yearly if LEVELS[lvl][0] != "1m" else [_blocks(d, monthly=True) for d in days]
            for lvl in range(level + 1)
        ],
    )
    seeded = synthetic_seeds.Seeded([seed], tails)
    for lvl in range(level + 1):
        parents, r, _, step = _shape(lvl, longest)
        most, each = _shape(lvl, widest)[:2]
        draws = _draws(seeded, plans[lvl], parents * r, most * each)
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
    every = bool(keep.all())
    # the slots sessions fill, gathered by their flat positions: one pass over the mask, a
    # take per column (a boolean selection per column cost twice as much)
    slots = out[0].shape[1]
    if every and width == slots:
        cols = [x.reshape(-1) for x in out]
    elif every:
        cols = [np.ascontiguousarray(x[:, :width]).reshape(-1) for x in out]
    else:
        padded = np.zeros((len(minutes), slots), dtype=bool)
        padded[:, :width] = keep
        at = np.flatnonzero(padded)
        cols = [np.take(x.reshape(-1), at) for x in out]
    ts = (opens[:, None] + start[None, :] * _US_PER_MIN).reshape(-1)
    span = dur.reshape(-1)
    if not every:
        at = np.flatnonzero(keep)
        ts, span = np.take(ts, at), np.take(span, at)
    # each part has a session (``_sessions`` gives None for a range without one), so its
    # first row starts a non-empty slice and reduceat sums it
    first = np.cumsum([0, *(len(x.minutes) for x in parts[:-1])])
    per_part = np.add.reduceat(keep.sum(axis=1), first)
    return (*cols, ts, ts + span * _US_PER_MIN), per_part


class _Days(NamedTuple):
    """The days of a year on which a calendar's prices move (every weekday and session):
    their ``doy`` (day of the year), ``quarter`` and ``traded`` flag."""

    doy: np.ndarray
    quarter: np.ndarray
    traded: np.ndarray


@lru_cache(maxsize=1024)
def _days(calendar: str, last_year: int, year: int) -> _Days:
    """:class:`_Days` of ``year``, shared by every symbol of the calendar."""
    cal = sessions(calendar, last_year)
    origin = np.datetime64(ORIGIN, "D")
    first = max(np.datetime64(f"{year}-01-01"), origin)
    a = int((first - origin).astype(np.int64))
    b = int((np.datetime64(f"{year + 1}-01-01") - origin).astype(np.int64))
    days = first + np.arange(b - a)
    traded = cal.traded[a:b]
    latent = traded | (((days.astype(np.int64) + 3) % 7) < 5)  # 1970-01-01: a Thursday
    idx = np.flatnonzero(latent)
    doy = (days[idx] - np.datetime64(f"{year}-01-01")).astype(np.int64)
    quarter = (days[idx].astype("datetime64[M]").astype(np.int64) % 12) // 3
    return _Days(doy, quarter, traded[idx])


class _Walks(NamedTuple):
    """The daily log prices of a batch of symbols over the sessions of a calendar's years,
    one row per symbol and one column per session (``live``: which of them the symbol
    trades, None when every symbol trades them all): the log close, the log price before
    it (the previous moving day's), and the gap, wick and volume draws."""

    lclose: np.ndarray
    lbefore: np.ndarray
    gaps: np.ndarray
    hix: np.ndarray
    lox: np.ndarray
    volm: np.ndarray
    live: np.ndarray | None


def _years(
    seed: int, ps: Sequence[_Profile], calendar: str, first_year: int, last_year: int
) -> _Walks:
    """:class:`_Walks` of the symbols of ``ps`` (all crypto or none) over the sessions of
    ``first_year`` through ``last_year``. Each symbol's year is a random walk of its own
    draws (one block per symbol and year) over the days prices move, bridged between the
    year's anchor and the next. All symbols and years are computed together, on a grid of
    symbols x the days the calendar's prices move: a symbol's halted days are in the grid
    but add nothing to its walk (adding zero changes no sum), so its values are those of a
    walk over its own days."""
    years = range(first_year, last_year + 1)
    n_sym, n_years = len(ps), len(years)
    ds = [_days(calendar, last_year, y) for y in years]
    n = np.array([len(d.doy) for d in ds])
    ends = np.cumsum(n)
    starts = ends - n
    yr = np.repeat(np.arange(n_years), n)
    doy, quarter, on = (np.concatenate(x) for x in zip(*ds, strict=True))
    z = np.empty((n_sym, n_years, 5, 366))
    regime_vol = np.empty((n_sym, n_years, 4))
    regime_drift = np.empty((n_sym, n_years, 4))
    seeded = synthetic_seeds.Seeded([seed], [(p.h % (2**32), y) for p in ps for y in years])
    for s in range(n_sym):
        for i in range(n_years):
            rng = seeded[s * n_years + i]
            rng.standard_normal(out=z[s, i])
            regime_vol[s, i] = rng.uniform(0.006, 0.03, 4)
            regime_drift[s, i] = rng.uniform(-0.0013, 0.0015, 4)
    if ps and ps[0].crypto:
        regime_vol *= 1.6
    live = _live(ps, np.asarray([np.datetime64(f"{y}-01-01") for y in years])[yr] + doy)
    vol = regime_vol[:, yr, quarter]
    walk = regime_drift[:, yr, quarter] + vol * z[:, yr, 0, doy]
    if live is not None:
        walk[~live] = 0.0
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        np.cumsum(walk[:, a:b], axis=1, out=walk[:, a:b])
    # bridged between each year's anchor and the next: its last moving day ends on it
    first = first_year - ORIGIN.year
    anchors = np.stack([p.anchors[first : first + n_years + 1] for p in ps])
    a0, a1 = anchors[:, :-1], anchors[:, 1:]
    if live is None:
        k = np.arange(1, len(yr) + 1) - np.repeat(starts, n)
        moving = n
    else:
        k = live.astype(np.int64)
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            np.cumsum(k[:, a:b], axis=1, out=k[:, a:b])
        moving = k[:, ends - 1]
    slope = (walk[:, ends - 1] - (a1 - a0)) / moving
    lp = walk - k * slope[:, yr] + a0[:, yr]
    # the price before a day: the previous day's (a halted day keeps the price of the day
    # before it, its walk and count of moving days unchanged), the anchor on a year's first
    before = np.empty_like(lp)
    before[:, 1:] = lp[:, :-1]
    before[:, starts] = a0
    t = np.flatnonzero(on)
    v = vol[:, t]
    zs = [z[:, yr[t], j, doy[t]] for j in range(1, 5)]
    gaps = v * 0.35 * zs[0] * np.where(np.abs(zs[3]) > 2.3, 3.0, 1.0)
    wick = v * 0.6
    return _Walks(
        lp[:, t],
        before[:, t],
        gaps,
        np.abs(zs[1]) * wick,
        np.abs(zs[2]) * wick,
        0.35 * zs[3],
        None if live is None else live[:, t],
    )


def _live(ps: Sequence[_Profile], days: np.ndarray) -> np.ndarray | None:
    """Which of ``days`` each symbol of ``ps`` is not halted on (None: no halt among them)."""
    halts = [
        (s, np.datetime64(p.halt_start, "D"), p.halt_days)
        for s, p in enumerate(ps)
        if p.halt_start is not None
    ]
    if not halts or not len(days):
        return None
    rows, start, length = (np.asarray(x) for x in zip(*halts, strict=True))
    age = (days[None, :] - start[:, None]).astype(np.int64)
    halted = (age >= 0) & (age < length[:, None])
    hit = halted.any(axis=1)
    if not hit.any():
        return None
    live = np.ones((len(ps), len(days)), dtype=bool)
    live[rows[hit]] = ~halted[hit]
    return live


# a request's bars as arrays when it has none (ts, open ... adj_close, is_final)
_NO_BARS = (np.empty(0, np.int64), *[np.empty(0)] * 6, np.empty(0, bool))
_NO_REFINED = (*[np.empty(0)] * 5, np.empty(0, np.int64), np.empty(0, np.int64))
_PATHS: OrderedDict[tuple, _Path] = OrderedDict()
_PATHS_LOCK = threading.Lock()
_PATHS_KEPT = 512
_BATCH_YEARS = 512  # symbol-years built together (their draws: 15 KB each)


def _daily_path(
    seed: int, symbol: str, crypto: bool, calendar: str, first_year: int, last_year: int
) -> _Path:
    """The path of ``symbol`` (:func:`_daily_paths`)."""
    return _daily_paths(seed, [symbol], crypto, calendar, first_year, last_year)[0]


def _daily_paths(
    seed: int,
    symbols: Sequence[str],
    crypto: bool,
    calendar: str,
    first_year: int,
    last_year: int,
) -> list[_Path]:
    """The paths of ``symbols`` from ``first_year`` (or earlier: a path already built from
    an earlier year is reused, its values are the same) through ``last_year``; those not
    kept built together, in batches; the latest 512 kept."""
    keys = [(seed, s, crypto, calendar, last_year) for s in symbols]
    with _PATHS_LOCK:
        found = [_PATHS.get(k) for k in keys]
        for k, path in zip(keys, found, strict=True):
            if path is not None and path.first_year <= first_year:
                _PATHS.move_to_end(k)
    missing = list(
        dict.fromkeys(
            s
            for s, path in zip(symbols, found, strict=True)
            if path is None or path.first_year > first_year
        )
    )
    if not missing:
        return found
    batch = max(1, _BATCH_YEARS // (last_year - first_year + 1))
    built: dict[str, _Path] = {}
    for i in range(0, len(missing), batch):
        part = missing[i : i + batch]
        paths = _build_paths(seed, part, crypto, calendar, first_year, last_year)
        built.update(zip(part, paths, strict=True))
    with _PATHS_LOCK:
        for s in missing[-_PATHS_KEPT:]:
            key = (seed, s, crypto, calendar, last_year)
            _PATHS[key] = built[s]
            _PATHS.move_to_end(key)
        while len(_PATHS) > _PATHS_KEPT:
            _PATHS.popitem(last=False)
    return [built.get(s) or path for s, path in zip(symbols, found, strict=True)]


def _build_paths(
    seed: int,
    symbols: Sequence[str],
    crypto: bool,
    calendar: str,
    first_year: int,
    last_year: int,
) -> list[_Path]:
    """The paths of ``symbols`` over the sessions of ``calendar`` from ``first_year``
    through ``last_year``: a block of draws per symbol and year, each year bridged between
    fixed anchors, so no year depends on another; computed together on a grid of symbols x
    sessions (a symbol's halted sessions dropped in the end)."""
    ps = _profiles(seed, symbols, crypto)
    cal = sessions(calendar, last_year)
    w = _years(seed, ps, calendar, first_year, last_year)
    c0 = int(np.searchsorted(cal.day, np.datetime64(f"{first_year}-01-01")))
    c1 = c0 + w.lclose.shape[1]
    darr = cal.day[c0:c1]
    close = np.exp(w.lclose)
    before = np.exp(w.lbefore)
    open_ = before * np.exp(w.gaps)
    high = np.maximum(open_, close) * np.exp(w.hix)
    low = np.minimum(open_, close) * np.exp(-w.lox)
    volume = np.array([p.volume0 for p in ps])[:, None] * np.exp(w.volm)
    split = [s for s, p in enumerate(ps) if p.split_date is not None]
    if split:
        on = np.array([np.datetime64(ps[s].split_date, "D") for s in split])
        ratio = np.array([ps[s].split_ratio for s in split])
        part = volume[split]
        volume[split] = np.where(darr[None, :] < on[:, None], part * ratio[:, None], part)
    if not crypto:
        volume = np.round(volume)
    adj_close = close.copy()
    dividend = np.zeros_like(close)
    paying = [s for s, p in enumerate(ps) if p.dividend_anchor is not None]
    if paying and len(darr):
        # the first session on or after each 91-day anniversary of the anchor: the sessions
        # whose count of anniversaries differs from the previous session's the symbol trades
        anchor = np.array([np.datetime64(ps[s].dividend_anchor, "D") for s in paying])
        prev_day = np.array([_session_before(cal, ps[s], c0) for s in paying])
        days = np.concatenate([prev_day[:, None], np.broadcast_to(darr, (len(paying), c1 - c0))], 1)
        age = (days - anchor[:, None]).astype(np.int64)
        count = np.where(age >= 0, age // 91, -1)
        live = None if w.live is None else w.live[paying]
        if live is not None:  # a halted session counts for nothing (counts only grow)
            count[:, 1:] = np.where(live, count[:, 1:], -2)
        prev = np.maximum.accumulate(count, axis=1)[:, :-1]
        paid = count[:, 1:] != prev
        if live is not None:
            paid &= live
        b = before[paying]
        div = np.where(paid, np.round(b * 0.005, 4), 0.0)
        dividend[paying] = div
        # back-adjust closes for dividends (Yahoo's multiplicative method)
        factor = np.where(div > 0, 1.0 - div / b, 1.0)
        adj = np.ones_like(factor)
        adj[:, :-1] = np.cumprod(factor[:, ::-1], axis=1)[:, ::-1][:, 1:]
        adj_close[paying] = close[paying] * adj
    values = np.stack([open_, high, low, close, volume, adj_close, dividend], axis=1)
    midnight = darr.astype("datetime64[us]").astype(np.int64)
    opens, minutes = cal.opens[c0:c1], cal.minutes[c0:c1]
    midnight.setflags(write=False)
    widest = int(cal.minutes.max())
    out = []
    for s in range(len(ps)):
        keep = None if w.live is None or w.live[s].all() else w.live[s]
        if keep is None:
            path = _Path(darr, midnight, opens, minutes, widest, values[s].copy(), first_year)
        else:
            path = _Path(
                darr[keep],
                midnight[keep],
                opens[keep],
                minutes[keep],
                widest,
                values[s][:, keep],
                first_year,
            )
        path.values.setflags(write=False)
        out.append(path)
    return out


def _session_before(cal: synthetic_sessions.Sessions, p: _Profile, c0: int) -> np.datetime64:
    """The last session before session ``c0`` that ``p``'s symbol traded (the day before
    the origin if none)."""
    prior = c0 - 1
    if prior >= 0 and p.halted(cal.day[prior].astype(date)):
        prior = int(np.searchsorted(cal.day, np.datetime64(p.halt_start, "D"))) - 1
    return cal.day[prior] if prior >= 0 else np.datetime64(ORIGIN, "D") - 1


def clear_caches() -> None:
    """Forget every built path, profile and calendar (benchmarks measure cold generation)."""
    with _PATHS_LOCK:
        _PATHS.clear()
    with _PROFILES_LOCK:
        _PROFILES.clear()
    _days.cache_clear()
    synthetic_sessions.clear()
