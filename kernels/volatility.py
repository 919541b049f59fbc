"""Volatility: Bollinger Bands and ATR (TA-Lib replicas) and Supertrend (built on that ATR).

Seeds, steps and four-series ``*_lanes`` variants as explained in ``kernels.moving`` (BBANDS
steps its four series side by side in four-wide vectors, ``kernels._vec4``).

* BBANDS(n, k) = ``talib.BBANDS(x, n, k, k, matype=0)``: middle = SMA(n) (running sum);
  population standard deviation from TA-Lib's cancellation-free running variance of the data
  shifted by a reference value, re-centred on the window mean every ``32 n`` rows or when
  cancellation threatens (variance tiny against the mean square), with TA-Lib's floor to 0;
  upper/lower = middle +/- k * sd. First row ``n - 1``.
* ATR(n) = ``talib.ATR``: true range ``max(h - l, |h - c[-1]|, |l - c[-1]|)`` (TA-Lib's
  comparison order, so a NaN previous close is ignored), first ATR = mean of the ``n`` true
  ranges of rows ``1..n``, then Wilder smoothing ``atr = fma(b, atr, a * tr)`` with
  ``b = (n - 1) / n``, ``a = 1 - b``; first value at row ``n``. (For ``n = 1`` that is the true
  range from row 1 on -- but, as in TA-Lib, a NaN stays in the recurrence: ``0 * NaN``.)
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
  low makes every later ATR NaN). A NaN close fails every comparison: the direction is kept on
  that bar, and on the next one the bands follow the basic-band tests alone.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from marketlake.kernels._common import (
    JIT,
    NAN,
    STEP,
    div_rn,
    fill_nan,
    first_valid,
    first_valid3,
    fma,
    ix,
    put,
    true_range,
)
from marketlake.kernels._vec4 import (
    gather4,
    lane,
    row4,
    scatter4,
    splat,
    vadd,
    vdiv_rn,
    vmask_gt,
    vmask_lt,
    vmul,
    vsel_ne,
    vsqrt,
    vsub,
    with_lane,
)


@njit(**JIT)
def _bb_seed(x, lo, hi, period, out_u, out_m, out_l):
    """Warm-up of x[lo:hi]. Returns ``(ma, v1, v2, shift, rows_to_reseed, i)``."""
    if hi <= lo:
        return 0.0, 0.0, 0.0, 0.0, 0, hi
    b = lo + first_valid(x[lo:hi])
    first = b + period - 1
    if first >= hi:
        fill_nan(out_u, lo, hi)
        fill_nan(out_m, lo, hi)
        fill_nan(out_l, lo, hi)
        return 0.0, 0.0, 0.0, 0.0, 0, hi
    fill_nan(out_u, lo, first)
    fill_nan(out_m, lo, first)
    fill_nan(out_l, lo, first)
    shift = x[b]
    ma = 0.0
    v1 = 0.0
    v2 = 0.0
    for j in range(b, first):
        ma += x[j]
        t = x[j] - shift
        v1 += t
        v2 += t * t
    return ma, v1, v2, shift, 32 * period, first


@njit(**STEP)
def _bb_step(ma, v1, v2, xi, old, shift, p, inv):
    """One row: add ``xi``, read mean and variance, drop ``old`` (the row leaving the window).

    Returns ``(ma, v1, v2, mid, var, sq)``, ``sq`` the squared shifted value just dropped."""
    ma += xi
    t = xi - shift
    v1 += t
    v2 += t * t
    m1 = v1 * inv
    var = v2 * inv - m1 * m1
    mid = div_rn(ma, p, inv)  # == ma / period
    ma -= old
    t = old - shift
    v1 -= t
    t = t * t
    v2 -= t
    return ma, v1, v2, mid, var, t


@njit(**STEP)
def _bb_needs_reseed(var, v2, sq, inv, left):
    return var < 0.000001 * (v2 * inv) or sq > 1000000.0 * v2 or left <= 0


@njit(**JIT)
def _bb_reseed(x, i, period, inv):
    """TA-Lib's reseed at row ``i``: re-centre on the window mean, rebuild both sums, and
    return ``(shift, v1, v2, var)`` (the oldest window row already removed from v1, v2)."""
    ws = i - period + 1
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
    return shift, v1, v2, var


@njit(**STEP)
def _bb_sd(var, k):
    return (math.sqrt(var) if var != 0.0 else 0.0) * k


@njit(**JIT)
def _bb_run(x, ou, om, ol, start, stop, st, period, k):
    p = float(period)
    inv = 1.0 / p
    lb = period - 1
    every = 32 * period
    ma, v1, v2, sh, left = st
    for i in range(start, stop):
        ma, v1, v2, mid, var, sq = _bb_step(ma, v1, v2, x[ix(i)], x[ix(i - lb)], sh, p, inv)
        left -= 1
        if _bb_needs_reseed(var, v2, sq, inv, left):
            left = every
            sh, v1, v2, var = _bb_reseed(x, i, period, inv)
        sd = _bb_sd(var, k)
        om[ix(i)] = mid
        ou[ix(i)] = mid + sd
        ol[ix(i)] = mid - sd


@njit(**JIT)
def bbands_into(x, period, k, out_upper, out_middle, out_lower):
    """Bollinger Bands (SMA middle, population sd, symmetric ``k``) into the three outputs."""
    n = x.shape[0]
    ma, v1, v2, sh, left, i0 = _bb_seed(x, 0, n, period, out_upper, out_middle, out_lower)
    _bb_run(x, out_upper, out_middle, out_lower, i0, n, (ma, v1, v2, sh, left), period, k)


@njit(**JIT)
def bbands_lanes(x, period, k, ou, om, ol, lo, hi):
    """Bollinger Bands of the four series ``x[lo[j]:hi[j]]``, side by side in four-wide
    vectors (``kernels._vec4``) over the rows all four have, the rest one by one.

    A step with its square root and re-centring test keeps the core busy alone: four
    interleaved as scalars spilled registers (20 ms against 25 ms one after the other); as
    vectors the four cost less (2,000 x 2,520 bars: 15-18 ms against 21-22 ms on one thread;
    the 8 TA-Lib indicators through ``compute``, two threads: 90-97 ms CPU against 94-104 ms,
    alternated processes at load average 3-4 on 2 cores). A re-centring (rare: every ``32 n``
    rows, or on cancellation) is done lane by lane as in the scalar kernel, so the values are
    the scalar kernel's bit for bit."""
    p = float(period)
    inv = 1.0 / p
    lb = period - 1
    every = 32 * period
    st = np.zeros((5, 4))
    i0 = np.empty(4, np.int64)
    due = np.empty(4, np.int64)
    for j in range(4):
        ma, v1, v2, sh, left, s0 = _bb_seed(x, lo[j], hi[j], period, ou, om, ol)
        st[0, j] = ma
        st[1, j] = v1
        st[2, j] = v2
        st[3, j] = sh
        i0[j] = s0
        due[j] = left - 1  # the step (from 0) whose countdown reaches 0
    m = max(min(hi[0] - i0[0], hi[1] - i0[1], hi[2] - i0[2], hi[3] - i0[3]), 0)
    ma = row4(st, 0)
    v1 = row4(st, 1)
    v2 = row4(st, 2)
    sh = row4(st, 3)
    vp = splat(p)
    vinv = splat(inv)
    vk = splat(k)
    zero = splat(0.0)
    small = splat(0.000001)
    big = splat(1000000.0)
    next_due = min(due[0], due[1], due[2], due[3])
    a0 = i0[0]
    a1 = i0[1]
    a2 = i0[2]
    a3 = i0[3]
    for t in range(m):
        xi = gather4(x, a0 + t, a1 + t, a2 + t, a3 + t)
        old = gather4(x, a0 + t - lb, a1 + t - lb, a2 + t - lb, a3 + t - lb)
        # _bb_step, per lane
        ma = vadd(ma, xi)
        d = vsub(xi, sh)
        v1 = vadd(v1, d)
        v2 = vadd(v2, vmul(d, d))
        m1 = vmul(v1, vinv)
        var = vsub(vmul(v2, vinv), vmul(m1, m1))
        mid = vdiv_rn(ma, vp, vinv)
        ma = vsub(ma, old)
        d = vsub(old, sh)
        v1 = vsub(v1, d)
        sq = vmul(d, d)
        v2 = vsub(v2, sq)
        # _bb_needs_reseed: cancellation in some lane, or a lane's countdown ran out
        bad = vmask_lt(var, vmul(small, vmul(v2, vinv))) | vmask_gt(sq, vmul(big, v2))
        if bad != 0 or t >= next_due:
            for j in range(4):
                if (bad >> j) & 1 or t >= due[j]:
                    due[j] = t + every
                    shj, v1j, v2j, varj = _bb_reseed(x, i0[j] + t, period, inv)
                    sh = with_lane(sh, j, shj)
                    v1 = with_lane(v1, j, v1j)
                    v2 = with_lane(v2, j, v2j)
                    var = with_lane(var, j, varj)
            next_due = min(due[0], due[1], due[2], due[3])
        sd = vmul(vsel_ne(var, zero, vsqrt(var), zero), vk)
        up = vadd(mid, sd)
        dn = vsub(mid, sd)
        scatter4(om, a0 + t, a1 + t, a2 + t, a3 + t, mid)
        scatter4(ou, a0 + t, a1 + t, a2 + t, a3 + t, up)
        scatter4(ol, a0 + t, a1 + t, a2 + t, a3 + t, dn)
    for j in range(4):
        st_j = (lane(ma, j), lane(v1, j), lane(v2, j), lane(sh, j), due[j] - m + 1)
        _bb_run(x, ou, om, ol, i0[j] + m, hi[j], st_j, period, k)


