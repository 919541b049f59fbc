"""Moving averages: SMA and EMA, replicas of TA-Lib's ``TA_SMA`` and ``TA_EMA``.

Both follow TA-Lib's arithmetic step by step so the results equal ``talib.SMA``/``talib.EMA``
bit for bit (not merely approximately):

* SMA(n): running window sum (add the new value, emit ``sum / n``, subtract the oldest);
  first value at row ``n - 1``. A NaN inside the series poisons the running sum, so every later
  value is NaN, exactly as in TA-Lib.
* EMA(n): ``k = 2 / (n + 1)``, seeded with the SMA of the first ``n`` values (TA-Lib's default
  compatibility mode), then ``ema = fma(x - ema, k, ema)`` (TA-Lib 0.8 fuses that multiply-add);
  first value at row ``n - 1``.
  EMA(1) is a plain copy of the input (as TA-Lib).

Leading NaNs are skipped like the TA-Lib Python wrapper does (see ``kernels._common``).

Every indicator is split into a *seed* (NaN warm-up and the first value) and a *step* (one
row of the steady-state recurrence). ``*_into(x, ..., out)`` runs one series; ``*_lanes``
runs four series (rows ``lo[j]:hi[j]`` of the same arrays) with their steps interleaved in one
loop: a recurrence is bound by the latency of its dependency chain, and four independent chains
keep the core busy (~3x the throughput of one), with bit-identical results.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from marketlake.kernels._common import (
    JIT,
    STEP,
    div_rn,
    fill_nan,
    first_valid,
    fma,
    ix,
    put,
)


@njit(**JIT)
def _sma_seed(x, lo, hi, period, out):
    """Warm-up of x[lo:hi]: NaN-fill, sum of the first window minus its newest value.

    Returns ``(total, trailing, i)``: the next step writes row ``i`` (``i == hi``: no output)."""
    if hi <= lo:
        return 0.0, lo, hi
    b = lo + first_valid(x[lo:hi])
    first = b + period - 1
    if first >= hi:
        fill_nan(out, lo, hi)
        return 0.0, lo, hi
    fill_nan(out, lo, first)
    total = 0.0
    for i in range(b, first):
        total += x[i]
    return total, b, first


@njit(**STEP)
def _sma_step(total, xi, x_old, p, inv):
    total += xi
    tmp = total
    return total - x_old, div_rn(tmp, p, inv)  # == tmp / period, bit for bit


@njit(**JIT)
def _sma_run(x, out, start, stop, total, trailing, p, inv):
    for i in range(start, stop):
        total, out[ix(i)] = _sma_step(total, x[ix(i)], x[ix(trailing)], p, inv)
        trailing += 1


@njit(**JIT)
def sma_into(x, period, out):
    """Simple moving average of ``x`` over ``period`` rows into ``out`` (same length)."""
    n = x.shape[0]
    p = float(period)
    total, tr, i0 = _sma_seed(x, 0, n, period, out)
    _sma_run(x, out, i0, n, total, tr, p, 1.0 / p)


@njit(**JIT)
def sma_lanes(x, period, out, lo, hi):
    """SMA of the four series ``x[lo[j]:hi[j]]`` into the same rows of ``out``."""
    p = float(period)
    inv = 1.0 / p
    t0, r0, a0 = _sma_seed(x, lo[0], hi[0], period, out)
    t1, r1, a1 = _sma_seed(x, lo[1], hi[1], period, out)
    t2, r2, a2 = _sma_seed(x, lo[2], hi[2], period, out)
    t3, r3, a3 = _sma_seed(x, lo[3], hi[3], period, out)
    m = min(hi[0] - a0, hi[1] - a1, hi[2] - a2, hi[3] - a3)
    for k in range(m):
        t0, v = _sma_step(t0, x[ix(a0 + k)], x[ix(r0 + k)], p, inv)
        put(out, ix(a0 + k), v)
        t1, v = _sma_step(t1, x[ix(a1 + k)], x[ix(r1 + k)], p, inv)
        put(out, ix(a1 + k), v)
        t2, v = _sma_step(t2, x[ix(a2 + k)], x[ix(r2 + k)], p, inv)
        put(out, ix(a2 + k), v)
        t3, v = _sma_step(t3, x[ix(a3 + k)], x[ix(r3 + k)], p, inv)
        put(out, ix(a3 + k), v)
    r0 += m
    r1 += m
    r2 += m
    r3 += m
    _sma_run(x, out, a0 + m, hi[0], t0, r0, p, inv)
    _sma_run(x, out, a1 + m, hi[1], t1, r1, p, inv)
    _sma_run(x, out, a2 + m, hi[2], t2, r2, p, inv)
    _sma_run(x, out, a3 + m, hi[3], t3, r3, p, inv)


@njit(**JIT)
def _ema_seed(x, lo, hi, period, out):
    """Warm-up of x[lo:hi] and the SMA seed written at the first output row.

    Returns ``(ema, i)``: the next step writes row ``i``. Period 1 copies the input."""
    if hi <= lo:
        return 0.0, hi
    b = lo + first_valid(x[lo:hi])
    first = b + period - 1
    if first >= hi:
        fill_nan(out, lo, hi)
        return 0.0, hi
    fill_nan(out, lo, first)
    if period == 1:
        for i in range(first, hi):
            out[i] = x[i]
        return 0.0, hi
    total = 0.0
    for i in range(b, first + 1):
        total += x[i]
    prev = total / period
    out[first] = prev
    return prev, first + 1


@njit(**JIT)
def _ema_run(x, out, start, stop, prev, k):
    for i in range(start, stop):
        prev = fma(x[ix(i)] - prev, k, prev)
        out[ix(i)] = prev


@njit(**JIT)
def ema_into(x, period, out):
    """Exponential moving average (SMA-seeded, ``k = 2/(period+1)``) into ``out``."""
    n = x.shape[0]
    prev, i0 = _ema_seed(x, 0, n, period, out)
    _ema_run(x, out, i0, n, prev, 2.0 / (period + 1))


@njit(**JIT)
def ema_lanes(x, period, out, lo, hi):
    """EMA of the four series ``x[lo[j]:hi[j]]`` into the same rows of ``out``."""
    k = 2.0 / (period + 1)
    e0, a0 = _ema_seed(x, lo[0], hi[0], period, out)
    e1, a1 = _ema_seed(x, lo[1], hi[1], period, out)
    e2, a2 = _ema_seed(x, lo[2], hi[2], period, out)
    e3, a3 = _ema_seed(x, lo[3], hi[3], period, out)
    m = min(hi[0] - a0, hi[1] - a1, hi[2] - a2, hi[3] - a3)
    for j in range(m):
        i = a0 + j
        e0 = fma(x[ix(i)] - e0, k, e0)
        put(out, ix(i), e0)
        i = a1 + j
        e1 = fma(x[ix(i)] - e1, k, e1)
        put(out, ix(i), e1)
        i = a2 + j
        e2 = fma(x[ix(i)] - e2, k, e2)
        put(out, ix(i), e2)
        i = a3 + j
        e3 = fma(x[ix(i)] - e3, k, e3)
        put(out, ix(i), e3)
    _ema_run(x, out, a0 + m, hi[0], e0, k)
    _ema_run(x, out, a1 + m, hi[1], e1, k)
    _ema_run(x, out, a2 + m, hi[2], e2, k)
    _ema_run(x, out, a3 + m, hi[3], e3, k)


@njit(**JIT)
def sma(x, period):
    """SMA of ``x`` as a new array (NaN during the ``period - 1`` warm-up rows)."""
    out = np.empty(x.shape[0], np.float64)
    sma_into(x, period, out)
    return out


@njit(**JIT)
def ema(x, period):
    """EMA of ``x`` as a new array (NaN during the ``period - 1`` warm-up rows)."""
    out = np.empty(x.shape[0], np.float64)
    ema_into(x, period, out)
    return out


__all__ = ["ema", "ema_into", "ema_lanes", "sma", "sma_into", "sma_lanes"]
