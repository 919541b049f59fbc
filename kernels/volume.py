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

from kernels._common import JIT, NAN, fill_nan, first_valid2


@njit(**JIT)
def obv_into(close, volume, out):
    """On-balance volume (TA-Lib) into ``out``."""
    n = close.shape[0]
    if n == 0:
        return
    b = first_valid2(close, volume)
    fill_nan(out, 0, b)
    obv = volume[b]
    prev = close[b]
    for i in range(b, n):
        c = close[i]
        v = volume[i]
        # branch-free form of TA-Lib's "up: += v, down: -= v, flat: keep" (x + v - 0.0, x + 0.0
        # - v and x + 0.0 - 0.0 are exactly those results; a NaN volume only counts on a move)
        obv = obv + (v if c > prev else 0.0) - (v if c < prev else 0.0)
        out[i] = obv
        prev = c


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


__all__ = ["obv", "obv_into", "vwap", "vwap_into"]
