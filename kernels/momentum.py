"""Momentum: RSI and MACD, replicas of TA-Lib's ``TA_RSI`` and ``TA_MACD``.

* RSI(n) (Wilder): with ``gain = max(change, 0)`` and ``loss = gain - change``, the averages
  are seeded with the plain mean of the first ``n`` changes, then
  ``avg = (avg * (n - 1) + today) * (1 / n)``; ``rsi = 100 * gain / (gain + loss)``, 0 when
  ``gain + loss`` is not > 0. First value at row ``n``. A NaN change poisons the average loss,
  so every later value is 0 -- TA-Lib's output for such input, reproduced as is.
* MACD(fast, slow, signal), TA-Lib alignment: both EMAs (stepped ``fma(x - ema, k, ema)`` as
  TA-Lib's EMA) start at row ``slow - 1``; the slow one
  is seeded with the SMA of rows ``0..slow-1``, the fast one with the SMA of the ``fast`` rows
  ending at ``slow - 1``. The signal line is the SMA-seeded EMA of the MACD line, stepped as
  ``fma(macd - signal, k, signal)`` like TA-Lib (signal period 1: signal = macd); all three
  outputs (macd, signal, hist = macd - signal) start at row ``slow - 1 + signal - 1``.

Leading NaNs are skipped like the TA-Lib Python wrapper does (see ``kernels._common``); seeds,
steps and four-series ``*_lanes`` variants as explained in ``kernels.moving``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from marketlake.kernels._common import JIT, STEP, fill_nan, first_valid, fma, ix


@njit(**JIT)
def _rsi_seed(x, lo, hi, period, out):
    """Warm-up of x[lo:hi] and the first RSI. Returns ``(gain, loss, prev, i)``."""
    if hi <= lo:
        return 0.0, 0.0, 0.0, hi
    b = lo + first_valid(x[lo:hi])
    first = b + period
    if first >= hi:
        fill_nan(out, lo, hi)
        return 0.0, 0.0, 0.0, hi
    fill_nan(out, lo, first)
    inv = 1.0 / period
    prev = x[b]
    gain = 0.0
    loss = 0.0
    for i in range(b + 1, first + 1):
        v = x[i]
        d = v - prev
        prev = v
        g = d if d > 0.0 else 0.0
        gain += g
        loss += g - d
    loss *= inv
    gain *= inv
    t = gain + loss
    out[first] = 100.0 * (gain / t) if t > 0.0 else 0.0
    return gain, loss, prev, first + 1


@njit(**STEP)
def _rsi_step(gain, loss, prev, v, m1, inv):
    d = v - prev
    g = d if d > 0.0 else 0.0
    loss = (loss * m1 + (g - d)) * inv
    gain = (gain * m1 + g) * inv
    t = gain + loss
    return gain, loss, v, (100.0 * (gain / t) if t > 0.0 else 0.0)


@njit(**JIT)
def _rsi_run(x, out, start, stop, gain, loss, prev, m1, inv):
    for i in range(start, stop):
        gain, loss, prev, out[ix(i)] = _rsi_step(gain, loss, prev, x[ix(i)], m1, inv)


@njit(**JIT)
def rsi_into(x, period, out):
    """Wilder RSI of ``x`` into ``out``; NaN for the first ``period`` rows."""
    n = x.shape[0]
    g, lo, pv, i0 = _rsi_seed(x, 0, n, period, out)
    _rsi_run(x, out, i0, n, g, lo, pv, float(period - 1), 1.0 / period)


@njit(**JIT)
def rsi_lanes(x, period, out, lo, hi):
    """RSI of the four series ``x[lo[j]:hi[j]]`` (see ``kernels.moving`` on lanes)."""
    m1 = float(period - 1)
    inv = 1.0 / period
    g0, l0, p0, a0 = _rsi_seed(x, lo[0], hi[0], period, out)
    g1, l1, p1, a1 = _rsi_seed(x, lo[1], hi[1], period, out)
    g2, l2, p2, a2 = _rsi_seed(x, lo[2], hi[2], period, out)
    g3, l3, p3, a3 = _rsi_seed(x, lo[3], hi[3], period, out)
    m = min(hi[0] - a0, hi[1] - a1, hi[2] - a2, hi[3] - a3)
    for k in range(m):
        g0, l0, p0, out[ix(a0 + k)] = _rsi_step(g0, l0, p0, x[ix(a0 + k)], m1, inv)
        g1, l1, p1, out[ix(a1 + k)] = _rsi_step(g1, l1, p1, x[ix(a1 + k)], m1, inv)
        g2, l2, p2, out[ix(a2 + k)] = _rsi_step(g2, l2, p2, x[ix(a2 + k)], m1, inv)
        g3, l3, p3, out[ix(a3 + k)] = _rsi_step(g3, l3, p3, x[ix(a3 + k)], m1, inv)
    _rsi_run(x, out, a0 + m, hi[0], g0, l0, p0, m1, inv)
    _rsi_run(x, out, a1 + m, hi[1], g1, l1, p1, m1, inv)
    _rsi_run(x, out, a2 + m, hi[2], g2, l2, p2, m1, inv)
    _rsi_run(x, out, a3 + m, hi[3], g3, l3, p3, m1, inv)


@njit(**JIT)
def _macd_seed(x, lo, hi, fast, slow, signal, out_macd, out_signal, out_hist):
    """Warm-up of x[lo:hi] up to and including the first output row.

    Returns ``(slow_ema, fast_ema, signal_ema, i)``."""
    if hi <= lo:
        return 0.0, 0.0, 0.0, hi
    b = lo + first_valid(x[lo:hi])
    line0 = b + slow - 1  # first row of both EMAs / the (internal) MACD line
    first = line0 + signal - 1  # first output row
    if first >= hi:
        fill_nan(out_macd, lo, hi)
        fill_nan(out_signal, lo, hi)
        fill_nan(out_hist, lo, hi)
        return 0.0, 0.0, 0.0, hi
    ks = 2.0 / (slow + 1)
    kf = 2.0 / (fast + 1)
    total = 0.0
    for i in range(b, line0 + 1):
        total += x[i]
    slow_ema = total / slow
    total = 0.0
    for i in range(line0 - fast + 1, line0 + 1):
        total += x[i]
    fast_ema = total / fast
    line = fast_ema - slow_ema
    sig_total = line
    # MACD line over the signal's seed window (summed here; outputs there stay NaN)
    for i in range(line0 + 1, first + 1):
        v = x[i]
        slow_ema = fma(v - slow_ema, ks, slow_ema)
        fast_ema = fma(v - fast_ema, kf, fast_ema)
        line = fast_ema - slow_ema
        sig_total += line
    sig = sig_total / signal
    fill_nan(out_macd, lo, first)
    fill_nan(out_signal, lo, first)
    fill_nan(out_hist, lo, first)
    out_macd[first] = line
    out_signal[first] = sig
    out_hist[first] = line - sig
    return slow_ema, fast_ema, sig, first + 1


@njit(**STEP)
def _macd_step(se, fe, sg, v, ks, kf, kg, copy_signal):
    se = fma(v - se, ks, se)
    fe = fma(v - fe, kf, fe)
    line = fe - se
    sg = line if copy_signal else fma(line - sg, kg, sg)
    return se, fe, sg, line


@njit(**JIT)
def _macd_run(x, om, osg, oh, start, stop, se, fe, sg, ks, kf, kg, cs):
    for i in range(start, stop):
        se, fe, sg, line = _macd_step(se, fe, sg, x[ix(i)], ks, kf, kg, cs)
        om[ix(i)] = line
        osg[ix(i)] = sg
        oh[ix(i)] = line - sg


@njit(**JIT)
def macd_into(x, fast, slow, signal, out_macd, out_signal, out_hist):
    """TA-Lib MACD line, signal and histogram of ``x``; NaN for ``slow - 1 + signal - 1`` rows."""
    n = x.shape[0]
    se, fe, sg, i0 = _macd_seed(x, 0, n, fast, slow, signal, out_macd, out_signal, out_hist)
    ks = 2.0 / (slow + 1)
    kf = 2.0 / (fast + 1)
    kg = 2.0 / (signal + 1)
    _macd_run(x, out_macd, out_signal, out_hist, i0, n, se, fe, sg, ks, kf, kg, signal == 1)


@njit(**JIT)
def macd_lanes(x, fast, slow, signal, om, osg, oh, lo, hi):
    """MACD of the four series ``x[lo[j]:hi[j]]`` (see ``kernels.moving`` on lanes)."""
    ks = 2.0 / (slow + 1)
    kf = 2.0 / (fast + 1)
    kg = 2.0 / (signal + 1)
    cs = signal == 1
    s0, f0, g0, a0 = _macd_seed(x, lo[0], hi[0], fast, slow, signal, om, osg, oh)
    s1, f1, g1, a1 = _macd_seed(x, lo[1], hi[1], fast, slow, signal, om, osg, oh)
    s2, f2, g2, a2 = _macd_seed(x, lo[2], hi[2], fast, slow, signal, om, osg, oh)
    s3, f3, g3, a3 = _macd_seed(x, lo[3], hi[3], fast, slow, signal, om, osg, oh)
    m = min(hi[0] - a0, hi[1] - a1, hi[2] - a2, hi[3] - a3)
    for k in range(m):
        i = a0 + k
        s0, f0, g0, ln = _macd_step(s0, f0, g0, x[ix(i)], ks, kf, kg, cs)
        om[ix(i)] = ln
        osg[ix(i)] = g0
        oh[ix(i)] = ln - g0
        i = a1 + k
        s1, f1, g1, ln = _macd_step(s1, f1, g1, x[ix(i)], ks, kf, kg, cs)
        om[ix(i)] = ln
        osg[ix(i)] = g1
        oh[ix(i)] = ln - g1
        i = a2 + k
        s2, f2, g2, ln = _macd_step(s2, f2, g2, x[ix(i)], ks, kf, kg, cs)
        om[ix(i)] = ln
        osg[ix(i)] = g2
        oh[ix(i)] = ln - g2
        i = a3 + k
        s3, f3, g3, ln = _macd_step(s3, f3, g3, x[ix(i)], ks, kf, kg, cs)
        om[ix(i)] = ln
        osg[ix(i)] = g3
        oh[ix(i)] = ln - g3
    _macd_run(x, om, osg, oh, a0 + m, hi[0], s0, f0, g0, ks, kf, kg, cs)
    _macd_run(x, om, osg, oh, a1 + m, hi[1], s1, f1, g1, ks, kf, kg, cs)
    _macd_run(x, om, osg, oh, a2 + m, hi[2], s2, f2, g2, ks, kf, kg, cs)
    _macd_run(x, om, osg, oh, a3 + m, hi[3], s3, f3, g3, ks, kf, kg, cs)


@njit(**JIT)
def rsi(x, period):
    """RSI of ``x`` as a new array."""
    out = np.empty(x.shape[0], np.float64)
    rsi_into(x, period, out)
    return out


@njit(**JIT)
def macd(x, fast, slow, signal):
    """``(macd, signal, hist)`` of ``x`` as new arrays."""
    n = x.shape[0]
    a = np.empty(n, np.float64)
    s = np.empty(n, np.float64)
    h = np.empty(n, np.float64)
    macd_into(x, fast, slow, signal, a, s, h)
    return a, s, h


__all__ = ["macd", "macd_into", "macd_lanes", "rsi", "rsi_into", "rsi_lanes"]
