"""Exchange-local session ids (local calendar dates) for VWAP and pivots, without per-row tz calls.

Converting millions of timestamps with a tz database is slow (polars' ``convert_time_zone`` costs
~0.1 us/row), and the UTC offset of a zone only changes at a handful of instants. So the adapter
builds, per IANA zone and per covered time range, a table of offset changes
(``kernels.zones``, numba-free), and the numba kernel ``session_ids_into`` walks that table
alongside the (sorted) timestamps:
``session = floor((ts + utc_offset(ts)) / 1 day)``, i.e. days since 1970-01-01 in local time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from marketlake.kernels._common import JIT
from marketlake.kernels.zones import (  # noqa: F401 -- re-exported
    DAY_S,
    INT64_MIN,
    check_tz,
    tz_tables,
    tz_transitions,
)


@njit(**JIT)
def session_ids_into(ts, starts, offsets, units_per_day, out):
    """Local-date session id of each (ascending) timestamp ``ts`` into ``out`` (int64)."""
    n = ts.shape[0]
    if n == 0:
        return
    m = starts.shape[0]
    j = np.searchsorted(starts, ts[0], side="right") - 1
    if j < 0:
        j = 0
    day = 0
    day_lo = 1  # empty [day_lo, day_hi): the first row computes its day
    day_hi = 0
    for i in range(n):
        t = ts[i]
        while j + 1 < m and starts[j + 1] <= t:
            j += 1
        lt = t + offsets[j]
        if lt < day_lo or lt >= day_hi:  # new local day: one division per day, not per row
            day = lt // units_per_day
            day_lo = day * units_per_day
            day_hi = day_lo + units_per_day
        out[i] = day


def session_ids(ts: np.ndarray, tz: str = "UTC", units_per_second: int = 1_000_000) -> np.ndarray:
    """Session ids (local dates as days since the epoch) of ascending int64 timestamps."""
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    out = np.empty(ts.shape[0], np.int64)
    if ts.shape[0] == 0:
        return out
    check_tz(tz)
    _, starts, offsets = tz_tables([tz], int(ts.min()), int(ts.max()), units_per_second)
    session_ids_into(ts, starts, offsets, units_per_second * DAY_S, out)
    return out


__all__ = ["check_tz", "session_ids", "session_ids_into", "tz_tables", "tz_transitions"]
