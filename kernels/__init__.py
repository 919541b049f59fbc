"""Technical-indicator kernels: numba over numpy float64 arrays, plus a polars adapter.

Where TA-Lib defines an indicator (SMA, EMA, RSI, MACD, BBANDS, ATR, ADX, +DI, -DI, OBV) the
kernels replicate its C arithmetic, seeding, warm-up NaNs and its Python wrapper's skipping of
leading NaNs, so the values equal ``talib``'s. Supertrend, session VWAP, classic pivots and
rolling Fibonacci levels document their formulas and sources in their modules.

Public API::

    compute(frame, indicators=None, *, session_tz=None) -> pl.DataFrame
    parse(spec) -> IndicatorSpec          # "macd(12, 26, 9)" -> IndicatorSpec("macd", (12, 26, 9))
    output_columns(indicators=None) -> list[str]
    warmup(indicators=None) -> int
    DEFAULT_INDICATORS, IndicatorSpecError

Kernel modules (each kernel ``f_into(inputs..., params..., outs...)`` writes into preallocated
arrays; ``f(...)`` returns new ones): ``moving`` (sma, ema), ``momentum`` (rsi, macd),
``volatility`` (bbands, atr, supertrend), ``trend`` (adx/+di/-di), ``volume`` (obv, vwap),
``levels`` (pivots, fib), ``sessions`` (local-date session ids).

Numba caches compiled code next to the modules (``cache=True``); the cache of the parallel driver
is not invalidated by edits to the kernel modules it calls, so delete ``kernels/__pycache__``
after changing a kernel.
"""

from kernels.adapter import compute
from kernels.registry import (
    DEFAULT_INDICATORS,
    IndicatorSpec,
    IndicatorSpecError,
    output_columns,
    parse,
    warmup,
)

__all__ = [
    "DEFAULT_INDICATORS",
    "IndicatorSpec",
    "IndicatorSpecError",
    "compute",
    "output_columns",
    "parse",
    "warmup",
]
