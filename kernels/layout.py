"""Row layouts of kernel outputs: rows put in partition order, gathered with their validity.

A full recompute writes one file per (timeframe, period) partition, while the kernels work
symbol after symbol. :func:`period_order` finds each row's period (the UTC year of its ``ts``,
or year and month for intraday bars: ``lake.tables.with_period_code``'s codes) and the stable
order that groups rows by period, in one counting pass; :func:`take_valid` gathers the
output block's columns into that order in parallel, turning NaN into a cleared validity bit
on the way (Arrow's layout, no second pass over the values), and :func:`take` gathers a key
column. Each period's rows are then one contiguous slice of every column.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from marketlake.kernels._common import JIT, STEP

CHUNK = 1 << 14  # rows per parallel task (a multiple of 8: bitmap bytes are never shared)


@njit(**STEP)
def _year_month(days):
    """The proleptic Gregorian (year, month) of ``days`` since 1970-01-01."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month


@njit(**STEP)
def _days(year, month):
    """Days from 1970-01-01 to the first of ``month`` in ``year`` (inverse of
    :func:`_year_month`)."""
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(**JIT)
def period_order(ts, units_per_day, monthly):
    """``(order, codes, bounds)``: the stable order of rows by period code (``year``, or
    ``year * 100 + month`` when ``monthly``), the distinct codes ascending, and the bounds of
    each code's rows in that order (``bounds[k]:bounds[k + 1]``).

    A row's period is worked out from the calendar only when its ``ts`` leaves the span of
    the row before's (rows come series by series, ts ascending: a few times per series)."""
    n = ts.shape[0]
    code = np.empty(n, np.int64)
    lo = np.iinfo(np.int64).max
    hi = np.iinfo(np.int64).min
    first = 0  # [first, end) the span of period c, in units of ts
    end = 0
    c = 0
    for i in range(n):
        t = ts[i]
        if i == 0 or t < first or t >= end:
            year, month = _year_month(t // units_per_day)
            if monthly:
                c = year * 100 + month
                first = _days(year, month) * units_per_day
                end = (
                    _days(year + 1, 1) if month == 12 else _days(year, month + 1)
                ) * units_per_day
            else:
                c = year
                first = _days(year, 1) * units_per_day
                end = _days(year + 1, 1) * units_per_day
            lo = min(lo, c)
            hi = max(hi, c)
        code[i] = c
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.zeros(1, np.int64)
    start = np.zeros(hi - lo + 2, np.int64)
    for i in range(n):
        start[code[i] - lo + 1] += 1
    k = 0
    for j in range(hi - lo + 1):
        if start[j + 1]:
            k += 1
        start[j + 1] += start[j]
    codes = np.empty(k, np.int64)
    bounds = np.empty(k + 1, np.int64)
    m = 0
    for j in range(hi - lo + 1):
        if start[j + 1] > start[j]:
            codes[m] = j + lo
            bounds[m] = start[j]
            m += 1
    bounds[k] = n
    order = np.empty(n, np.int64)
    for i in range(n):
        j = code[i] - lo
        order[start[j]] = i
        start[j] += 1
    return order, codes, bounds


@njit(**JIT)
def _runs(order):
    """Starts of the runs of consecutive source rows in ``order`` (``order[j + 1] ==
    order[j] + 1`` within a run), and the row count at the end."""
    n = order.shape[0]
    starts = np.empty(n + 1, np.int64)
    k = 0
    for j in range(n):
        if j == 0 or order[j] != order[j - 1] + 1:
            starts[k] = j
            k += 1
    starts[k] = n
    return starts[: k + 1]


_SPREAD = np.uint64(0x0102040810204080)  # byte q of a word to bit 56 + q of the product


@njit(**STEP)
def _byte_of_8(values, j):
    """The validity byte of ``values[j:j + 8]`` (bit q set where value q is not NaN): the
    eight flags as the bytes of one word, gathered into its top byte by one multiply (their
    partial products never share a bit). A batch of 840k rows x 14 columns is laid out with
    17 ms of CPU against 28 ms shifting each flag into the byte."""
    word = np.uint64(0)
    for q in range(8):
        v = values[j + q]
        word |= np.uint64(v == v) << np.uint64(8 * q)
    return np.uint8((word * _SPREAD) >> np.uint64(56))


@njit(parallel=True, **JIT)
def take_valid(block, order, out, bits):
    """``out[c, j] = block[c, order[j]]`` for every column ``c``, and ``bits[c]`` its Arrow
    validity bitmap (bit ``j`` cleared where the value is NaN).

    Rows in period order are runs of consecutive source rows (a series' bars in one period),
    so each run is copied whole; the bitmap is then built from the cache-hot copy."""
    ncols = out.shape[0]
    n = order.shape[0]
    runs = _runs(order)
    for t in prange((n + CHUNK - 1) // CHUNK):
        a = t * CHUNK
        b = min(n, a + CHUNK)
        first = np.searchsorted(runs, a, side="right") - 1
        for c in range(ncols):
            src = block[c]
            dst = out[c]
            r = first
            j = a
            while j < b:
                e = min(b, runs[r + 1])
                s = order[runs[r]] + (j - runs[r])
                dst[j:e] = src[s : s + (e - j)]
                j = e
                r += 1
            mask = bits[c]
            j0 = a
            while j0 + 8 <= b:
                mask[j0 >> 3] = _byte_of_8(dst, j0)
                j0 += 8
            if j0 < b:
                byte = 0
                for q in range(b - j0):
                    v = dst[j0 + q]
                    byte |= (1 if v == v else 0) << q
                mask[j0 >> 3] = byte


@njit(parallel=True, **JIT)
def take(src, order, out):
    """``out[j] = src[order[j]]``."""
    n = order.shape[0]
    for t in prange((n + CHUNK - 1) // CHUNK):
        for j in range(t * CHUNK, min(n, (t + 1) * CHUNK)):
            out[j] = src[order[j]]


__all__ = ["period_order", "take", "take_valid"]
