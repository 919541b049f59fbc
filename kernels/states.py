"""The state of RSI, MACD, ADX and Supertrend after a row, and the indicators continued from it.

Their outputs do not determine their state (RSI's two averages, MACD's two EMAs, ADX's
smoothed DMs and true range, Supertrend's ATR and bands), so an increment cannot continue
them from their stored values the way it continues EMA, ATR and OBV (``kernels.seeds``).
``*_states`` runs the full computation's seed and steps over each series and records the
state after each of its last rows; ``*_continue`` runs the same steps from such a state. The
same operations in the same order: rows continued from the state after a row equal the rows
a computation through that row would give next, bit for bit.

The state of one row, by indicator (the previous bar's own values come from the bars):

* ``rsi``: the average gain and loss;
* ``macd``: the slow and fast EMAs and the signal line;
* ``adx``: the smoothed +DM, -DM and true range, and the ADX;
* ``supertrend``: the ATR, the final upper and lower bands, the direction (1.0 up, 0.0 down)
  and the last close the bands saw.

(Their widths: ``kernels.resume.STATEFUL``.) A row without a state (inside the warm-up, or before Supertrend's first band) is all NaN.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from marketlake.kernels._common import (
    JIT,
    NAN,
    first_valid,
    first_valid3,
    fma,
    true_range,
)
from marketlake.kernels.momentum import _macd_seed, _macd_step, _rsi_seed, _rsi_step
from marketlake.kernels.trend import _adx_seed, _adx_step
from marketlake.kernels.volatility import _band_out, _band_step, atr_into


@njit(**JIT)
def _blank(states, base, rows):
    for r in range(rows):
        for k in range(states.shape[1]):
            states[base + r, k] = NAN


@njit(**JIT)
def rsi_states(x, lo, hi, keep, base, period, states):
    """RSI(``period``) over each series ``x[lo[j]:hi[j]]``; the state after each of its rows
    from ``keep[j]`` on into ``states[base[j] + row - keep[j]]``."""
    m1 = float(period - 1)
    inv = 1.0 / period
    scratch = np.empty(max(1, int((hi - lo).max())) if lo.shape[0] else 1, np.float64)
    for j in range(lo.shape[0]):
        a, n, k0 = lo[j], hi[j] - lo[j], keep[j] - lo[j]
        _blank(states, base[j], n - k0)
        xs = x[a : hi[j]]
        first = first_valid(xs) + period
        if n <= 0 or first >= n:
            continue
        g, ls, pv, i0 = _rsi_seed(xs, 0, n, period, scratch)
        if first >= k0:
            states[base[j] + first - k0, 0] = g
            states[base[j] + first - k0, 1] = ls
        for i in range(i0, n):
            g, ls, pv, _ = _rsi_step(g, ls, pv, xs[i], m1, inv)
            if i >= k0:
                states[base[j] + i - k0, 0] = g
                states[base[j] + i - k0, 1] = ls


@njit(**JIT)
def rsi_continue(x, starts, stops, seeds, period, out, states):
    """RSI rows ``starts[j]:stops[j]`` from ``seeds[j]``, the state one row before (whose bar
    is ``x[starts[j] - 1]``); each row's state into the same row of ``states``."""
    m1 = float(period - 1)
    inv = 1.0 / period
    for j in range(starts.shape[0]):
        g, ls, pv = seeds[j, 0], seeds[j, 1], x[starts[j] - 1]
        for i in range(starts[j], stops[j]):
            g, ls, pv, out[i] = _rsi_step(g, ls, pv, x[i], m1, inv)
            states[i, 0] = g
            states[i, 1] = ls


@njit(**JIT)
def macd_states(x, lo, hi, keep, base, fast, slow, signal, states):
    """MACD(``fast``, ``slow``, ``signal``) states, as :func:`rsi_states`."""
    ks = 2.0 / (slow + 1)
    kf = 2.0 / (fast + 1)
    kg = 2.0 / (signal + 1)
    cs = signal == 1
    size = max(1, int((hi - lo).max())) if lo.shape[0] else 1
    s1 = np.empty(size, np.float64)
    s2 = np.empty(size, np.float64)
    s3 = np.empty(size, np.float64)
    for j in range(lo.shape[0]):
        a, n, k0 = lo[j], hi[j] - lo[j], keep[j] - lo[j]
        _blank(states, base[j], n - k0)
        xs = x[a : hi[j]]
        first = first_valid(xs) + slow - 1 + signal - 1
        if n <= 0 or first >= n:
            continue
        se, fe, sg, i0 = _macd_seed(xs, 0, n, fast, slow, signal, s1, s2, s3)
        if first >= k0:
            r = base[j] + first - k0
            states[r, 0], states[r, 1], states[r, 2] = se, fe, sg
        for i in range(i0, n):
            se, fe, sg, _ = _macd_step(se, fe, sg, xs[i], ks, kf, kg, cs)
            if i >= k0:
                r = base[j] + i - k0
                states[r, 0], states[r, 1], states[r, 2] = se, fe, sg


@njit(**JIT)
def macd_continue(x, starts, stops, seeds, fast, slow, signal, om, osg, oh, states):
    """MACD rows from the states ``seeds`` one row before, as :func:`rsi_continue`."""
    ks = 2.0 / (slow + 1)
    kf = 2.0 / (fast + 1)
    kg = 2.0 / (signal + 1)
    cs = signal == 1
    for j in range(starts.shape[0]):
        se, fe, sg = seeds[j, 0], seeds[j, 1], seeds[j, 2]
        for i in range(starts[j], stops[j]):
            se, fe, sg, line = _macd_step(se, fe, sg, x[i], ks, kf, kg, cs)
            om[i] = line
            osg[i] = sg
            oh[i] = line - sg
            states[i, 0], states[i, 1], states[i, 2] = se, fe, sg


