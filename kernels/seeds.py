"""EMA, ATR and OBV continued from a stored value: the compiled loops of ``kernels.resume``.

Each runs the very step the full computation runs (``_ema_run``, ``_atr_run``, ``_obv_run``)
from the value stored one row before, so the rows equal a full recompute's bit for bit.
"""

from __future__ import annotations

from numba import njit

from marketlake.kernels._common import JIT
from marketlake.kernels.moving import _ema_run
from marketlake.kernels.volatility import _atr_run
from marketlake.kernels.volume import _obv_run


@njit(**JIT)
def ema_resume(x, starts, stops, seeds, period, out):
    """EMA rows ``starts[j]:stops[j]`` of each series from ``seeds[j]``, its value one row
    before."""
    k = 2.0 / (period + 1)
    for j in range(starts.shape[0]):
        if period == 1:
            for i in range(starts[j], stops[j]):
                out[i] = x[i]
        else:
            _ema_run(x, out, starts[j], stops[j], seeds[j], k)


@njit(**JIT)
def atr_resume(high, low, close, starts, stops, seeds, period, out):
    """ATR rows ``starts[j]:stops[j]`` from ``seeds[j]`` (``starts[j] >= 1``: the true range
    needs the previous close)."""
    beta = (period - 1) / period
    for j in range(starts.shape[0]):
        _atr_run(high, low, close, out, starts[j], stops[j], seeds[j], 1.0 - beta, beta)


@njit(**JIT)
def obv_resume(close, volume, starts, stops, seeds, out):
    """OBV rows ``starts[j]:stops[j]`` from ``seeds[j]`` and the previous close."""
    for j in range(starts.shape[0]):
        s = starts[j]
        _obv_run(close, volume, out, s, stops[j], seeds[j], close[s - 1])


__all__ = ["atr_resume", "ema_resume", "obv_resume"]
