"""Price levels: classic floor pivots and rolling Fibonacci retracements (neither is in TA-Lib).

* Pivots (classic floor-trader pivots, e.g. Kirkpatrick & Dahlquist, *Technical Analysis*, and
  TradingView's "Pivot Points Standard", type "Traditional"), from the PREVIOUS session's high
  ``H``, low ``L`` and close ``C``::

      P = (H + L + C) / 3
      R1 = 2P - L    S1 = 2P - H
      R2 = P + (H - L)    S2 = P - (H - L)
      R3 = H + 2(P - L)    S3 = L - 2(H - P)

  A session is a run of rows with the same session id (the exchange-local date, from the
  adapter): ``H`` = max high, ``L`` = min low, ``C`` = last close of that session; for daily bars
  that is simply the previous bar. NaN values are skipped in the aggregation (a session with no
  valid high, low or close gives NaN levels for the next one). All levels are NaN in the first
  session.
* Fibonacci retracements over a rolling window of ``N`` bars (current bar included)::

      H = max(high[i-N+1..i]),  L = min(low[i-N+1..i])
      level_k = H - (k / 1000) * (H - L)  for k in 0, 236, 382, 500, 618, 786, 1000 (per mille)

  level_0 is returned as exactly ``H`` and level_1000 as exactly ``L``. NaN for the first
  ``N - 1`` bars and whenever the window holds a NaN high or low. The window extremes use the
  van Herk / Gil-Werman block algorithm: O(1) per bar for any ``N``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from marketlake.kernels._common import JIT, NAN, STEP, fill_nan
from marketlake.kernels.plan import FIB_LEVELS


@njit(**JIT)
def pivots_into(high, low, close, session, out_p, out_r1, out_r2, out_r3, out_s1, out_s2, out_s3):
    """Classic pivots from the previous session's H/L/C into the seven outputs."""
    n = close.shape[0]
    if n == 0:
        return
    cur = session[0]
    sh = NAN
    sl = NAN
    sc = NAN
    p = NAN
    r1 = NAN
    r2 = NAN
    r3 = NAN
    s1 = NAN
    s2 = NAN
    s3 = NAN
    for i in range(n):
        s = session[i]
        if s != cur:
            cur = s
            hh = sh
            ll = sl
            p = (hh + ll + sc) / 3.0
            r1 = 2.0 * p - ll
            s1 = 2.0 * p - hh
            r2 = p + (hh - ll)
            s2 = p - (hh - ll)
            r3 = hh + 2.0 * (p - ll)
            s3 = ll - 2.0 * (hh - p)
            sh = NAN
            sl = NAN
            sc = NAN
        h = high[i]
        lo = low[i]
        c = close[i]
        if h == h and (sh != sh or h > sh):
            sh = h
        if lo == lo and (sl != sl or lo < sl):
            sl = lo
        if c == c:
            sc = c
        out_p[i] = p
        out_r1[i] = r1
        out_r2[i] = r2
        out_r3[i] = r3
        out_s1[i] = s1
        out_s2[i] = s2
        out_s3[i] = s3


@njit(**STEP)
def _nanmax(a, b):
    # NaN-propagating max: NaN if either is NaN
    return a if (a != a or a > b) else b


@njit(**STEP)
def _nanmin(a, b):
    return a if (a != a or a < b) else b


@njit(**JIT)
def fib_into(high, low, period, lv0, r236, r382, r500, r618, r786, lv1000):
    """Fibonacci retracement levels (``FIB_LEVELS`` order) of the rolling ``period`` range."""
    n = high.shape[0]
    if n == 0:
        return
    w = period
    if w > n:
        for a in (lv0, r236, r382, r500, r618, r786, lv1000):
            fill_nan(a, 0, n)
        return
    # forward pass: running max/min within each block of w rows (blocks aligned at row 0),
    # NaN-propagating; lv0 / lv1000 hold the prefix extremes for now
    for bs in range(0, n, w):
        be = min(bs + w, n)
        hh = high[bs]
        ll = low[bs]
        lv0[bs] = hh
        lv1000[bs] = ll
        for i in range(bs + 1, be):
            hh = _nanmax(high[i], hh)
            ll = _nanmin(low[i], ll)
            lv0[i] = hh
            lv1000[i] = ll
    # backward pass: max/min from row i to the end of its block (scratch in r236 / r382)
    for bs in range(0, n, w):
        be = min(bs + w, n)
        hh = high[be - 1]
        ll = low[be - 1]
        r236[be - 1] = hh
        r382[be - 1] = ll
        for i in range(be - 2, bs - 1, -1):
            hh = _nanmax(high[i], hh)
            ll = _nanmin(low[i], ll)
            r236[i] = hh
            r382[i] = ll
    # window [i-w+1, i] = suffix of one block + prefix of the next; walk downwards so the
    # suffix scratch at j = i-w+1 <= i is still intact when read
    jm = (n - w) % w  # position of j = i - w + 1 in its block
    for i in range(n - 1, w - 2, -1):
        j = i - w + 1
        if jm == 0:
            hh = lv0[i]
            ll = lv1000[i]
            jm = w - 1
        else:
            hh = _nanmax(r236[j], lv0[i])
            ll = _nanmin(r382[j], lv1000[i])
            jm -= 1
        rng = hh - ll
        if rng != rng:
            hh = NAN
            ll = NAN
        lv0[i] = hh
        r236[i] = hh - 0.236 * rng
        r382[i] = hh - 0.382 * rng
        r500[i] = hh - 0.5 * rng
        r618[i] = hh - 0.618 * rng
        r786[i] = hh - 0.786 * rng
        lv1000[i] = ll
    for a in (lv0, r236, r382, r500, r618, r786, lv1000):
        fill_nan(a, 0, w - 1)


@njit(**JIT)
def pivots(high, low, close, session):
    """``(p, r1, r2, r3, s1, s2, s3)`` as a 7 x n array."""
    n = close.shape[0]
    out = np.empty((7, n), np.float64)
    pivots_into(high, low, close, session, out[0], out[1], out[2], out[3], out[4], out[5], out[6])
    return out


@njit(**JIT)
def fib(high, low, period):
    """Fibonacci levels (rows in ``FIB_LEVELS`` order) as a 7 x n array."""
    out = np.empty((7, high.shape[0]), np.float64)
    fib_into(high, low, period, out[0], out[1], out[2], out[3], out[4], out[5], out[6])
    return out


__all__ = ["FIB_LEVELS", "fib", "fib_into", "pivots", "pivots_into"]
