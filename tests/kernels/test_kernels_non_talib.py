"""Supertrend, session VWAP, classic pivots, Fibonacci levels and session ids: small cases
worked out by hand (literal expected numbers), plus brute-force cross-checks."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
import talib

from marketlake import kernels
from marketlake.kernels.levels import fib, pivots
from marketlake.kernels.sessions import session_ids
from marketlake.kernels.volatility import supertrend
from marketlake.kernels.volume import vwap

NAN = np.nan


def us(*args) -> int:
    """UTC datetime -> epoch microseconds."""
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1_000_000)


def frame(symbol, ts_us, high, low, close, volume=None, open_=None):
    n = len(ts_us)
    close = np.asarray(close, dtype=np.float64)
    return pl.DataFrame(
        {
            "symbol": [symbol] * n,
            "ts": pl.Series(np.asarray(ts_us, dtype=np.int64)).cast(pl.Datetime("us", "UTC")),
            "open": close if open_ is None else open_,
            "high": np.asarray(high, dtype=np.float64),
            "low": np.asarray(low, dtype=np.float64),
            "close": close,
            "volume": np.ones(n) if volume is None else np.asarray(volume, dtype=np.float64),
        }
    )


# ---------------------------------------------------------------- Supertrend ---------------

ST_H = np.array([10, 11, 12, 12, 10, 9, 13, 10], dtype=np.float64)
ST_L = np.array([8, 9, 10, 10, 6, 7, 11, 8], dtype=np.float64)
ST_C = np.array([9, 10, 11, 10, 7, 8, 12.5, 7.5], dtype=np.float64)
# ATR(2) by hand: TR1..7 = 2, 2, 2, 4, 2, 5, 4.5; first ATR (row 2) = (2+2)/2, then
# atr = atr/2 + tr/2
ST_ATR = [NAN, NAN, 2.0, 2.0, 3.0, 2.5, 3.75, 4.125]
# Supertrend(2, 1) by hand (hl2 = 11, 11, 8, 8, 12, 9 from row 2):
#   row 2: bands 13 / 9, first bar -> downtrend, line = upper 13
#   row 3: upper 13 (13 < 13? no, prev close 11 > 13? no: keep 13), lower 9; 10 > 13? no
#   row 4: basic upper 11 < 13 -> 11; lower 5 (no, prev close 10 < 9? no) keeps 9; 7 > 11? no
#   row 5: upper 10.5 < 11 -> 10.5; lower: prev close 7 < 9 -> 5.5; 8 > 10.5? no
#   row 6: upper 15.75 kept at 10.5; lower 8.25 > 5.5 -> 8.25; 12.5 > 10.5 -> UP, line 8.25
#   row 7: upper: prev close 12.5 > 10.5 -> 13.125; lower 4.875 kept 8.25; 7.5 < 8.25 -> DOWN
ST_LINE = [NAN, NAN, 13.0, 13.0, 11.0, 10.5, 8.25, 13.125]
ST_DIR = [NAN, NAN, -1.0, -1.0, -1.0, -1.0, 1.0, -1.0]


def test_supertrend_hand_case():
    np.testing.assert_array_equal(talib.ATR(ST_H, ST_L, ST_C, 2), ST_ATR)  # the ATR it uses
    line, direction = supertrend(ST_H, ST_L, ST_C, 2, 1.0)
    np.testing.assert_array_equal(line, ST_LINE)
    np.testing.assert_array_equal(direction, ST_DIR)
    ts = [us(2024, 1, d) for d in range(1, 9)]
    out = kernels.compute(frame("A", ts, ST_H, ST_L, ST_C), ["supertrend(2,1)"])
    np.testing.assert_array_equal(out["supertrend_2_1"].to_numpy(), ST_LINE)
    np.testing.assert_array_equal(out["supertrend_dir_2_1"].to_numpy(), ST_DIR)


def test_supertrend_line_is_a_band_and_warmup_is_nan():
    rng = np.random.default_rng(4)
    c = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, 3000)))
    h = c * 1.01
    lo = c * 0.99
    line, d = supertrend(h, lo, c, 10, 3.0)
    assert np.isnan(line[:10]).all() and np.isnan(d[:10]).all()
    assert set(np.unique(d[10:])) == {-1.0, 1.0}
    atr = talib.ATR(h, lo, c, 10)
    hl2 = (h + lo) / 2
    up = d == 1.0
    # in an uptrend the line is a (carried) lower band: below hl2 + nothing, at most hl2 - 3 atr
    # of some earlier bar; it is always on the right side of the close when the trend holds
    assert (line[10:][up[10:]] <= c[10:][up[10:]]).all()
    assert (line[10:][~up[10:]] >= c[10:][~up[10:]]).all()
    assert np.isfinite(atr[10:]).all() and np.isfinite(hl2).all()


def test_supertrend_nan_high_stops_the_line():
    h, lo, c = ST_H.copy(), ST_L.copy(), ST_C.copy()
    h[5] = NAN
    line, d = supertrend(h, lo, c, 2, 1.0)
    np.testing.assert_array_equal(line[:5], ST_LINE[:5])
    assert np.isnan(line[5:]).all() and np.isnan(d[5:]).all()  # TA-Lib's ATR is NaN from here


# ---------------------------------------------------------------- VWAP ----------------------

# Two New York sessions; bar 2 is 2024-03-08 02:00 UTC = 2024-03-07 21:00 New York, so its UTC
# date differs from its local date.
VW_TS = [us(2024, 3, 7, 20), us(2024, 3, 8, 2), us(2024, 3, 8, 15), us(2024, 3, 8, 16)]
VW_H = [11, 13, 21, 23]
VW_L = [9, 11, 19, 21]
VW_C = [10, 12, 20, 22]  # typical prices 10, 12, 20, 22
VW_V = [100, 300, 50, 150]


def test_vwap_resets_at_the_new_york_session():
    out = kernels.compute(
        frame("A", VW_TS, VW_H, VW_L, VW_C, VW_V), ["vwap"], session_tz="America/New_York"
    )
    # Mar 7: 10, (10*100 + 12*300)/400 = 11.5; Mar 8: 20, (20*50 + 22*150)/200 = 21.5
    np.testing.assert_allclose(out["vwap"].to_numpy(), [10.0, 11.5, 20.0, 21.5], rtol=1e-15)


def test_vwap_with_utc_sessions_groups_differently():
    out = kernels.compute(frame("A", VW_TS, VW_H, VW_L, VW_C, VW_V), ["vwap"])
    # UTC: Mar 7 = bar 0; Mar 8 = bars 1-3: 12, 4600/350, 7900/500
    np.testing.assert_allclose(out["vwap"].to_numpy(), [10.0, 12.0, 4600 / 350, 15.8], rtol=1e-15)


def test_vwap_per_symbol_time_zones():
    f = pl.concat(
        [
            frame("NY", VW_TS, VW_H, VW_L, VW_C, VW_V),
            frame("LDN", VW_TS, VW_H, VW_L, VW_C, VW_V),
        ]
    )
    out = kernels.compute(f, ["vwap"], session_tz={"NY": "America/New_York"})
    by = {s: out.filter(pl.col("symbol") == s)["vwap"].to_numpy() for s in ("NY", "LDN")}
    np.testing.assert_allclose(by["NY"], [10.0, 11.5, 20.0, 21.5], rtol=1e-15)
    np.testing.assert_allclose(by["LDN"], [10.0, 12.0, 4600 / 350, 15.8], rtol=1e-15)  # UTC


def test_vwap_is_nan_until_volume_and_skips_nan_bars():
    h = np.array([11.0, 13, 15, 17, 19])
    lo = np.array([9.0, 11, 13, 15, 17])
    c = np.array([10.0, 12, 14, 16, 18])  # typical prices 10, 12, 14, 16, 18
    v = np.array([0.0, 0, 100, NAN, 300])
    got = vwap(h, lo, c, v, np.zeros(5, np.int64))
    # no volume yet -> NaN; bar 3 (NaN volume) adds nothing and shows the VWAP so far
    np.testing.assert_allclose(got, [NAN, NAN, 14.0, 14.0, (1400 + 5400) / 400], rtol=1e-15)


def test_vwap_of_daily_bars_is_the_typical_price():
    rng = np.random.default_rng(2)
    n = 50
    c = 100 + rng.normal(0, 1, n).cumsum()
    h, lo = c + 1, c - 1
    ts = [us(2024, 1, 1) + d * 86_400_000_000 for d in range(n)]
    out = kernels.compute(frame("A", ts, h, lo, c, rng.integers(1, 100, n)), ["vwap"])
    np.testing.assert_allclose(out["vwap"].to_numpy(), (h + lo + c) / 3, rtol=1e-14)


# ---------------------------------------------------------------- pivots --------------------

PIVOT_NAMES = ["pivot_p", "pivot_r1", "pivot_r2", "pivot_r3", "pivot_s1", "pivot_s2", "pivot_s3"]


def test_daily_pivots_from_the_previous_bar():
    ts = [us(2024, 1, 2), us(2024, 1, 3), us(2024, 1, 4)]
    out = kernels.compute(
        frame("A", ts, [110, 121, 130], [90, 100, 95], [100, 118, 99]), ["pivots"]
    )
    got = out.select(PIVOT_NAMES).to_numpy()
    # day 2 from H=110 L=90 C=100: P=100, R1=110, R2=120, R3=130, S1=90, S2=80, S3=70
    # day 3 from H=121 L=100 C=118: P=113, R1=126, R2=134, R3=147, S1=105, S2=92, S3=84
    expected = np.array(
        [
            [NAN] * 7,
            [100, 110, 120, 130, 90, 80, 70],
            [113, 126, 134, 147, 105, 92, 84],
        ]
    )
    np.testing.assert_array_equal(got, expected)


def test_intraday_pivots_aggregate_the_previous_local_session():
    # New York session Mar 7 = 3 bars (the last at 00:30 UTC Mar 8), then 2 bars on Mar 8
    ts = [
        us(2024, 3, 7, 15),
        us(2024, 3, 7, 19),
        us(2024, 3, 8, 0, 30),
        us(2024, 3, 8, 15),
        us(2024, 3, 8, 16),
    ]
    h = [10, 12, 11, 20, 21]
    lo = [8, 9, 7, 18, 19]
    c = [9, 10, 11, 19, 20]
    out = kernels.compute(frame("A", ts, h, lo, c), ["pivots"], session_tz="America/New_York")
    got = out.select(PIVOT_NAMES).to_numpy()
    # Mar 7: H=12, L=7, C=11 -> P=10, R1=13, R2=15, R3=18, S1=8, S2=5, S3=3
    row = [10, 13, 15, 18, 8, 5, 3]
    np.testing.assert_array_equal(got, np.array([[NAN] * 7] * 3 + [row, row]))
    # with UTC sessions the 00:30 bar opens Mar 8, so Mar 8's levels come from bars 0-1 only:
    # H=12, L=8, C=10 -> P=10, R1=12, R2=14, R3=16, S1=8, S2=6, S3=4
    out = kernels.compute(frame("A", ts, h, lo, c), ["pivots"])
    got = out.select(PIVOT_NAMES).to_numpy()
    row = [10, 12, 14, 16, 8, 6, 4]
    np.testing.assert_array_equal(got, np.array([[NAN] * 7] * 2 + [row] * 3))


def test_pivots_skip_nan_values_inside_a_session():
    sess = np.array([0, 0, 0, 1], np.int64)
    h = np.array([10.0, NAN, 12.0, 5.0])
    lo = np.array([8.0, 7.0, NAN, 5.0])
    c = np.array([9.0, 10.0, NAN, 5.0])
    got = pivots(h, lo, c, sess)[:, 3]
    # H=12, L=7, C=10 (last valid close): P=29/3
    p = 29 / 3
    np.testing.assert_allclose(
        got, [p, 2 * p - 7, p + 5, 12 + 2 * (p - 7), 2 * p - 12, p - 5, 7 - 2 * (12 - p)]
    )


# ---------------------------------------------------------------- Fibonacci -----------------


def test_fib_hand_case():
    h = np.array([10.0, 12, 11, 15, 14])
    lo = np.array([8.0, 9, 7, 10, 12])
    got = fib(h, lo, 3)  # rows: levels 0, 236, 382, 500, 618, 786, 1000
    # row 2: H=12, L=7, range 5; rows 3 and 4: H=15, L=7, range 8
    expected = np.array(
        [
            [NAN, NAN, 12, 15, 15],
            [NAN, NAN, 10.82, 13.112, 13.112],
            [NAN, NAN, 10.09, 11.944, 11.944],
            [NAN, NAN, 9.5, 11, 11],
            [NAN, NAN, 8.91, 10.056, 10.056],
            [NAN, NAN, 8.07, 8.712, 8.712],
            [NAN, NAN, 7, 7, 7],
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=1e-14)
    ts = [us(2024, 1, d) for d in range(1, 6)]
    out = kernels.compute(frame("A", ts, h, lo, (h + lo) / 2), ["fib(3)"])
    cols = [f"fib_3_{k}" for k in (0, 236, 382, 500, 618, 786, 1000)]
    np.testing.assert_allclose(out.select(cols).to_numpy().T, expected, rtol=1e-15, atol=1e-14)


@pytest.mark.parametrize("window", [1, 2, 3, 7, 100, 999])
def test_fib_matches_a_brute_force_rolling_window(window):
    rng = np.random.default_rng(window)
    n = 1000
    h = 100 + rng.normal(0, 1, n).cumsum()
    lo = h - rng.uniform(0, 2, n)
    h[[50, 51, 400]] = NAN
    lo[700] = NAN
    got = fib(h, lo, window)
    for i in range(n):
        if i < window - 1:
            assert np.isnan(got[:, i]).all()
            continue
        hh = h[i - window + 1 : i + 1].max()  # NaN if the window holds a NaN
        ll = lo[i - window + 1 : i + 1].min()
        if np.isnan(hh) or np.isnan(ll):
            assert np.isnan(got[:, i]).all(), i
            continue
        want = [hh - k / 1000 * (hh - ll) for k in (0, 236, 382, 500, 618, 786, 1000)]
        np.testing.assert_allclose(got[:, i], want, rtol=1e-15, atol=1e-13)
        assert got[0, i] == hh and got[6, i] == ll  # levels 0 and 1000 are exact


# ---------------------------------------------------------------- sessions ------------------


@pytest.mark.parametrize(
    "tz", ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe"]
)
def test_session_ids_match_polars_local_dates(tz):
    # hourly + odd-minute timestamps across several DST changes
    ts = np.arange(us(2022, 1, 1), us(2024, 12, 31), 3_600_000_000 + 17 * 60_000_000)
    got = session_ids(ts, tz)
    want = (
        pl.Series(ts)
        .cast(pl.Datetime("us", "UTC"))
        .dt.convert_time_zone(tz)
        .dt.date()
        .to_physical()
        .to_numpy()
    )
    np.testing.assert_array_equal(got, want)


def test_session_ids_for_nanosecond_timestamps_through_compute():
    ts_ns = np.array(VW_TS, dtype=np.int64) * 1000
    f = frame("A", VW_TS, VW_H, VW_L, VW_C, VW_V).with_columns(
        pl.Series("ts", ts_ns).cast(pl.Datetime("ns", "UTC"))
    )
    out = kernels.compute(f, ["vwap"], session_tz="America/New_York")
    np.testing.assert_allclose(out["vwap"].to_numpy(), [10.0, 11.5, 20.0, 21.5], rtol=1e-15)


def test_unknown_time_zone_is_rejected():
    with pytest.raises(ValueError, match="unknown time zone"):
        kernels.compute(frame("A", VW_TS, VW_H, VW_L, VW_C), ["vwap"], session_tz="Mars/Base")
