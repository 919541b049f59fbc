"""Every TA-Lib-defined output equals talib's: same NaN positions, max relative diff <= 1e-9.

Checked through the standalone kernels and through ``kernels.compute`` (per symbol of a long
frame), on recorded Yahoo daily bars, on long random walks with symbols of different lengths
(some shorter than the warm-up), with NaNs inside the inputs, and on flat / tiny / huge prices.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import talib
from kernels_testdata import assert_matches, frame_of, random_walk, yahoo_ohlcv

from marketlake import kernels
from marketlake.kernels.momentum import macd, rsi
from marketlake.kernels.moving import ema, sma
from marketlake.kernels.trend import adx
from marketlake.kernels.volatility import atr, bbands
from marketlake.kernels.volume import obv

DEFAULT_SPECS = [
    "sma(20)",
    "ema(21)",
    "rsi(14)",
    "macd(12,26,9)",
    "bbands(20,2)",
    "atr(14)",
    "adx(14)",
    "obv",
]
OTHER_SPECS = [
    "sma(1)",
    "sma(9)",
    "sma(200)",
    "ema(9)",
    "ema(200)",
    "ema(1)",
    "rsi(2)",
    "rsi(7)",
    "macd(5,35,5)",
    "macd(3,10,1)",
    "bbands(10,1.5)",
    "bbands(2,1)",
    "atr(5)",
    "atr(1)",
    "adx(7)",
    "adx(2)",
]
ALL_SPECS = DEFAULT_SPECS + OTHER_SPECS


def talib_outputs(spec: str, d: dict[str, np.ndarray]) -> list[np.ndarray]:
    """TA-Lib's arrays for ``spec``, in the order of ``kernels.parse(spec).columns``."""
    s = kernels.parse(spec)
    c, h, lo, v = d["close"], d["high"], d["low"], d["volume"]
    p = s.params
    if s.name == "sma":
        return [talib.SMA(c, p[0])]
    if s.name == "ema":
        return [talib.EMA(c, p[0])]
    if s.name == "rsi":
        return [talib.RSI(c, p[0])]
    if s.name == "macd":
        return list(talib.MACD(c, p[0], p[1], p[2]))
    if s.name == "bbands":
        return list(talib.BBANDS(c, p[0], p[1], p[1], 0))
    if s.name == "atr":
        return [talib.ATR(h, lo, c, p[0])]
    if s.name == "adx":
        return [
            talib.ADX(h, lo, c, p[0]),
            talib.PLUS_DI(h, lo, c, p[0]),
            talib.MINUS_DI(h, lo, c, p[0]),
        ]
    if s.name == "obv":
        return [talib.OBV(c, v)]
    raise AssertionError(spec)