@njit(**JIT)
def _atr_seed(high, low, close, lo, hi, period, out):
    """Warm-up of rows lo:hi and the first ATR. Returns ``(atr, i)``."""
    if hi <= lo:
        return 0.0, hi
    b = lo + first_valid3(high[lo:hi], low[lo:hi], close[lo:hi])
    first = b + period
    if first >= hi:
        fill_nan(out, lo, hi)
        return 0.0, hi
    fill_nan(out, lo, first)
    total = 0.0
    for i in range(b + 1, first + 1):
        total += true_range(high[i], low[i], close[i - 1])
    prev = total / period
    out[first] = prev
    return prev, first + 1


@njit(**JIT)
def _atr_run(high, low, close, out, start, stop, prev, alpha, beta):
    for i in range(start, stop):
        prev = fma(beta, prev, alpha * true_range(high[ix(i)], low[ix(i)], close[ix(i - 1)]))
        out[ix(i)] = prev


@njit(**JIT)
def atr_into(high, low, close, period, out):
    """Wilder ATR (TA-Lib seeding) into ``out``; NaN for the first ``period`` rows."""
    n = close.shape[0]
    prev, i0 = _atr_seed(high, low, close, 0, n, period, out)
    beta = (period - 1) / period
    _atr_run(high, low, close, out, i0, n, prev, 1.0 - beta, beta)


