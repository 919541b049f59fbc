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

Divisions by the period use ``div_rn`` (same bits, no divide); seeds and steps as explained in
``kernels.moving``; ``adx_lanes`` steps its four series side by side in four-wide vectors
(``kernels._vec4``; see there).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from marketlake.kernels._common import (
    JIT,
    STEP,
    TA_EPSILON,
    div_rn,
    fill_nan,
    first_valid3,
    fma,
    is_zero,
    ix,
    true_range,
)
from marketlake.kernels._vec4 import (
    gather4,
    lane,
    row4,
    scatter4,
    splat,
    vabs,
    vadd,
    vdiv,
    vdiv_rn,
    vfma,
    vmul,
    vsel_gt,
    vsel_lt,
    vsub,
)
from marketlake.kernels.volatility import _atr_run, _atr_seed


@njit(**STEP)
def _dm(dp, dm):
    # TA-Lib: "-DM if down > 0 and up < down, else +DM if up > 0 and up > down"; the two tests
    # are exclusive and adding 0.0 is exact, so this branch-free form gives the same sums
    is_m = (dm > 0.0) & (dp < dm)
    is_p = (dp > 0.0) & (dp > dm)
    return (dm if is_m else 0.0), (dp if is_p else 0.0)


@njit(**JIT)
def _adx_seed(high, low, close, lo, hi, period, oa, op, om):
    """Warm-up of rows lo:hi up to and including the first ADX row (DI rows from ``n`` on).

    Returns ``(ph, pl, pc, pdm, mdm, trs, adx, i)``; the next step writes row ``i``."""
    if hi <= lo:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, hi
    b = lo + first_valid3(high[lo:hi], low[lo:hi], close[lo:hi])
    di0 = b + period  # first DI row
    adx0 = b + 2 * period - 1  # first ADX row
    fill_nan(op, lo, min(di0, hi))
    fill_nan(om, lo, min(di0, hi))
    fill_nan(oa, lo, min(adx0, hi))
    if di0 >= hi:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, hi
    nn = float(period)
    inv_n = 1.0 / nn
    ph = high[b]
    pl = low[b]
    pc = close[b]
    pdm = 0.0
    mdm = 0.0
    trs = 0.0
    for i in range(b + 1, di0):
        h = high[i]
        lw = low[i]
        m, p = _dm(h - ph, pl - lw)
        ph = h
        pl = lw
        mdm += m
        pdm += p
        trs += true_range(h, lw, pc)
        pc = close[i]
    sum_dx = 0.0
    stop = min(adx0 + 1, hi)
    for i in range(di0, stop):
        h = high[i]
        lw = low[i]
        m, p = _dm(h - ph, pl - lw)
        ph = h
        pl = lw
        mdm = (mdm - div_rn(mdm, nn, inv_n)) + m
        pdm = (pdm - div_rn(pdm, nn, inv_n)) + p
        trs = trs - div_rn(trs, nn, inv_n) + true_range(h, lw, pc)
        pc = close[i]
        if trs > 0.0:
            rtr = 1.0 / trs
            mdi = 100.0 * div_rn(mdm, trs, rtr)
            pdi = 100.0 * div_rn(pdm, trs, rtr)
            om[i] = mdi
            op[i] = pdi
            s = mdi + pdi
            if not is_zero(s):
                sum_dx += 100.0 * (abs(mdi - pdi) / s)
        else:
            om[i] = 0.0
            op[i] = 0.0
    if adx0 >= hi:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, hi
    adx = sum_dx / nn
    oa[adx0] = adx
    return ph, pl, pc, pdm, mdm, trs, adx, adx0 + 1


@njit(**STEP)
def _adx_step(ph, pl, pc, pdm, mdm, trs, adx, h, lw, c, nn, inv_n, nm1):
    """One steady-state row. Returns the new state (7 values) and ``(-DI, +DI)``."""
    return _adx_tr_step(ph, pl, pc, pdm, mdm, trs, adx, h, lw, c, nn, inv_n, nm1)[:9]


@njit(**STEP)
def _adx_tr_step(ph, pl, pc, pdm, mdm, trs, adx, h, lw, c, nn, inv_n, nm1):
    """:func:`_adx_step`, also returning the row's true range (for a fused ATR)."""
    m, p = _dm(h - ph, pl - lw)
    mdm = (mdm - div_rn(mdm, nn, inv_n)) + m
    pdm = (pdm - div_rn(pdm, nn, inv_n)) + p
    tr = true_range(h, lw, pc)
    trs = trs - div_rn(trs, nn, inv_n) + tr
    mdi = 0.0
    pdi = 0.0
    if trs > 0.0:
        rtr = 1.0 / trs
        mdi = 100.0 * div_rn(mdm, trs, rtr)
        pdi = 100.0 * div_rn(pdm, trs, rtr)
        s = mdi + pdi
        if not is_zero(s):
            adx = div_rn(adx * nm1 + 100.0 * (abs(mdi - pdi) / s), nn, inv_n)
    return h, lw, c, pdm, mdm, trs, adx, mdi, pdi, tr


