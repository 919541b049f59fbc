"""The synthetic market's trading sessions, from the ``exchange-calendars`` library.

The same calendars ``status`` and planning use (:mod:`marketlake.pipeline.freshness`): XNYS /
XNAS for US listings, XBOM for NSE and BSE, XIDX for Indonesia, ``24/5`` for FX and ``24/7``
for crypto, with their holidays, special closures and early closes. Years past the last one
whose holidays the library records (e.g. XBOM's) trade every weekday at the calendar's
regular hours. Each calendar is built once per machine as plain numpy arrays, kept in the
user's cache directory (:mod:`marketlake.pipeline.session_tables`).
"""

from __future__ import annotations

import threading
from datetime import date
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from marketlake.pipeline import session_tables

ORIGIN = date(2000, 1, 3)
_US_PER_MIN = 60_000_000
_BUILDING = threading.Lock()


class Sessions(NamedTuple):
    """Every session of a calendar from :data:`ORIGIN` through its last year: ``day``
    (datetime64[D]), ``opens`` (microseconds since the epoch, UTC), ``minutes`` (the length
    of the session), and ``traded``: for each day from the origin, whether it is a session."""

    day: np.ndarray
    opens: np.ndarray
    minutes: np.ndarray
    traded: np.ndarray


def _build(name: str, last_year: int):
    import exchange_calendars as xc

    end = f"{last_year}-12-31"
    try:
        return xc.get_calendar(name, start=ORIGIN.isoformat(), end=end)
    except ValueError:  # holidays recorded only up to an earlier year: take what there is
        return xc.get_calendar(name, start=ORIGIN.isoformat())


def _regular(cal, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Opens and lengths of weekday sessions on ``days`` at the calendar's regular hours."""
    import pandas as pd

    local = pd.DatetimeIndex(days.astype("datetime64[ns]"))
    open_t, close_t = cal.open_times[-1][1], cal.close_times[-1][1]
    opens = (local + pd.Timedelta(hours=open_t.hour, minutes=open_t.minute)).tz_localize(cal.tz)
    minutes = (close_t.hour * 60 + close_t.minute) - (open_t.hour * 60 + open_t.minute)
    minutes = minutes if minutes > 0 else minutes + 1440
    opens_us = opens.tz_convert("UTC").asi8 // 1000
    return opens_us, np.full(len(days), minutes, dtype=np.int64)


def sessions(name: str, last_year: int) -> Sessions:
    """The sessions of calendar ``name`` from the origin through the end of ``last_year``,
    built once per process: fetch threads asking at the same time wait for the first one
    (building a calendar costs a few hundred milliseconds of Python)."""
    with _BUILDING:
        return _sessions(name, last_year)


@lru_cache(maxsize=32)
def _sessions(name: str, last_year: int) -> Sessions:
    """Built once per machine and library version (:mod:`marketlake.pipeline.session_tables`):
    building it imports pandas and evaluates every holiday rule since the origin."""
    arrays = session_tables.cached(
        f"synthetic-{name}-{ORIGIN.year}-{last_year}", lambda: _built(name, last_year)._asdict()
    )
    out = Sessions(**{k: arrays[k] for k in Sessions._fields})
    for a in out:
        a.setflags(write=False)
    return out


def _built(name: str, last_year: int) -> Sessions:
    cal = _build(name, last_year)
    sched = cal.schedule
    day = sched.index.values.astype("datetime64[D]")
    opens = sched["open"].dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    closes = sched["close"].dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    minutes = (closes - opens) // _US_PER_MIN
    keep = day <= np.datetime64(f"{last_year}-12-31")
    day, opens, minutes = day[keep], opens[keep], minutes[keep]
    first_after = (day[-1] if len(day) else np.datetime64(ORIGIN, "D") - 1) + 1
    extra = np.arange(first_after, np.datetime64(f"{last_year + 1}-01-01"), dtype="datetime64[D]")
    extra = extra[((extra.astype(np.int64) + 3) % 7) < 5]  # weekdays (1970-01-01: Thursday)
    if len(extra):
        o, m = _regular(cal, extra)
        day, opens, minutes = (np.concatenate(x) for x in ((day, extra), (opens, o), (minutes, m)))
    span = (np.datetime64(f"{last_year + 1}-01-01") - np.datetime64(ORIGIN, "D")).astype(int)
    traded = np.zeros(span, dtype=bool)
    traded[(day - np.datetime64(ORIGIN, "D")).astype(np.int64)] = True
    return Sessions(day, opens, minutes.astype(np.int64), traded)


def clear() -> None:
    """Forget every built calendar."""
    with _BUILDING:
        _sessions.cache_clear()
