"""Volume: OBV (TA-Lib replica) and session VWAP.

* OBV = ``talib.OBV(close, volume)``: starts at the first volume, then adds the volume on an up
  close, subtracts it on a down close, keeps it on an unchanged close. A NaN close compares
  neither up nor down (OBV carries); a NaN volume on an up/down close makes every later value
  NaN -- both exactly as TA-Lib.
* VWAP (not in TA-Lib): per session, ``vwap = cumsum(tp * volume) / cumsum(volume)`` with the
  typical price ``tp = (high + low + close) / 3`` (the standard definition, e.g. TradingView's
  ``ta.vwap(hlc3)``), restarted whenever the session id changes. The session id is the
  exchange-local calendar date of the bar (computed by the adapter), so daily bars are each their
  own session and their VWAP is their typical price. VWAP is NaN while the session's cumulative
  volume is not > 0. A bar with a NaN high/low/close/volume adds nothing to the sums and shows
  the session's VWAP so far.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from marketlake.kernels._common import JIT, NAN, STEP, fill_nan, first_valid2, ix, put


@njit(**JIT)
def _obv_seed(close, volume, lo, hi, out):
    """Leading-NaN skip of rows lo:hi. Returns ``(obv, prev_close, i)``."""
    if hi <= lo:
        return 0.0, 0.0, hi
    b = lo + first_valid2(close[lo:hi], volume[lo:hi])
    fill_nan(out, lo, b)
    return volume[b], close[b], b


@njit(**STEP)
def _obv_step(obv, prev, c, v):
    # branch-free form of TA-Lib's "up: += v, down: -= v, flat: keep" (x + v - 0.0, x + 0.0 - v
    # and x + 0.0 - 0.0 are exactly those results; a NaN volume only counts on a move)
    return obv + (v if c > prev else 0.0) - (v if c < prev else 0.0), c


@njit(**JIT)
def _obv_run(close, volume, out, start, stop, obv, prev):
    for i in range(start, stop):
        obv, prev = _obv_step(obv, prev, close[ix(i)], volume[ix(i)])
        out[ix(i)] = obv


@njit(**JIT)
def obv_into(close, volume, out):
    """On-balance volume (TA-Lib) into ``out``."""
    obv, prev, i0 = _obv_seed(close, volume, 0, close.shape[0], out)
    _obv_run(close, volume, out, i0, close.shape[0], obv, prev)


@njit(**JIT)
def obv_lanes(close, volume, out, lo, hi):
    """OBV of the four series in rows ``lo[j]:hi[j]`` (see ``kernels.moving`` on lanes)."""
    o0, p0, a0 = _obv_seed(close, volume, lo[0], hi[0], out)
    o1, p1, a1 = _obv_seed(close, volume, lo[1], hi[1], out)
    o2, p2, a2 = _obv_seed(close, volume, lo[2], hi[2], out)
    o3, p3, a3 = _obv_seed(close, volume, lo[3], hi[3], out)
    m = min(hi[0] - a0, hi[1] - a1, hi[2] - a2, hi[3] - a3)
    for j in range(m):
        o0, p0 = _obv_step(o0, p0, close[ix(a0 + j)], volume[ix(a0 + j)])
        put(out, ix(a0 + j), o0)
        o1, p1 = _obv_step(o1, p1, close[ix(a1 + j)], volume[ix(a1 + j)])
        put(out, ix(a1 + j), o1)
        o2, p2 = _obv_step(o2, p2, close[ix(a2 + j)], volume[ix(a2 + j)])
        put(out, ix(a2 + j), o2)
        o3, p3 = _obv_step(o3, p3, close[ix(a3 + j)], volume[ix(a3 + j)])
        put(out, ix(a3 + j), o3)
    _obv_run(close, volume, out, a0 + m, hi[0], o0, p0)
    _obv_run(close, volume, out, a1 + m, hi[1], o1, p1)
    _obv_run(close, volume, out, a2 + m, hi[2], o2, p2)
    _obv_run(close, volume, out, a3 + m, hi[3], o3, p3)


@njit(**JIT)
def vwap_into(high, low, close, volume, session, out):
    """Session-resetting VWAP of the typical price into ``out``."""
    n = close.shape[0]
    if n == 0:
        return
    cur = session[0]
    pv = 0.0
    vv = 0.0
    for i in range(n):
        s = session[i]
        if s != cur:
            cur = s
            pv = 0.0
            vv = 0.0
        tp = (high[i] + low[i] + close[i]) / 3.0
        v = volume[i]
        if tp == tp and v == v:
            pv += tp * v
            vv += v
        out[i] = pv / vv if vv > 0.0 else NAN


@njit(**JIT)
def obv(close, volume):
    """OBV as a new array."""
    out = np.empty(close.shape[0], np.float64)
    obv_into(close, volume, out)
    return out


@njit(**JIT)
def vwap(high, low, close, volume, session):
    """Session VWAP as a new array (``session``: int64 id per row, e.g. local date)."""
    out = np.empty(close.shape[0], np.float64)
    vwap_into(high, low, close, volume, session, out)
    return out


__all__ = ["obv", "obv_into", "obv_lanes", "vwap", "vwap_into"]