def kernel_outputs(spec: str, d: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The standalone kernels' arrays for ``spec``."""
    s = kernels.parse(spec)
    c, h, lo, v = d["close"], d["high"], d["low"], d["volume"]
    p = s.params
    if s.name == "sma":
        return [sma(c, p[0])]
    if s.name == "ema":
        return [ema(c, p[0])]
    if s.name == "rsi":
        return [rsi(c, p[0])]
    if s.name == "macd":
        return list(macd(c, p[0], p[1], p[2]))
    if s.name == "bbands":
        return list(bbands(c, p[0], p[1]))
    if s.name == "atr":
        return [atr(h, lo, c, p[0])]
    if s.name == "adx":
        return list(adx(h, lo, c, p[0]))
    if s.name == "obv":
        return [obv(c, v)]
    raise AssertionError(spec)


def check_kernels(d: dict[str, np.ndarray], specs: list[str], label: str) -> None:
    for spec in specs:
        cols = kernels.parse(spec).columns
        for col, got, want in zip(
            cols, kernel_outputs(spec, d), talib_outputs(spec, d), strict=True
        ):
            assert_matches(got, want, f"{label} {spec} {col}")


def check_compute(series: dict[str, dict[str, np.ndarray]], specs: list[str], label: str) -> None:
    frame = frame_of(series)
    out = kernels.compute(frame, specs)
    for sym, d in series.items():
        part = out.filter(pl.col("symbol") == sym)
        for spec in specs:
            cols = kernels.parse(spec).columns
            for col, want in zip(cols, talib_outputs(spec, d), strict=True):
                assert_matches(part[col].to_numpy(), want, f"{label} {sym} {spec} {col}")


@pytest.mark.parametrize("symbol", ["MSFT", "NVDA"])
def test_recorded_yahoo_bars(symbol):
    d = yahoo_ohlcv(symbol)
    check_kernels(d, ALL_SPECS, symbol)
    check_compute({symbol: d}, ALL_SPECS, symbol)


LENGTHS = [5000, 2520, 777, 200, 33, 26, 14, 5, 1]


@pytest.mark.parametrize("specs", [DEFAULT_SPECS, OTHER_SPECS], ids=["default", "other"])
def test_random_walks_of_several_lengths(specs):
    series = {f"S{n}": random_walk(n, seed=n) for n in LENGTHS}
    check_compute(series, specs, "walk")
    check_kernels(series["S5000"], specs, "walk")


@pytest.mark.parametrize("column", ["close", "high", "low", "volume"])
def test_nan_inside_the_series(column):
    d = random_walk(3000, seed=7)
    d[column][1500] = np.nan  # one NaN in the middle
    d[column][2200:2203] = np.nan  # and a short run
    check_kernels(d, ALL_SPECS, f"NaN in {column}")
    check_compute({"X": d}, ALL_SPECS, f"NaN in {column}")


@pytest.mark.parametrize("column", ["close", "high", "volume"])
def test_leading_nans_are_skipped_like_talib(column):
    d = random_walk(500, seed=11)
    d[column][:7] = np.nan
    check_kernels(d, ALL_SPECS, f"leading NaN in {column}")
    check_compute({"X": d}, ALL_SPECS, f"leading NaN in {column}")


def test_all_nan_series():
    d = random_walk(60, seed=3)
    for k in ("open", "high", "low", "close"):
        d[k][:] = np.nan
    check_kernels(d, ALL_SPECS, "all NaN")
    check_compute({"X": d}, ALL_SPECS, "all NaN")


def _flat(n: int) -> dict[str, np.ndarray]:
    x = np.full(n, 42.0)
    return {"open": x, "high": x.copy(), "low": x.copy(), "close": x.copy(), "volume": x * 10}


@pytest.mark.parametrize(
    "case",
    ["flat", "tiny", "huge", "flat_then_moving", "integer_ticks"],
)
def test_degenerate_and_extreme_prices(case):
    if case == "flat":
        d = _flat(400)
    elif case == "tiny":  # prices ~1e-7: no fixed epsilon may zero the indicators
        d = random_walk(600, seed=5, start=1e-7)
    elif case == "huge":
        d = random_walk(600, seed=6, start=1e7)
    elif case == "flat_then_moving":
        d = _flat(300)
        w = random_walk(300, seed=8, start=42.0)
        d = {k: np.concatenate([d[k], w[k]]) for k in d}
    else:  # coarse ticks: many ties and unchanged closes
        w = random_walk(800, seed=9)
        d = {k: np.round(w[k]) for k in w}
        d["high"] = np.maximum(d["high"], d["close"])
        d["low"] = np.minimum(d["low"], d["close"])
    check_kernels(d, ALL_SPECS, case)
    check_compute({"X": d}, ALL_SPECS, case)


def test_bit_identical_to_talib():
    """Beyond the 1e-9 contract: the kernels replicate the linked TA-Lib (0.8.x) bit for bit."""
    if not talib.__ta_version__.startswith(b"0.8"):
        pytest.skip(f"kernels emulate TA-Lib 0.8.x arithmetic, found {talib.__ta_version__!r}")
    d = random_walk(3000, seed=21)
    for spec in ALL_SPECS:
        for got, want in zip(kernel_outputs(spec, d), talib_outputs(spec, d), strict=True):
            np.testing.assert_array_equal(got, want, err_msg=spec)
