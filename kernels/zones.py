"""UTC offset tables of IANA zones, without numba: what the session kernel walks.

The UTC offset of a zone only changes at a handful of instants, so per zone and covered time
range a table of offset changes is built (found by probing the zone once per day and
bisecting to the second where the offset differs; assumes at most one change per zone per
day, true for every zone in the tz database). ``kernels.sessions.session_ids_into`` walks it
alongside the sorted timestamps.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

DAY_S = 86_400
INT64_MIN = np.iinfo(np.int64).min
_UTC_NAMES = {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Zulu", "GMT"}
# datetime.fromtimestamp's safe range, in seconds
_T_MIN = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())
_T_MAX = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())


def check_tz(name: str) -> None:
    """Raise ValueError unless ``name`` is a known IANA time zone."""
    if not isinstance(name, str):
        raise ValueError(f"session time zone must be a string, got {name!r}")
    if name in _UTC_NAMES:
        return
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@functools.lru_cache(maxsize=256)
def tz_transitions(name: str, day0: int, day1: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """UTC offset table of ``name`` for days ``day0..day1`` (days since the epoch, UTC).

    Returns ``(starts, offsets)`` in seconds: ``offsets[j]`` applies from ``starts[j]`` on;
    ``starts[0]`` is INT64_MIN.
    """
    if name in _UTC_NAMES:
        return (INT64_MIN,), (0,)
    zone = ZoneInfo(name)

    def off(t: int) -> int:
        t = min(max(t, _T_MIN), _T_MAX)
        return int(datetime.fromtimestamp(t, zone).utcoffset().total_seconds())

    starts = [INT64_MIN]
    t = (day0 - 1) * DAY_S
    prev = off(t)
    offsets = [prev]
    end = (day1 + 2) * DAY_S
    while t < end:
        nt = t + DAY_S
        o = off(nt)
        if o != prev:
            lo, hi = t, nt  # off(lo) == prev, off(hi) != prev: find the first changed second
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if off(mid) == prev:
                    lo = mid
                else:
                    hi = mid
            starts.append(hi)
            offsets.append(o)
            prev = o
        t = nt
    return tuple(starts), tuple(offsets)


def tz_tables(
    names: list[str], t_min: int, t_max: int, units_per_second: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated offset tables for ``names`` covering timestamps ``t_min..t_max`` (in ts
    units). Returns ``(ptr, starts, offsets)``: zone ``z`` uses ``starts[ptr[z]:ptr[z+1]]``."""
    day0 = (t_min // units_per_second) // DAY_S
    day1 = (t_max // units_per_second) // DAY_S
    ptr = [0]
    starts: list[int] = []
    offsets: list[int] = []
    for name in names:
        st, of = tz_transitions(name, int(day0), int(day1))
        starts.extend([st[0]] + [s * units_per_second for s in st[1:]])
        offsets.extend(o * units_per_second for o in of)
        ptr.append(len(starts))
    return (
        np.asarray(ptr, dtype=np.int64),
        np.asarray(starts, dtype=np.int64),
        np.asarray(offsets, dtype=np.int64),
    )


__all__ = ["DAY_S", "INT64_MIN", "check_tz", "tz_tables", "tz_transitions"]
