"""Volatility: Bollinger Bands and ATR (TA-Lib replicas) and Supertrend (built on that ATR).

* BBANDS(n, k) = ``talib.BBANDS(x, n, k, k, matype=0)``: middle = SMA(n) (running sum);
  population standard deviation from TA-Lib's cancellation-free running variance of the data
  shifted by a reference value, re-centred on the window mean every ``32 n`` rows or when
  cancellation threatens (variance tiny against the mean square), with TA-Lib's floor to 0;
  upper/lower = middle +/- k * sd. First row ``n - 1``.
* ATR(n) = ``talib.ATR``: true range ``max(h - l, |h - c[-1]|, |l - c[-1]|)`` (TA-Lib's
  comparison order, so a NaN previous close is ignored), first ATR = mean of the ``n`` true
  ranges of rows ``1..n``, then Wilder smoothing ``atr = fma(b, atr, a * tr)`` with
  ``b = (n - 1) / n``, ``a = 1 - b``; first value at row ``n`` (``n = 1``: the plain true range
  from row 1, as TA-Lib).
* Supertrend(n, m) -- Olivier Seban's Supertrend, in the form of TradingView's
  ``ta.supertrend`` (Pine Script v5 reference), with the ATR above (Wilder, TA-Lib seeded)::

      hl2 = (h + l) / 2;  basic_upper = hl2 + m * atr;  basic_lower = hl2 - m * atr
      final_upper = basic_upper if basic_upper < final_upper[-1] or close[-1] > final_upper[-1]
                    else final_upper[-1]
      final_lower = basic_lower if basic_lower > final_lower[-1] or close[-1] < final_lower[-1]
                    else final_lower[-1]
      direction: first valid bar (row n) = -1 (downtrend; TradingView starts every series in
                 its "down" state); afterwards, from a downtrend the direction becomes +1 when
                 close > final_upper, from an uptrend it becomes -1 when close < final_lower
      supertrend = final_lower if direction == +1 else final_upper

  On the first valid bar the final bands equal the basic bands. ``supertrend_dir`` is +1.0
  (uptrend) / -1.0 (downtrend); TradingView's own sign is the opposite (-1 = up). Both outputs
  are NaN during the ATR warm-up and wherever ATR or hl2 is NaN (with TA-Lib's ATR a NaN high or
  low makes every later ATR NaN); a NaN close fails every comparison, so the bands and the
  direction are carried over that bar.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels._common import JIT, NAN, div_rn, fill_nan, first_valid, first_valid3, fma, true_range


@njit(**JIT)
def bbands_into(x, period, k, out_upper, out_middle, out_lower):
    """Bollinger Bands (SMA middle, population sd, symmetric ``k``) into the three outputs."""
    n = x.shape[0]
    if n == 0:
        return
    b = first_valid(x)
    lb = period - 1
    first = b + lb
    if first >= n:
        fill_nan(out_upper, 0, n)
        fill_nan(out_middle, 0, n)
        fill_nan(out_lower, 0, n)
        return
    fill_nan(out_upper, 0, first)
    fill_nan(out_middle, 0, first)
    fill_nan(out_lower, 0, first)
    inv = 1.0 / period
    p = float(period)
    trailing = b
    shift = x[b]
    ma = 0.0
    v1 = 0.0
    v2 = 0.0
    for j in range(b, first):
        ma += x[j]
        t = x[j] - shift
        v1 += t
        v2 += t * t
    reseed_every = 32 * period
    left = reseed_every
    for i in range(first, n):
        xi = x[i]
        ma += xi
        t = xi - shift
        v1 += t
        v2 += t * t
        m1 = v1 * inv
        var = v2 * inv - m1 * m1
        mid = div_rn(ma, p, inv)  # == ma / period
        old = x[trailing]
        ma -= old
        t = old - shift
        v1 -= t
        t = t * t
        v2 -= t
        trailing += 1
        left -= 1
        if var < 0.000001 * (v2 * inv) or t > 1000000.0 * v2 or left <= 0:
            # TA-Lib's reseed: re-centre on the window mean and rebuild both sums
            left = reseed_every
            ws = i - lb
            t = 0.0
            for j in range(ws, i + 1):
                t += x[j]
            shift = t * inv
            v1 = 0.0
            v2 = 0.0
            for j in range(ws, i + 1):
                t = x[j] - shift
                v1 += t
                v2 += t * t
            m1 = v1 * inv
            var = v2 * inv - m1 * m1
            if var < 0.000000000001 * (v2 * inv):
                var = 0.0
            t = x[ws] - shift
            v1 -= t
            v2 -= t * t
        sd = (math.sqrt(var) if var != 0.0 else 0.0) * k
        out_middle[i] = mid
        out_upper[i] = mid + sd
        out_lower[i] = mid - sd


@njit(**JIT)
def atr_into(high, low, close, period, out):
    """Wilder ATR (TA-Lib seeding) into ``out``; NaN for the first ``period`` rows."""
    n = close.shape[0]
    if n == 0:
        return
    b = first_valid3(high, low, close)
    first = b + period
    if first >= n:
        fill_nan(out, 0, n)
        return
    fill_nan(out, 0, first)
    if period <= 1:
        for i in range(first, n):
            out[i] = true_range(high[i], low[i], close[i - 1])
        return
    total = 0.0
    for i in range(b + 1, first + 1):
        total += true_range(high[i], low[i], close[i - 1])
    prev = total / period
    out[first] = prev
    beta = (period - 1) / period
    alpha = 1.0 - beta
    for i in range(first + 1, n):
        prev = fma(beta, prev, alpha * true_range(high[i], low[i], close[i - 1]))
        out[i] = prev


@njit(**JIT)
def supertrend_into(high, low, close, period, mult, out_st, out_dir):
    """Supertrend line and direction (+1 up / -1 down) into ``out_st`` / ``out_dir``."""
    n = close.shape[0]
    if n == 0:
        return
    atr_into(high, low, close, period, out_st)  # out_st doubles as the ATR buffer
    started = False
    up = False
    fu = 0.0
    fl = 0.0
    prev_close = 0.0
    for i in range(n):
        a = out_st[i]
        hl2 = (high[i] + low[i]) / 2.0
        bu = hl2 + mult * a
        bl = hl2 - mult * a
        if bu != bu or bl != bl:
            out_st[i] = NAN
            out_dir[i] = NAN
            continue
        c = close[i]
        if not started:
            started = True
            fu = bu
            fl = bl
            up = False
        else:
            if bu < fu or prev_close > fu:
                fu = bu
            if bl > fl or prev_close < fl:
                fl = bl
            if up:
                if c < fl:
                    up = False
            elif c > fu:
                up = True
        prev_close = c
        if up:
            out_st[i] = fl
            out_dir[i] = 1.0
        else:
            out_st[i] = fu
            out_dir[i] = -1.0


@njit(**JIT)
def bbands(x, period, k):
    """``(upper, middle, lower)`` as new arrays."""
    n = x.shape[0]
    u = np.empty(n, np.float64)
    m = np.empty(n, np.float64)
    lo = np.empty(n, np.float64)
    bbands_into(x, period, k, u, m, lo)
    return u, m, lo


@njit(**JIT)
def atr(high, low, close, period):
    """ATR as a new array."""
    out = np.empty(close.shape[0], np.float64)
    atr_into(high, low, close, period, out)
    return out


@njit(**JIT)
def supertrend(high, low, close, period, mult):
    """``(supertrend, direction)`` as new arrays."""
    n = close.shape[0]
    st = np.empty(n, np.float64)
    d = np.empty(n, np.float64)
    supertrend_into(high, low, close, period, mult, st, d)
    return st, d


__all__ = ["atr", "atr_into", "bbands", "bbands_into", "supertrend", "supertrend_into"]
