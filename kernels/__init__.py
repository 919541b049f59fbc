"""Technical-indicator kernels: numba over numpy float64 arrays, plus a polars adapter.

Where TA-Lib defines an indicator (SMA, EMA, RSI, MACD, BBANDS, ATR, ADX, +DI, -DI, OBV) the
kernels replicate its C arithmetic, seeding, warm-up NaNs and its Python wrapper's skipping of
leading NaNs, so the values equal ``talib``'s (bit for bit with the TA-Lib 0.8 C library linked
here; the tested contract is identical NaN positions and a relative difference <= 1e-9).
Supertrend, session VWAP, classic pivots and rolling Fibonacci levels document their formulas
and sources in their modules.

Public API::

    compute(frame, indicators=None, *, session_tz=None) -> pl.DataFrame
    parse(spec) -> IndicatorSpec          # "macd(12, 26, 9)" -> IndicatorSpec("macd", (12, 26, 9))
    output_columns(indicators=None) -> list[str]
    warmup(indicators=None) -> int
    DEFAULT_INDICATORS, IndicatorSpecError

Kernel modules (each kernel ``f_into(inputs..., params..., outs...)`` writes into preallocated
arrays; ``f(...)`` returns new ones): ``moving`` (sma, ema), ``momentum`` (rsi, macd),
``volatility`` (bbands, atr, supertrend), ``trend`` (adx/+di/-di), ``volume`` (obv, vwap),
``levels`` (pivots, fib), ``sessions`` (local-date session ids); the polars side is
``adapter`` (sorting, output-block recycling) and ``driver`` (the parallel numba driver).

Numba caches compiled code next to the modules (``cache=True``); since numba only watches each
function's own file, ``kernels._cache`` drops the whole package cache whenever any kernel
source changed, once per process before the first ``compute`` (importing writes nothing).
Building the package fills that cache (``kernels._cache.precompile``), so a fresh install does
not compile on its first run, and importing the package loads that cache in the background
(``kernels._cache.preload``; off when ``marketlake.PRELOAD_KERNELS`` is false, as the
pipeline sets it). ``compute`` (and with it polars) is imported on first use, so the build
step needs numba and numpy only. Calls of up to ``kernels.aot.SERIAL_ROWS`` bars run on the
entry points compiled ahead of time at build time (``kernels.aot``): no numba loaded at all.
Modules without numba: ``registry``, ``plan`` (op codes, groups), ``zones`` (UTC offset
tables), ``signatures`` (the entry points' argument types), ``resume``, ``aot``, ``adapter``,
``_cache`` (they import it on first use).
"""

import marketlake as _root
from marketlake.kernels._openmp import limit_spin

limit_spin()  # before numba loads the OpenMP runtime (see kernels._openmp)

from marketlake.kernels._cache import preload  # noqa: E402
from marketlake.kernels.registry import (  # noqa: E402
    DEFAULT_INDICATORS,
    IndicatorSpec,
    IndicatorSpecError,
    output_columns,
    parse,
    warmup,
)

_preloading = preload() if _root.PRELOAD_KERNELS else None


def __getattr__(name: str):
    if name == "compute":
        from marketlake.kernels.adapter import compute

        return compute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_INDICATORS",
    "IndicatorSpec",
    "IndicatorSpecError",
    "compute",
    "output_columns",
    "parse",
    "preload",
    "warmup",
]
