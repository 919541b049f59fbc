"""The parallel numba driver: all requested indicators for all symbols in one call.

Rows are sorted by (symbol, ts) and symbol ``s`` owns rows ``offsets[s]:offsets[s+1]``. The
driver runs ``prange`` over groups of four symbols of similar length, dynamically scheduled in
small chunks (a thread that other processes slow down simply takes fewer); per group it runs every
op of the plan -- the recursive TA-Lib ones as ``*_lanes`` kernels that interleave the four
series (see ``kernels.moving``), the others per symbol on contiguous slices -- while the
group's inputs are cache-resident, and writes into rows of one preallocated
``(n_columns, n_rows)`` output block: no per-symbol Python, no concatenation, no copies.
A plan row is ``(code, first output row, int params...)`` plus one float parameter; output
rows of an op are consecutive, in the registry's column order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from marketlake.kernels._common import JIT, ix, store_fence
from marketlake.kernels.levels import fib_into, pivots_into
from marketlake.kernels.momentum import macd_lanes, rsi_lanes
from marketlake.kernels.moving import ema_lanes, sma_lanes
from marketlake.kernels.plan import (  # noqa: F401 -- re-exported
    ADX,
    ADX_ATR,
    ATR,
    BBANDS,
    CODES,
    EMA,
    FIB,
    MACD,
    OBV,
    PIVOTS,
    RSI,
    SESSION_CODES,
    SMA,
    SUPERTREND,
    VWAP,
    lane_groups,
    split_ops,
)
from marketlake.kernels.sessions import session_ids_into
from marketlake.kernels.trend import adx_atr_lanes, adx_lanes
from marketlake.kernels.volatility import atr_lanes, bbands_lanes, supertrend_band_into
from marketlake.kernels.volume import obv_lanes, vwap_into

_SCAN_BLOCK = 256  # rows per block of scan_string_views' vectorised test


@njit(**JIT)
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


@njit(**JIT)
def scan_string_views(words, lens, data, ts):
    """``scan_runs`` on an Arrow string-view column without materialising the strings.

    ``words`` (n x 2 int64), ``lens`` (n x 4 int32) and ``data`` (n x 16 uint8) view the same
    16-byte views; equal views mean equal strings, and strings of up to 12 bytes are inline, so
    comparing the length and those bytes decides. Returns ``(offsets, ascending, ok)``;
    ``ok`` is False (give up) when two adjacent longer strings would need their out-of-line
    bytes compared.

    Rows go by blocks: one vectorised pass tells whether every view of a block equals the one
    before it (within a run: nearly always), and only a block where one differs is compared
    row by row (2,000 x 2,520 bars, one thread: 10 ms CPU against 15 ms, medians of 15)."""
    n = words.shape[0]
    flat = words.reshape(-1)  # row r's view is flat[2r:2r + 2]
    bounds = np.empty(n + 1, np.int64)
    bounds[0] = 0
    k = 0
    ascending = True
    for b in range(1, n, _SCAN_BLOCK):
        e = min(b + _SCAN_BLOCK, n)
        diff = 0
        for q in range(2 * b, 2 * e):
            diff |= flat[ix(q)] ^ flat[ix(q - 2)]
        if diff == 0:
            desc = False
            for i in range(b, e):
                desc |= ts[ix(i)] < ts[ix(i - 1)]
            if desc:
                ascending = False
            continue
        for i in range(b, e):
            same = (
                flat[ix(2 * i)] == flat[ix(2 * i - 2)]
                and flat[ix(2 * i + 1)] == flat[ix(2 * i - 1)]
            )
            if not same:
                ln = lens[i, 0]
                if ln == lens[i - 1, 0]:
                    if ln > 12:
                        return bounds[:1], False, False
                    same = True
                    for j in range(4, 4 + ln):
                        if data[i, j] != data[i - 1, j]:
                            same = False
                            break
            if same:
                if ts[i] < ts[i - 1]:
                    ascending = False
            else:
                k += 1
                bounds[k] = i
    if n:
        k += 1
        bounds[k] = n
    return bounds[: k + 1].copy(), ascending, True


@njit(**JIT)
def run_gather_index(starts, lengths):
    """Row indices that put the runs ``starts[i]:starts[i] + lengths[i]`` one after another."""
    idx = np.empty(lengths.sum(), np.int64)
    j = 0
    for i in range(starts.shape[0]):
        a = starts[i]
        for k in range(lengths[i]):
            idx[j] = a + k
            j += 1
    return idx


@njit(**JIT)
def same_runs(new, new_bits, new_off, old, old_bits, old_off, starts, runs):
    """Whether rows ``runs[r]:runs[r + 1]`` of ``old`` equal rows ``starts[r]:...`` of
    ``new`` for every run ``r``, nulls alike (NaN equals NaN). ``*_bits`` are Arrow validity
    bitmaps (empty: every value valid) and ``*_off`` their first bit."""
    for r in range(starts.shape[0]):
        a = runs[r]
        b = starts[r]
        for k in range(runs[r + 1] - a):
            i = old_off + a + k
            j = new_off + b + k
            vo = old_bits.shape[0] == 0 or (old_bits[i >> 3] >> (i & 7)) & 1 == 1
            vn = new_bits.shape[0] == 0 or (new_bits[j >> 3] >> (j & 7)) & 1 == 1
            if vo != vn:
                return False
            if vo:
                x = old[a + k]
                y = new[b + k]
                if x != y and not (x != x and y != y):
                    return False
    return True


@njit(**JIT)
def _run_lanes(code, r, p1, p2, p3, fp, high, low, close, volume, out, lo, hi):
    """One lane-interleaved op on the four series ``lo[j]:hi[j]`` of a group."""
    if code == SMA:
        sma_lanes(close, p1, out[r], lo, hi)
    elif code == EMA:
        ema_lanes(close, p1, out[r], lo, hi)
    elif code == RSI:
        rsi_lanes(close, p1, out[r], lo, hi)
    elif code == MACD:
        macd_lanes(close, p1, p2, p3, out[r], out[r + 1], out[r + 2], lo, hi)
    elif code == BBANDS:
        bbands_lanes(close, p1, fp, out[r], out[r + 1], out[r + 2], lo, hi)
    elif code == ATR:
        atr_lanes(high, low, close, p1, out[r], lo, hi)
    elif code == ADX:
        adx_lanes(high, low, close, p1, out[r], out[r + 1], out[r + 2], lo, hi)
    elif code == ADX_ATR:  # ADX and an ATR of its period (in row p2), fused
        adx_atr_lanes(high, low, close, p1, out[r], out[r + 1], out[r + 2], out[p2], lo, hi)
    elif code == OBV:
        obv_lanes(close, volume, out[r], lo, hi)
    elif code == SUPERTREND:
        atr_lanes(high, low, close, p1, out[r], lo, hi)  # ATR into the line column
        for j in range(4):
            a = lo[j]
            b = hi[j]
            supertrend_band_into(high[a:b], low[a:b], close[a:b], fp, out[r][a:b], out[r + 1][a:b])


@njit(**JIT)
def _run_series(code, r, p1, h, lw, c, v, sess, out, a, b):
    """One per-series op (session or window levels) on rows ``a:b``."""
    if code == VWAP:
        vwap_into(h, lw, c, v, sess, out[r][a:b])
    elif code == PIVOTS:
        pivots_into(
            h,
            lw,
            c,
            sess,
            out[r][a:b],
            out[r + 1][a:b],
            out[r + 2][a:b],
            out[r + 3][a:b],
            out[r + 4][a:b],
            out[r + 5][a:b],
            out[r + 6][a:b],
        )
    elif code == FIB:
        fib_into(
            h,
            lw,
            p1,
            out[r][a:b],
            out[r + 1][a:b],
            out[r + 2][a:b],
            out[r + 3][a:b],
            out[r + 4][a:b],
            out[r + 5][a:b],
            out[r + 6][a:b],
        )


@njit(parallel=True, **JIT)
def run_plan(
    offsets,
    groups,
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
    tasks_per_group,
):
    """Run every op of ``ops``/``fparams`` on every symbol, writing into ``out``.

    The parallel loop runs over ``groups.shape[0] * tasks_per_group`` tasks: with one task per
    group a task runs the whole plan on its group while the group's inputs are cache-resident;
    with more, the group's ops are dealt to the tasks round-robin."""
    nops = ops.shape[0]
    for t in prange(groups.shape[0] * tasks_per_group):
        g = t // tasks_per_group
        first = t % tasks_per_group
        lo = np.zeros(4, np.int64)
        hi = np.zeros(4, np.int64)
        for j in range(4):
            s = groups[g, j]
            if s >= 0:
                lo[j] = offsets[s]
                hi[j] = offsets[s + 1]
        need_sessions = False
        per_series = False
        for k in range(first, nops, tasks_per_group):
            code = ops[k, 0]
            if code == VWAP or code == PIVOTS:
                need_sessions = True
            if code == VWAP or code == PIVOTS or code == FIB:
                per_series = True
            else:
                _run_lanes(
                    code, ops[k, 1], ops[k, 2], ops[k, 3], ops[k, 4], fparams[k],
                    high, low, close, volume, out, lo, hi,
                )  # fmt: skip
        if not per_series:
            store_fence()  # the kernels' non-temporal stores, before the loop's end
            continue
        for j in range(4):
            s = groups[g, j]
            if s < 0:
                continue
            a = lo[j]
            b = hi[j]
            if need_sessions:
                sess = np.empty(b - a, np.int64)
                z = sym_zone[s]
                t0 = tz_ptr[z]
                t1 = tz_ptr[z + 1]
                session_ids_into(ts[a:b], tz_starts[t0:t1], tz_offsets[t0:t1], units_per_day, sess)
            else:
                sess = np.empty(0, np.int64)
            for k in range(first, nops, tasks_per_group):
                _run_series(
                    ops[k, 0], ops[k, 1], ops[k, 2], high[a:b], low[a:b], close[a:b],
                    volume[a:b], sess, out, a, b,
                )  # fmt: skip
        store_fence()


__all__ = [
    "ADX_ATR",
    "CODES",
    "SESSION_CODES",
    "lane_groups",
    "run_gather_index",
    "run_plan",
    "same_runs",
    "scan_runs",
    "scan_string_views",
    "split_ops",
]