@njit(**JIT)
def adx_states(high, low, close, lo, hi, keep, base, period, states):
    """ADX(``period``) states, as :func:`rsi_states`."""
    nn = float(period)
    inv_n = 1.0 / nn
    nm1 = nn - 1
    size = max(1, int((hi - lo).max())) if lo.shape[0] else 1
    s1 = np.empty(size, np.float64)
    s2 = np.empty(size, np.float64)
    s3 = np.empty(size, np.float64)
    for j in range(lo.shape[0]):
        a, b, n, k0 = lo[j], hi[j], hi[j] - lo[j], keep[j] - lo[j]
        _blank(states, base[j], n - k0)
        hs, ls, cs = high[a:b], low[a:b], close[a:b]
        first = first_valid3(hs, ls, cs) + 2 * period - 1
        if n <= 0 or first >= n:
            continue
        ph, pl, pc, pdm, mdm, trs, adx, i0 = _adx_seed(hs, ls, cs, 0, n, period, s1, s2, s3)
        if first >= k0:
            r = base[j] + first - k0
            states[r, 0], states[r, 1], states[r, 2], states[r, 3] = pdm, mdm, trs, adx
        for i in range(i0, n):
            ph, pl, pc, pdm, mdm, trs, adx, _, _ = _adx_step(
                ph, pl, pc, pdm, mdm, trs, adx, hs[i], ls[i], cs[i], nn, inv_n, nm1
            )
            if i >= k0:
                r = base[j] + i - k0
                states[r, 0], states[r, 1], states[r, 2], states[r, 3] = pdm, mdm, trs, adx


@njit(**JIT)
def adx_continue(high, low, close, starts, stops, seeds, period, oa, op, om, states):
    """ADX, +DI and -DI rows from the states ``seeds`` one row before (whose bar gives the
    previous high, low and close), as :func:`rsi_continue`."""
    nn = float(period)
    inv_n = 1.0 / nn
    nm1 = nn - 1
    for j in range(starts.shape[0]):
        s = starts[j]
        ph, pl, pc = high[s - 1], low[s - 1], close[s - 1]
        pdm, mdm, trs, adx = seeds[j, 0], seeds[j, 1], seeds[j, 2], seeds[j, 3]
        for i in range(s, stops[j]):
            ph, pl, pc, pdm, mdm, trs, adx, mdi, pdi = _adx_step(
                ph, pl, pc, pdm, mdm, trs, adx, high[i], low[i], close[i], nn, inv_n, nm1
            )
            oa[i] = adx
            op[i] = pdi
            om[i] = mdi
            states[i, 0], states[i, 1], states[i, 2], states[i, 3] = pdm, mdm, trs, adx


@njit(**JIT)
def supertrend_states(high, low, close, lo, hi, keep, base, period, mult, states):
    """Supertrend(``period``, ``mult``) states, as :func:`rsi_states`."""
    size = max(1, int((hi - lo).max())) if lo.shape[0] else 1
    atr = np.empty(size, np.float64)
    for j in range(lo.shape[0]):
        a, b, n, k0 = lo[j], hi[j], hi[j] - lo[j], keep[j] - lo[j]
        _blank(states, base[j], n - k0)
        if n <= 0:
            continue
        hs, ls, cs = high[a:b], low[a:b], close[a:b]
        atr_into(hs, ls, cs, period, atr[:n])
        fu = fl = pc = 0.0
        up = started = False
        for i in range(n):
            _, fu, fl, up, pc, started = _band_step(
                atr[i], hs[i], ls[i], cs[i], mult, fu, fl, up, pc, started
            )
            if i >= k0 and started:
                r = base[j] + i - k0
                states[r, 0], states[r, 1], states[r, 2] = atr[i], fu, fl
                states[r, 3], states[r, 4] = (1.0 if up else 0.0), pc


@njit(**JIT)
def supertrend_continue(
    high, low, close, starts, stops, seeds, period, mult, out_st, out_dir, states
):
    """Supertrend line and direction rows from the states ``seeds`` one row before, as
    :func:`rsi_continue` (the ATR stepped as ``volatility._atr_run`` steps it)."""
    beta = (period - 1) / period
    alpha = 1.0 - beta
    for j in range(starts.shape[0]):
        e, fu, fl = seeds[j, 0], seeds[j, 1], seeds[j, 2]
        up, pc = seeds[j, 3] == 1.0, seeds[j, 4]
        for i in range(starts[j], stops[j]):
            e = fma(beta, e, alpha * true_range(high[i], low[i], close[i - 1]))
            ok, fu, fl, up, pc, _ = _band_step(
                e, high[i], low[i], close[i], mult, fu, fl, up, pc, True
            )
            _band_out(ok, fu, fl, up, out_st, out_dir, i)
            states[i, 0], states[i, 1], states[i, 2] = e, fu, fl
            states[i, 3], states[i, 4] = (1.0 if up else 0.0), pc


__all__ = [
    "adx_continue",
    "adx_states",
    "macd_continue",
    "macd_states",
    "rsi_continue",
    "rsi_states",
    "supertrend_continue",
    "supertrend_states",
]
