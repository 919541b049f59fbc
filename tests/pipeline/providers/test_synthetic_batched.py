"""The synthetic market's paths built many symbols at a time are, bit for bit, the ones the
market built symbol by symbol: the per-symbol construction is kept here as the reference."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache

import numpy as np
import pytest

from marketlake.pipeline.config import ProviderSettings
from marketlake.pipeline.providers import synthetic
from marketlake.pipeline.providers.base import FetchRequest
from marketlake.pipeline.providers.synthetic import (
    ORIGIN,
    SyntheticProvider,
    _h,
    calendar_of,
    sessions,
)

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


# --- the reference: the market built one symbol at a time ----------------------------------
class RefProfile:
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
        annual = np.random.default_rng([seed, h % (2**32), 11]).standard_normal(400)
        scale = 0.45 if crypto else 0.22
        self.anchors = np.log(self.price0) + np.concatenate(
            [[0.0], np.cumsum(0.04 + scale * annual)]
        )

    def halted(self, d: date) -> bool:
        return self.halt_start is not None and 0 <= (d - self.halt_start).days < self.halt_days


@cache
def ref_days(calendar: str, last_year: int, year: int, halt: tuple[date, int] | None):
    cal = sessions(calendar, last_year)
    origin = np.datetime64(ORIGIN, "D")
    first = max(np.datetime64(f"{year}-01-01"), origin)
    a = int((first - origin).astype(np.int64))
    b = int((np.datetime64(f"{year + 1}-01-01") - origin).astype(np.int64))
    days = first + np.arange(b - a)
    traded = cal.traded[a:b].copy()
    latent = traded | (((days.astype(np.int64) + 3) % 7) < 5)
    if halt is not None:
        age = (days - np.datetime64(halt[0], "D")).astype(np.int64)
        halted = (age >= 0) & (age < halt[1])
        latent &= ~halted
        traded &= ~halted
    idx = np.flatnonzero(latent)
    doy = (days[idx] - np.datetime64(f"{year}-01-01")).astype(np.int64)
    quarter = (days[idx].astype("datetime64[M]").astype(np.int64) % 12) // 3
    on = traded[idx]
    return doy, quarter, on, np.searchsorted(cal.day, days[idx][on])


def ref_years(seed, p, calendar, first_year, last_year):
    years = range(first_year, last_year + 1)
    halt = p.halt_start
    ds = [
        ref_days(
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
    n = np.array([len(d[0]) for d in ds])
    ends = np.cumsum(n)
    row = np.repeat(np.arange(len(years)), n)
    doy, quarter, on = (np.concatenate(x) for x in zip(*(d[:3] for d in ds), strict=True))
    vol = regime_vol[row, quarter]
    grid = np.zeros((len(years), 366))
    grid[row, doy] = regime_drift[row, quarter] + vol * z[row, 0, doy]
    walk = np.cumsum(grid, axis=1)[row, doy]
    y = np.asarray(years) - ORIGIN.year
    a0, a1 = p.anchors[y], p.anchors[y + 1]
    slope = (walk[ends - 1] - (a1 - a0)) / n
    k = np.arange(1, len(walk) + 1) - np.repeat(ends - n, n)
    lp = walk - k * slope[row] + a0[row]
    before = np.empty_like(lp)
    before[1:] = lp[:-1]
    before[ends - n] = a0
    pos = np.concatenate([d[3] for d in ds])
    v = vol[on]
    zs = z[row[on], 1:, doy[on]].T
    gaps = v * 0.35 * zs[0] * np.where(np.abs(zs[3]) > 2.3, 3.0, 1.0)
    wick = np.abs(zs[1:3]) * (v * 0.6)
    return pos, lp[on], before[on], gaps, wick[0], wick[1], 0.35 * zs[3]


def ref_path(seed, symbol, crypto, calendar, first_year, last_year):
    p = RefProfile(seed, symbol, crypto)
    cal = sessions(calendar, last_year)
    pos, lclose, lbefore, gaps, hix, lox, volm = ref_years(seed, p, calendar, first_year, last_year)
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
    factor = np.where(dividend > 0, 1.0 - dividend / before, 1.0)
    adj = np.cumprod(factor[::-1])[::-1]
    adj = np.concatenate([adj[1:], [1.0]])
    values = np.stack([open_, high, low, close, volume, close * adj, dividend])
    return (
        darr,
        darr.astype("datetime64[us]").astype(np.int64),
        cal.opens[pos],
        cal.minutes[pos],
        int(cal.minutes.max()),
        values,
    )


# --- helpers --------------------------------------------------------------------------------
def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit: the same type, shape and bytes."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_paths_equal(seed, symbols, crypto, calendar, first_year, last_year, paths):
    assert len(paths) == len(symbols)
    for symbol, path in zip(symbols, paths, strict=True):
        ref = ref_path(seed, symbol, crypto, calendar, first_year, last_year)
        got = (path.day, path.midnight, path.opens, path.minutes, path.widest, path.values)
        for name, a, b in zip(["day", "midnight", "opens", "minutes"], got, ref, strict=False):
            assert same(a, b), (symbol, calendar, first_year, name)
        assert got[4] == ref[4]
        for i, name in enumerate(["open", "high", "low", "close", "volume", "adj", "div"]):
            assert same(got[5][i], ref[5][i]), (symbol, calendar, first_year, name)
        assert path.first_year == first_year


# halts running over a new year: the first sessions of the later year are halted and, the
# sessions before, the last ones of the earlier year (the dividend count starts before them;
# the last three have an anniversary inside the halt: a dividend on the first session after)
ACROSS_NEW_YEAR = ["H04940", "H37376", "H35051", "H02107", "H00337", "H36341"]
ACROSS_NEW_YEAR += ["H77074", "H85951", "H121938"]
CALENDARS = {
    "XNYS": ([f"S{i:04d}" for i in range(160)], False),
    "24/7": ([f"C{i:03d}-USD" for i in range(60)], True),
    "XBOM": ([f"B{i:03d}" for i in range(60)], False),
    "24/5": ([f"F{i:03d}" for i in range(40)], False),
}


@pytest.fixture(autouse=True)
def cold():
    synthetic.clear_caches()
    yield
    synthetic.clear_caches()


# --- tests ----------------------------------------------------------------------------------
def test_profiles_are_the_per_symbol_ones():
    for seed in (42, 7, 2**40 + 3):
        for crypto in (False, True):
            symbols = [f"P{i:04d}" for i in range(1500)]
            batched = synthetic._profiles(seed, symbols, crypto)
            for symbol, a in zip(symbols, batched, strict=True):
                assert a is synthetic._profile(seed, symbol, crypto)  # kept
                assert_same_profile(a, RefProfile(seed, symbol, crypto))
                assert_same_profile(synthetic._Profile(seed, symbol, crypto), a)


def assert_same_profile(a, b):
    assert (a.h, a.price0, a.volume0) == (b.h, b.price0, b.volume0)
    assert (a.split_date, a.split_ratio) == (b.split_date, b.split_ratio)
    assert type(a.split_ratio) is float
    assert (a.dividend_anchor, a.halt_start) == (b.dividend_anchor, b.halt_start)
    if a.halt_start is not None:
        assert a.halt_days == b.halt_days
    assert same(a.anchors, b.anchors)


@pytest.mark.parametrize("calendar", sorted(CALENDARS))
@pytest.mark.parametrize("years", [(2026, 2026), (2023, 2026), (2009, 2011)])
def test_batched_paths_are_the_per_symbol_ones(calendar, years):
    symbols, crypto = CALENDARS[calendar]
    paths = synthetic._build_paths(42, symbols, crypto, calendar, *years)
    assert_paths_equal(42, symbols, crypto, calendar, *years, paths)


def test_the_sample_has_splits_dividends_and_halts_in_its_years():
    ps = [RefProfile(42, s, False) for s in CALENDARS["XNYS"][0]]
    assert any(p.split_date and 2009 <= p.split_date.year <= 2011 for p in ps)
    assert any(p.split_date and p.split_date.year < 2009 for p in ps)
    assert sum(p.dividend_anchor is not None for p in ps) > 30
    assert sum(p.halt_start is not None and 2009 <= p.halt_start.year <= 2011 for p in ps) >= 2


def test_whole_histories_batched_are_the_per_symbol_ones():
    for calendar in ("XNYS", "24/7"):
        symbols, crypto = CALENDARS[calendar]
        paths = synthetic._build_paths(42, symbols[:24], crypto, calendar, 2000, 2026)
        assert_paths_equal(42, symbols[:24], crypto, calendar, 2000, 2026, paths)


def test_halts_over_a_new_year_batched_are_the_per_symbol_ones():
    for symbol in ACROSS_NEW_YEAR:
        p = RefProfile(42, symbol, False)
        assert p.halt_start.year != (p.halt_start + timedelta(days=p.halt_days - 1)).year
    assert sum(RefProfile(42, s, False).dividend_anchor is not None for s in ACROSS_NEW_YEAR) >= 3
    others = [f"S{i:04d}" for i in range(20)]
    for first_year in {
        RefProfile(42, s, False).halt_start.year + d for s in ACROSS_NEW_YEAR for d in (0, 1)
    }:
        symbols = [*ACROSS_NEW_YEAR, *others]
        paths = synthetic._build_paths(42, symbols, False, "XNYS", first_year, 2026)
        assert_paths_equal(42, symbols, False, "XNYS", first_year, 2026, paths)


def test_batches_of_any_size_and_kept_paths_agree(monkeypatch):
    symbols = [f"S{i:04d}" for i in range(40)]
    monkeypatch.setattr(synthetic, "_BATCH_YEARS", 7)  # 2 symbols of 3 years a batch
    monkeypatch.setattr(synthetic, "_PATHS_KEPT", 16)
    # some kept from an earlier year (reused), some from a later one (built again)
    early = synthetic._daily_paths(42, symbols[:10], False, "XNYS", 2022, 2026)
    late = synthetic._daily_paths(42, symbols[10:12], False, "XNYS", 2025, 2026)
    paths = synthetic._daily_paths(42, [*symbols, symbols[3]], False, "XNYS", 2024, 2026)
    assert len(synthetic._PATHS) == 16
    assert paths[3] is early[3] and paths[-1] is early[3] and paths[10] is not late[0]
    assert_paths_equal(42, symbols[10:], False, "XNYS", 2024, 2026, paths[10:-1])
    assert_paths_equal(42, symbols[:10], False, "XNYS", 2022, 2026, paths[:10])


def test_many_daily_requests_are_the_per_symbol_paths():
    p = SyntheticProvider(ProviderSettings("synthetic", options={"seed": 42}), clock=lambda: NOW)
    day = timedelta(days=1)
    reqs, expected = [], []
    for calendar, (symbols, crypto) in CALENDARS.items():
        inst = {"asset_type": "crypto"} if crypto else {}
        inst |= {"exchange": "NSE"} if calendar == "XBOM" else {}
        inst |= {"asset_type": "fx"} if calendar == "24/5" else {}
        for i, symbol in enumerate(symbols[:40]):
            start = [NOW - day, NOW - 40 * day, datetime(2019, 5, 1, tzinfo=UTC)][i % 3]
            reqs.append(FetchRequest.bars(symbol, "1D", start, NOW, instrument=inst))
            assert calendar_of(symbol, inst) == calendar
            ref = ref_path(42, symbol, crypto, calendar, (start - day).year, 2026)
            lo, hi = np.searchsorted(ref[1], [start.timestamp() * 1e6, NOW.timestamp() * 1e6])
            expected.append(ref[5][:, lo:hi])
    frames = p.fetch_many(reqs)
    for r, frame, values in zip(reqs, frames, expected, strict=True):
        cols = ["open", "high", "low", "close", "volume", "adj_close"]
        got = frame.select(cols).to_numpy().T
        assert same(np.ascontiguousarray(got), np.ascontiguousarray(values[:6])), r.symbol
        assert frame.height > 0
