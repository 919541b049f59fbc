"""When a series is overdue, calendar-aware.

Each instrument maps to a trading calendar of the ``exchange-calendars`` library (maintained
holiday rules, shipped with the package, so it works offline): XNYS/XNAS for US listings, XBOM
for Indian ones (NSE and BSE share their trading holidays; the library has no separate NSE
calendar), XIDX for Indonesia, ``24/5`` for FX and ``24/7`` for crypto. A bar series is
overdue when its newest bar is older than the bar of the last session the exchange had
closed by ``now - tolerance``; any series is overdue when its last success is older than its
segment's schedule (plus tolerance) allows.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import platformdirs

from marketlake.pipeline import timeframes as tfs
from marketlake.pipeline.config import SegmentSettings, Settings

ALWAYS_OPEN = "24/7"
_BY_EXCHANGE = {
    # United States (Yahoo's codes besides the MICs)
    **dict.fromkeys(("XNYS", "NYSE", "NYQ", "ASE", "AMEX", "PCX", "ARCA", "BATS"), "XNYS"),
    **dict.fromkeys(("XNAS", "NASDAQ", "NMS", "NGM", "NCM", "NAS", "NIM"), "XNAS"),
    # India: NSE trades on BSE's holiday calendar
    **dict.fromkeys(("XNSE", "NSE", "NSI", "NSE_EQ", "NSE_FO", "NSE_INDEX", "NFO"), "XBOM"),
    **dict.fromkeys(("XBOM", "BSE", "BOM", "BSE_EQ", "BSE_FO", "BSE_INDEX", "BFO"), "XBOM"),
    # Indonesia
    **dict.fromkeys(("XIDX", "IDX", "JKT"), "XIDX"),
}
_BY_TIMEZONE = {
    "America/New_York": "XNYS",
    "Asia/Kolkata": "XBOM",
    "Asia/Calcutta": "XBOM",
    "Asia/Jakarta": "XIDX",
}
_BY_ASSET = {"crypto": ALWAYS_OPEN, "fx": "24/5"}
# grace after a session closes before its bar is expected, when the segment sets none
DEFAULT_TOLERANCE = {ALWAYS_OPEN: timedelta(hours=2)}
DEFAULT_EXCHANGE_TOLERANCE = timedelta(hours=6)
_INTERVAL = re.compile(r"^(?:every\s+)?(\d+(?:\.\d+)?)\s*(m|min|h|d|w)$", re.IGNORECASE)
_NAMED = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(weeks=1)}
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def calendar_for(exchange: str | None, asset_type: str | None, timezone: str | None) -> str:
    """The calendar name of an instrument: by asset type (crypto, FX), exchange, then
    timezone; an instrument none of these place trades on the NYSE calendar."""
    if asset_type in _BY_ASSET:
        return _BY_ASSET[asset_type]
    code = (exchange or "").strip().upper()
    if code in _BY_EXCHANGE:
        return _BY_EXCHANGE[code]
    return _BY_TIMEZONE.get(timezone or "", "XNYS")


def tolerance(seg: SegmentSettings | None, calendar: str) -> timedelta:
    if seg is not None and seg.tolerance_hours is not None:
        return timedelta(hours=seg.tolerance_hours)
    return DEFAULT_TOLERANCE.get(calendar, DEFAULT_EXCHANGE_TOLERANCE)


def schedule_interval(seg: SegmentSettings | None, settings: Settings) -> timedelta:
    """How often the segment is meant to succeed: its interval schedule (``6h``, ``every
    30m``, ``daily``…), else ``sync.stale_after_hours`` (also for cron schedules)."""
    text = (seg.schedule or "").strip().lower() if seg is not None else ""
    if text in _NAMED:
        return _NAMED[text]
    m = _INTERVAL.match(text)
    if m:
        return timedelta(**{_UNITS[m.group(2).lower()]: float(m.group(1))})
    return timedelta(hours=settings.stale_after_hours)


@lru_cache(maxsize=32)
def _calendar(name: str, start: str, end: str) -> Any:
    """The exchange calendar over [start, end]; built once per month and machine: building one
    evaluates every holiday rule with pandas (0.1-0.5 s, each nightly run), unpickling the
    built one from the user's cache directory takes 10 ms."""
    import pickle

    path = _cache_path(name, start, end)
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except Exception:  # noqa: BLE001 - not cached yet, unreadable or damaged: build it
        pass
    import exchange_calendars as xc

    try:
        cal = xc.get_calendar(name, start=start, end=end)
    except ValueError:  # beyond the years whose holidays the library records
        cal = xc.get_calendar(name)  # its widest valid range (slower to build)
    try:  # temp + rename: a reader never sees half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(cal))
        os.replace(tmp, path)
    except OSError:  # a read-only cache directory: build it each time
        pass
    return cal


def _cache_path(name: str, start: str, end: str) -> Path:
    """Where the calendar is cached: keyed by the library, pandas and Python versions (the
    pickle's readers), in the user's cache directory."""
    import exchange_calendars as xc
    import pandas as pd

    root = platformdirs.user_cache_dir("marketlake")
    key = f"xc{xc.__version__}-pd{pd.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    return Path(root) / "calendars" / key / f"{name.replace('/', '_')}-{start}-{end}.pickle"


def last_closed_session(calendar: str, at: datetime) -> tuple[datetime, datetime]:
    """``(session date as 00:00 UTC, close time UTC)`` of the last session ``calendar`` had
    closed at ``at`` (clamped to the calendar's range: the years whose holidays the library
    records). Only the weeks around ``at`` are built, which keeps this fast."""
    import pandas as pd

    at_ts = pd.Timestamp(at).tz_convert("UTC")
    start = (at_ts - pd.Timedelta(days=30)).strftime("%Y-%m-01")
    # to the end of the month two days on: one calendar (and cache file) serves a month of runs
    end = (at_ts + pd.Timedelta(days=2) + pd.offsets.MonthEnd(0)).strftime("%Y-%m-%d")
    cal = _calendar(calendar, start, end)
    if at_ts >= cal.session_close(cal.last_session):  # past the window's (or range's) end
        session = cal.last_session
    else:
        session = cal.minute_to_past_session(max(at_ts, cal.first_minute))
    close = cal.session_close(session).to_pydatetime()
    return datetime(session.year, session.month, session.day, tzinfo=UTC), close


@lru_cache(maxsize=256)
def expected_last_bar(calendar: str, timeframe: str, at: datetime) -> datetime:
    """The open time of the newest bar a complete series holds at ``at``: the bar of the
    last closed session (daily and longer: its date's bar, floored to the timeframe;
    intraday: the session's last bar)."""
    session, close = last_closed_session(calendar, at)
    if timeframe in tfs.INTRADAY:
        return close - tfs.DURATION[timeframe]
    return tfs.floor(session, timeframe)
