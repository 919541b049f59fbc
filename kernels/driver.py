"""The parallel numba driver: all requested indicators for all symbols in one call.

Rows are sorted by (symbol, ts) and symbol ``s`` owns rows ``offsets[s]:offsets[s+1]``. The
driver runs ``prange`` over symbols; per symbol it runs every op of the plan on contiguous slices
(inputs are cache-resident while all indicators of that symbol are computed) and writes into
rows of one preallocated ``(n_columns, n_rows)`` output block, so no per-symbol Python, no
concatenation and no copies. A plan row is ``(code, first output row, int params...)`` plus one
float parameter; output rows of an op are consecutive, in the registry's column order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.levels import fib_into, pivots_into
from kernels.momentum import macd_into, rsi_into
from kernels.moving import ema_into, sma_into
from kernels.sessions import session_ids_into
from kernels.trend import adx_into
from kernels.volatility import atr_into, bbands_into, supertrend_into
from kernels.volume import obv_into, vwap_into

SMA, EMA, RSI, MACD, BBANDS, ATR, ADX, SUPERTREND, OBV, VWAP, PIVOTS, FIB = range(1, 13)
CODES = {
    "sma": SMA,
    "ema": EMA,
    "rsi": RSI,
    "macd": MACD,
    "bbands": BBANDS,
    "atr": ATR,
    "adx": ADX,
    "supertrend": SUPERTREND,
    "obv": OBV,
    "vwap": VWAP,
    "pivots": PIVOTS,
    "fib": FIB,
}
SESSION_CODES = (VWAP, PIVOTS)


@njit(cache=True, nogil=True)
def scan_runs(run_id, ts):
    """Offsets of the runs of equal ``run_id`` and whether ``ts`` ascends within every run."""
    n = run_id.shape[0]
    k = 0
    for i in range(1, n):
        if run_id[i] != run_id[i - 1]:
            k += 1
    offsets = np.empty(k + 2 if n else 1, np.int64)
    offsets[0] = 0
    j = 1
    ascending = True
    for i in range(1, n):
        if run_id[i] != run_id[i - 1]:
            offsets[j] = i
            j += 1
        elif ts[i] < ts[i - 1]:
            ascending = False
    if n:
        offsets[j] = n
    return offsets, ascending


@njit(cache=True, nogil=True, parallel=True)
def run_plan(
    offsets,
    high,
    low,
    close,
    volume,
    ts,
    sym_zone,
    tz_ptr,
    tz_starts,
    tz_offsets,
    units_per_day,
    ops,
    fparams,
    out,
):
    """Run every op of ``ops``/``fparams`` on every symbol slice, writing into ``out``."""
    nsym = offsets.shape[0] - 1
    nops = ops.shape[0]
    need_sessions = False
    for k in range(nops):
        if ops[k, 0] == VWAP or ops[k, 0] == PIVOTS:
            need_sessions = True
    for s in prange(nsym):
        lo = offsets[s]
        hi = offsets[s + 1]
        h = high[lo:hi]
        lw = low[lo:hi]
        c = close[lo:hi]
        v = volume[lo:hi]
        if need_sessions:
            sess = np.empty(hi - lo, np.int64)
            z = sym_zone[s]
            a = tz_ptr[z]
            b = tz_ptr[z + 1]
            session_ids_into(ts[lo:hi], tz_starts[a:b], tz_offsets[a:b], units_per_day, sess)
        else:
            sess = np.empty(0, np.int64)
        for k in range(nops):
            code = ops[k, 0]
            r = ops[k, 1]
            p1 = ops[k, 2]
            if code == SMA:
                sma_into(c, p1, out[r][lo:hi])
            elif code == EMA:
                ema_into(c, p1, out[r][lo:hi])
            elif code == RSI:
                rsi_into(c, p1, out[r][lo:hi])
            elif code == MACD:
                macd_into(
                    c, p1, ops[k, 3], ops[k, 4], out[r][lo:hi], out[r + 1][lo:hi], out[r + 2][lo:hi]
                )
            elif code == BBANDS:
                bbands_into(
                    c, p1, fparams[k], out[r][lo:hi], out[r + 1][lo:hi], out[r + 2][lo:hi]
                )
            elif code == ATR:
                atr_into(h, lw, c, p1, out[r][lo:hi])
            elif code == ADX:
                adx_into(h, lw, c, p1, out[r][lo:hi], out[r + 1][lo:hi], out[r + 2][lo:hi])
            elif code == SUPERTREND:
                supertrend_into(h, lw, c, p1, fparams[k], out[r][lo:hi], out[r + 1][lo:hi])
            elif code == OBV:
                obv_into(c, v, out[r][lo:hi])
            elif code == VWAP:
                vwap_into(h, lw, c, v, sess, out[r][lo:hi])
            elif code == PIVOTS:
                pivots_into(
                    h,
                    lw,
                    c,
                    sess,
                    out[r][lo:hi],
                    out[r + 1][lo:hi],
                    out[r + 2][lo:hi],
                    out[r + 3][lo:hi],
                    out[r + 4][lo:hi],
                    out[r + 5][lo:hi],
                    out[r + 6][lo:hi],
                )
            elif code == FIB:
                fib_into(
                    h,
                    lw,
                    p1,
                    out[r][lo:hi],
                    out[r + 1][lo:hi],
                    out[r + 2][lo:hi],
                    out[r + 3][lo:hi],
                    out[r + 4][lo:hi],
                    out[r + 5][lo:hi],
                    out[r + 6][lo:hi],
                )


__all__ = ["CODES", "SESSION_CODES", "run_plan", "scan_runs"]