@njit(**JIT)
def _adx_run(high, low, close, oa, op, om, start, stop, st, period):
    nn = float(period)
    inv_n = 1.0 / nn
    nm1 = nn - 1
    ph, pl, pc, pdm, mdm, trs, adx = st
    for j in range(stop - start):
        i = ix(start + j)
        ph, pl, pc, pdm, mdm, trs, adx, mdi, pdi = _adx_step(
            ph, pl, pc, pdm, mdm, trs, adx, high[i], low[i], close[i], nn, inv_n, nm1
        )
        oa[i] = adx
        op[i] = pdi
        om[i] = mdi


@njit(**JIT)
def _adx_atr_run(high, low, close, oa, op, om, oatr, start, stop, st, e, period):
    """:func:`_adx_run` and the fused ATR (last value ``e``) on rows ``start:stop``."""
    nn = float(period)
    inv_n = 1.0 / nn
    nm1 = nn - 1
    beta = (period - 1) / period
    alpha = 1.0 - beta
    ph, pl, pc, pdm, mdm, trs, adx = st
    for k in range(stop - start):
        i = ix(start + k)
        ph, pl, pc, pdm, mdm, trs, adx, mdi, pdi, tr = _adx_tr_step(
            ph, pl, pc, pdm, mdm, trs, adx, high[i], low[i], close[i], nn, inv_n, nm1
        )
        e = fma(beta, e, alpha * tr)
        oa[i] = adx
        op[i] = pdi
        om[i] = mdi
        oatr[i] = e


@njit(**JIT)
def adx_into(high, low, close, period, out_adx, out_plus_di, out_minus_di):
    """ADX, +DI and -DI (TA-Lib, Wilder smoothing) into the three outputs."""
    n = close.shape[0]
    a, b, c, d, e, f, g, i0 = _adx_seed(
        high, low, close, 0, n, period, out_adx, out_plus_di, out_minus_di
    )
    _adx_run(
        high, low, close, out_adx, out_plus_di, out_minus_di, i0, n, (a, b, c, d, e, f, g), period
    )


@njit(**JIT)
def adx(high, low, close, period):
    """``(adx, plus_di, minus_di)`` as new arrays."""
    n = close.shape[0]
    a = np.empty(n, np.float64)
    p = np.empty(n, np.float64)
    m = np.empty(n, np.float64)
    adx_into(high, low, close, period, a, p, m)
    return a, p, m


@njit(**STEP)
def _adx_vstep(ph, pl, pc, pdm, mdm, trs, adx, e, h, lw, nn, inv_n, nm1, alpha, beta):
    """:func:`_adx_tr_step` and the fused ATR's step on four series at once (``Vec4`` lanes,
    see ``kernels._vec4``), branch-free: the same operations in the same order. Returns the
    new ``(pdm, mdm, trs, adx, e)`` and the row's ``(-DI, +DI)``."""
    zero = splat(0.0)
    hundred = splat(100.0)
    dp = vsub(h, ph)
    dm = vsub(pl, lw)
    m = vsel_gt(dm, zero, vsel_lt(dp, dm, dm, zero), zero)
    p = vsel_gt(dp, zero, vsel_gt(dp, dm, dp, zero), zero)
    mdm = vadd(vsub(mdm, vdiv_rn(mdm, nn, inv_n)), m)
    pdm = vadd(vsub(pdm, vdiv_rn(pdm, nn, inv_n)), p)
    tr = vsub(h, lw)
    t = vabs(vsub(h, pc))
    tr = vsel_gt(t, tr, t, tr)
    t = vabs(vsub(lw, pc))
    tr = vsel_gt(t, tr, t, tr)
    trs = vadd(vsub(trs, vdiv_rn(trs, nn, inv_n)), tr)
    rtr = vdiv(splat(1.0), trs)
    mdi = vmul(hundred, vdiv_rn(mdm, trs, rtr))
    pdi = vmul(hundred, vdiv_rn(pdm, trs, rtr))
    s = vadd(mdi, pdi)
    nxt = vadd(vmul(adx, nm1), vmul(hundred, vdiv(vabs(vsub(mdi, pdi)), s)))
    nxt = vdiv_rn(nxt, nn, inv_n)
    eps = splat(TA_EPSILON)
    neps = splat(-TA_EPSILON)
    # TA-Lib: updated when trs > 0 and s is outside (-1e-14, 1e-14); DIs 0 unless trs > 0
    upd = vsel_gt(s, neps, vsel_lt(s, eps, adx, nxt), nxt)
    adx = vsel_gt(trs, zero, upd, adx)
    mdi = vsel_gt(trs, zero, mdi, zero)
    pdi = vsel_gt(trs, zero, pdi, zero)
    e = vfma(beta, e, vmul(alpha, tr))
    return pdm, mdm, trs, adx, e, mdi, pdi