@njit(**JIT)
def atr_lanes(high, low, close, period, out, lo, hi):
    """ATR of the four series in rows ``lo[j]:hi[j]`` (see ``kernels.moving`` on lanes)."""
    beta = (period - 1) / period
    alpha = 1.0 - beta
    e0, a0 = _atr_seed(high, low, close, lo[0], hi[0], period, out)
    e1, a1 = _atr_seed(high, low, close, lo[1], hi[1], period, out)
    e2, a2 = _atr_seed(high, low, close, lo[2], hi[2], period, out)
    e3, a3 = _atr_seed(high, low, close, lo[3], hi[3], period, out)
    m = min(hi[0] - a0, hi[1] - a1, hi[2] - a2, hi[3] - a3)
    for j in range(m):
        i = a0 + j
        e0 = fma(beta, e0, alpha * true_range(high[ix(i)], low[ix(i)], close[ix(i - 1)]))
        put(out, ix(i), e0)
        i = a1 + j
        e1 = fma(beta, e1, alpha * true_range(high[ix(i)], low[ix(i)], close[ix(i - 1)]))
        put(out, ix(i), e1)
        i = a2 + j
        e2 = fma(beta, e2, alpha * true_range(high[ix(i)], low[ix(i)], close[ix(i - 1)]))
        put(out, ix(i), e2)
        i = a3 + j
        e3 = fma(beta, e3, alpha * true_range(high[ix(i)], low[ix(i)], close[ix(i - 1)]))
        put(out, ix(i), e3)
    _atr_run(high, low, close, out, a0 + m, hi[0], e0, alpha, beta)
    _atr_run(high, low, close, out, a1 + m, hi[1], e1, alpha, beta)
    _atr_run(high, low, close, out, a2 + m, hi[2], e2, alpha, beta)
    _atr_run(high, low, close, out, a3 + m, hi[3], e3, alpha, beta)


