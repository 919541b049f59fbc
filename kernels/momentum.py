"""Momentum: RSI and MACD, replicas of TA-Lib's ``TA_RSI`` and ``TA_MACD``.

* RSI(n) (Wilder): with ``gain = max(change, 0)`` and ``loss = gain - change``, the averages
  are seeded with the plain mean of the first ``n`` changes, then
  ``avg = (avg * (n - 1) + today) * (1 / n)``; ``rsi = 100 * gain / (gain + loss)``, 0 when
  ``gain + loss`` is not > 0. First value at row ``n``. A NaN change poisons the average loss,
  so every later value is 0 -- TA-Lib's output for such input, reproduced as is.
* MACD(fast, slow, signal), TA-Lib alignment: both EMAs start at row ``slow - 1``; the slow one
  is seeded with the SMA of rows ``0..slow-1``, the fast one with the SMA of the ``fast`` rows
  ending at ``slow - 1``. The signal line is the SMA-seeded EMA of the MACD line, stepped as
  ``fma(macd - signal, k, signal)`` like TA-Lib (signal period 1: signal = macd); all three
  outputs (macd, signal, hist = macd - signal) start at row ``slow - 1 + signal - 1``.

Leading NaNs are skipped like the TA-Lib Python wrapper does (see ``kernels._common``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._common import JIT, fill_nan, first_valid, fma


@njit(**JIT)
def rsi_into(x, period, out):
    """Wilder RSI of ``x`` into ``out``; NaN for the first ``period`` rows."""
    n = x.shape[0]
    if n == 0:
        return
    b = first_valid(x)
    first = b + period
    if first >= n:
        fill_nan(out, 0, n)
        return
    fill_nan(out, 0, first)
    inv = 1.0 / period
    m1 = float(period - 1)
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
    for i in range(first + 1, n):
        v = x[i]
        d = v - prev
        prev = v
        g = d if d > 0.0 else 0.0
        loss = (loss * m1 + (g - d)) * inv
        gain = (gain * m1 + g) * inv
        t = gain + loss
        out[i] = 100.0 * (gain / t) if t > 0.0 else 0.0


@njit(**JIT)
def macd_into(x, fast, slow, signal, out_macd, out_signal, out_hist):
    """TA-Lib MACD line, signal and histogram of ``x``; NaN for ``slow - 1 + signal - 1`` rows."""
    n = x.shape[0]
    if n == 0:
        return
    b = first_valid(x)
    line0 = b + slow - 1  # first row of both EMAs / the (internal) MACD line
    first = line0 + signal - 1  # first output row
    if first >= n:
        fill_nan(out_macd, 0, n)
        fill_nan(out_signal, 0, n)
        fill_nan(out_hist, 0, n)
        return
    ks = 2.0 / (slow + 1)
    kf = 2.0 / (fast + 1)
    kg = 2.0 / (signal + 1)
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
    # MACD line over the signal's seed window (kept in a local sum; outputs there stay NaN)
    for i in range(line0 + 1, first + 1):
        v = x[i]
        slow_ema = (v - slow_ema) * ks + slow_ema
        fast_ema = (v - fast_ema) * kf + fast_ema
        line = fast_ema - slow_ema
        sig_total += line
    sig = sig_total / signal
    fill_nan(out_macd, 0, first)
    fill_nan(out_signal, 0, first)
    fill_nan(out_hist, 0, first)
    out_macd[first] = line
    out_signal[first] = sig
    out_hist[first] = line - sig
    for i in range(first + 1, n):
        v = x[i]
        slow_ema = (v - slow_ema) * ks + slow_ema
        fast_ema = (v - fast_ema) * kf + fast_ema
        line = fast_ema - slow_ema
        sig = line if signal == 1 else fma(line - sig, kg, sig)
        out_macd[i] = line
        out_signal[i] = sig
        out_hist[i] = line - sig


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


__all__ = ["macd", "macd_into", "rsi", "rsi_into"]