@njit(**JIT)
def adx_lanes(high, low, close, period, oa, op, om, lo, hi):
    """ADX/+DI/-DI of the four series in rows ``lo[j]:hi[j]``, side by side in four-wide
    vectors (see :func:`_adx_vec_lanes`)."""
    _adx_vec_lanes(high, low, close, period, oa, op, om, oa, False, lo, hi)


@njit(**JIT)
def adx_atr_lanes(high, low, close, period, oa, op, om, oatr, lo, hi):
    """:func:`adx_lanes` and ATR of the same period (``kernels.volatility``) into ``oatr``,
    in one pass over the rows from ADX's first steady row on: the two share each row's true
    range and its inputs. The same values as the two kernels run apart, bit for bit."""
    _adx_vec_lanes(high, low, close, period, oa, op, om, oatr, True, lo, hi)


@njit(**JIT)
def _adx_vec_lanes(high, low, close, period, oa, op, om, oatr, with_atr, lo, hi):
    """ADX/+DI/-DI (and, ``with_atr``, the fused ATR) of four series, their steady rows in
    four-wide vectors (``kernels._vec4``) over the rows all four have, the rest one by one.

    A step is about 70 instructions with two divisions, too many to interleave four series
    as scalars (registers spill: 50 ms against 43 ms one after the other); as vectors the
    four cost about one series' instructions. 2,000 x 2,520 bars, one thread, in the parallel
    driver: ADX 18 ms against 38 ms, ADX with the fused ATR 23 ms against 41 ms, the 8 TA-Lib
    indicators 76 ms against 96 ms CPU. Bit for bit the scalar kernel's values
    (``tests/kernels/test_kernels_vec4.py``)."""
    nn = float(period)
    inv_n = 1.0 / nn
    nm1 = nn - 1
    beta = (period - 1) / period
    alpha = 1.0 - beta
    st = np.zeros((8, 4))
    i0 = np.empty(4, np.int64)
    for j in range(4):
        if with_atr:
            e, ae = _atr_seed(high, low, close, lo[j], hi[j], period, oatr)
        ph, pl, pc, pdm, mdm, trs, adx, s0 = _adx_seed(
            high, low, close, lo[j], hi[j], period, oa, op, om
        )
        if with_atr:
            _atr_run(high, low, close, oatr, ae, s0, e, alpha, beta)
            if s0 < hi[j]:
                st[7, j] = oatr[s0 - 1]
        st[0, j] = ph
        st[1, j] = pl
        st[2, j] = pc
        st[3, j] = pdm
        st[4, j] = mdm
        st[5, j] = trs
        st[6, j] = adx
        i0[j] = s0
    m = max(min(hi[0] - i0[0], hi[1] - i0[1], hi[2] - i0[2], hi[3] - i0[3]), 0)
    ph = row4(st, 0)
    pl = row4(st, 1)
    pc = row4(st, 2)
    pdm = row4(st, 3)
    mdm = row4(st, 4)
    trs = row4(st, 5)
    adx = row4(st, 6)
    e = row4(st, 7)
    vnn = splat(nn)
    vinv = splat(inv_n)
    vnm1 = splat(nm1)
    valpha = splat(alpha)
    vbeta = splat(beta)
    a0 = i0[0]
    a1 = i0[1]
    a2 = i0[2]
    a3 = i0[3]
    for k in range(m):
        h = gather4(high, a0 + k, a1 + k, a2 + k, a3 + k)
        lw = gather4(low, a0 + k, a1 + k, a2 + k, a3 + k)
        pdm, mdm, trs, adx, e, mdi, pdi = _adx_vstep(
            ph, pl, pc, pdm, mdm, trs, adx, e, h, lw, vnn, vinv, vnm1, valpha, vbeta
        )
        ph = h
        pl = lw
        pc = gather4(close, a0 + k, a1 + k, a2 + k, a3 + k)
        scatter4(oa, a0 + k, a1 + k, a2 + k, a3 + k, adx)
        scatter4(op, a0 + k, a1 + k, a2 + k, a3 + k, pdi)
        scatter4(om, a0 + k, a1 + k, a2 + k, a3 + k, mdi)
        if with_atr:
            scatter4(oatr, a0 + k, a1 + k, a2 + k, a3 + k, e)
    for j in range(4):
        b1, b2, b3, b4 = lane(ph, j), lane(pl, j), lane(pc, j), lane(pdm, j)
        b5, b6, b7 = lane(mdm, j), lane(trs, j), lane(adx, j)
        if with_atr:
            _adx_atr_run(
                high, low, close, oa, op, om, oatr, i0[j] + m, hi[j],
                (b1, b2, b3, b4, b5, b6, b7), lane(e, j), period,
            )  # fmt: skip
        else:
            _adx_run(
                high, low, close, oa, op, om, i0[j] + m, hi[j], (b1, b2, b3, b4, b5, b6, b7), period
            )


__all__ = ["adx", "adx_atr_lanes", "adx_into", "adx_lanes"]