@njit(**JIT)
def supertrend_into(high, low, close, period, mult, out_st, out_dir):
    """Supertrend line and direction (+1 up / -1 down) into ``out_st`` / ``out_dir``."""
    atr_into(high, low, close, period, out_st)  # out_st doubles as the ATR buffer
    supertrend_band_into(high, low, close, mult, out_st, out_dir)


@njit(**STEP)
def _band_step(a, h, lw, c, mult, fu, fl, up, pc, started):
    """One row of the band pass from the row's ATR ``a``: ``(ok, fu, fl, up, pc, started)``,
    ``ok`` False where the bands are NaN (the row's outputs NaN, the state unchanged: the
    previous close ``pc`` is the last one the bands saw)."""
    hl2 = (h + lw) / 2.0
    bu = hl2 + mult * a
    bl = hl2 - mult * a
    if bu != bu or bl != bl:
        return False, fu, fl, up, pc, started
    if not started:
        fu = bu
        fl = bl
        up = False
    else:
        if bu < fu or pc > fu:
            fu = bu
        if bl > fl or pc < fl:
            fl = bl
        if up:
            if c < fl:
                up = False
        elif c > fu:
            up = True
    return True, fu, fl, up, c, True


@njit(**STEP)
def _band_out(ok, fu, fl, up, out_st, out_dir, i):
    """A row's Supertrend line and direction from :func:`_band_step`'s result."""
    if not ok:
        out_st[i] = NAN
        out_dir[i] = NAN
    elif up:
        out_st[i] = fl
        out_dir[i] = 1.0
    else:
        out_st[i] = fu
        out_dir[i] = -1.0


@njit(**JIT)
def supertrend_band_into(high, low, close, mult, out_st, out_dir):
    """Second Supertrend pass: ``out_st`` holds the ATR on entry, the Supertrend on exit."""
    started = False
    up = False
    fu = 0.0
    fl = 0.0
    pc = 0.0
    for i in range(close.shape[0]):
        ok, fu, fl, up, pc, started = _band_step(
            out_st[i], high[i], low[i], close[i], mult, fu, fl, up, pc, started
        )
        _band_out(ok, fu, fl, up, out_st, out_dir, i)


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


__all__ = [
    "atr",
    "atr_into",
    "atr_lanes",
    "bbands",
    "bbands_into",
    "bbands_lanes",
    "supertrend",
    "supertrend_band_into",
    "supertrend_into",
]
