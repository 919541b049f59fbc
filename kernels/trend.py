"""Trend strength: ADX with +DI/-DI in one pass, a replica of TA-Lib's ADX, PLUS_DI, MINUS_DI.

TA-Lib's algorithm (unstable period 0), with ``n`` the period and rows counted from the first row
where high, low and close are all non-NaN:

* per row: ``up = h - h[-1]``, ``down = l[-1] - l``; ``-DM = down`` if ``down > 0 and
  up < down``, else ``+DM = up`` if ``up > 0 and up > down``; true range as in ATR.
* rows ``1..n-1``: plain sums of +DM, -DM and TR; from row ``n`` on Wilder smoothing
  ``s = s - s / n + value``.
* ``+DI = 100 * (+DM_s / TR_s)`` and ``-DI = 100 * (-DM_s / TR_s)`` from row ``n`` (0 unless
  ``TR_s > 0``); ``DX = 100 * |(-DI) - (+DI)| / ((-DI) + (+DI))`` (skipped unless ``TR_s > 0``
  and the DI sum is outside TA-Lib's 1e-14 zero band).
* ADX: mean of the ``n`` DX values of rows ``n..2n-1`` (first value at row ``2n - 1``), then
  ``adx = (adx * (n - 1) + dx) / n``.

The smoothed sums are the same numbers in all three TA-Lib functions, so computing them once
gives exactly ``talib.ADX``, ``talib.PLUS_DI`` and ``talib.MINUS_DI`` (DI columns start at row
``n``, ADX at ``2n - 1``). A NaN high or low makes the smoothed TR NaN for good; from then on,
as in TA-Lib, both DIs are 0 and ADX keeps its last value. A NaN close only drops out of the
next true range.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._common import JIT, div_rn, fill_nan, first_valid3, is_zero, true_range


@njit(**JIT)
def adx_into(high, low, close, period, out_adx, out_plus_di, out_minus_di):
    """ADX, +DI and -DI (TA-Lib, Wilder smoothing) into the three outputs."""
    n = close.shape[0]
    if n == 0:
        return
    b = first_valid3(high, low, close)
    di0 = b + period  # first DI row
    adx0 = b + 2 * period - 1  # first ADX row
    fill_nan(out_plus_di, 0, min(di0, n))
    fill_nan(out_minus_di, 0, min(di0, n))
    fill_nan(out_adx, 0, min(adx0, n))
    if di0 >= n:
        return
    # every "/ nn" below is div_rn(., nn, inv_n): the same bits as TA-Lib's division
    nn = float(period)
    inv_n = 1.0 / nn
    nm1 = nn - 1
    ph = high[b]
    pl = low[b]
    pc = close[b]
    pdm = 0.0
    mdm = 0.0
    trs = 0.0
    for i in range(b + 1, di0):
        h = high[i]
        lo = low[i]
        dp = h - ph
        dm = pl - lo
        ph = h
        pl = lo
        if dm > 0 and dp < dm:
            mdm += dm
        elif dp > 0 and dp > dm:
            pdm += dp
        trs += true_range(h, lo, pc)
        pc = close[i]
    sum_dx = 0.0
    adx = 0.0
    for i in range(di0, n):
        h = high[i]
        lo = low[i]
        dp = h - ph
        dm = pl - lo
        ph = h
        pl = lo
        # TA-Lib: "-DM if down > 0 and up < down, else +DM if up > 0 and up > down"; the two
        # tests are exclusive, and adding 0.0 is exact, so this branch-free form is identical
        is_m = (dm > 0.0) & (dp < dm)
        is_p = (dp > 0.0) & (dp > dm)
        mdm = (mdm - div_rn(mdm, nn, inv_n)) + (dm if is_m else 0.0)
        pdm = (pdm - div_rn(pdm, nn, inv_n)) + (dp if is_p else 0.0)
        trs = trs - div_rn(trs, nn, inv_n) + true_range(h, lo, pc)
        pc = close[i]
        dx = -1.0
        if trs > 0.0:
            rtr = 1.0 / trs
            mdi = 100.0 * div_rn(mdm, trs, rtr)
            pdi = 100.0 * div_rn(pdm, trs, rtr)
            out_minus_di[i] = mdi
            out_plus_di[i] = pdi
            s = mdi + pdi
            if not is_zero(s):
                dx = 100.0 * (abs(mdi - pdi) / s)
        else:
            out_minus_di[i] = 0.0
            out_plus_di[i] = 0.0
        if i < adx0:
            if dx != -1.0:
                sum_dx += dx
        elif i == adx0:
            if dx != -1.0:
                sum_dx += dx
            adx = sum_dx / nn
            out_adx[i] = adx
        else:
            if dx != -1.0:
                adx = div_rn(adx * nm1 + dx, nn, inv_n)
            out_adx[i] = adx


@njit(**JIT)
def adx(high, low, close, period):
    """``(adx, plus_di, minus_di)`` as new arrays."""
    n = close.shape[0]
    a = np.empty(n, np.float64)
    p = np.empty(n, np.float64)
    m = np.empty(n, np.float64)
    adx_into(high, low, close, period, a, p, m)
    return a, p, m


__all__ = ["adx", "adx_into"]
