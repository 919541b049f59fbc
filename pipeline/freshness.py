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

import re
from calendar import monthrange
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np

from marketlake.pipeline import session_tables
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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
def _sessions(name: str, start: str, end: str) -> tuple[np.ndarray, np.ndarray]:
    """The sessions of calendar ``name`` over [start, end] (beyond the years whose holidays
    the library records: its widest valid range) as (dates, closes) in microseconds since
    the epoch, UTC; built once per month and machine (:mod:`.session_tables`)."""

    def build() -> dict[str, np.ndarray]:
        import exchange_calendars as xc

        try:
            cal = xc.get_calendar(name, start=start, end=end)
        except ValueError:  # beyond the years whose holidays the library records
            cal = xc.get_calendar(name)  # its widest valid range (slower to build)
        sched = cal.schedule
        day = sched.index.values.astype("datetime64[us]").astype(np.int64)
        close = sched["close"].dt.tz_convert(None).to_numpy().astype("datetime64[us]")
        return {"day": day, "close": close.astype(np.int64)}

    t = session_tables.cached(f"{name}-{start}-{end}", build)
    return t["day"], t["close"]


def last_closed_session(calendar: str, at: datetime) -> tuple[datetime, datetime]:
    """``(session date as 00:00 UTC, close time UTC)`` of the last session ``calendar`` had
    closed at ``at`` (clamped to the calendar's range: the years whose holidays the library
    records). Only the weeks around ``at`` are looked up, which keeps this fast."""
    at = at.astimezone(UTC)
    start = (at - timedelta(days=30)).strftime("%Y-%m-01")
    # to the end of the month two days on: one table (and cache file) serves a month of runs
    later = at + timedelta(days=2)
    last_day = monthrange(later.year, later.month)[1]
    day, close = _sessions(calendar, start, f"{later:%Y-%m}-{last_day:02d}")
    at_us = (at - _EPOCH) // timedelta(microseconds=1)
    # sessions close in order: the last one closed by ``at`` (past the table's end: its last)
    i = int(np.searchsorted(close, at_us, "right")) - 1
    if i < 0:
        raise ValueError(f"{calendar}: no session closed by {at:%Y-%m-%d %H:%M}")
    return _EPOCH + timedelta(microseconds=int(day[i])), _EPOCH + timedelta(
        microseconds=int(close[i])
    )


@lru_cache(maxsize=256)
def expected_last_bar(calendar: str, timeframe: str, at: datetime) -> datetime:
    """The open time of the newest bar a complete series holds at ``at``: the bar of the
    last closed session (daily and longer: its date's bar, floored to the timeframe;
    intraday: the session's last bar)."""
    session, close = last_closed_session(calendar, at)
    if timeframe in tfs.INTRADAY:
        return close - tfs.DURATION[timeframe]
    return tfs.floor(session, timeframe)
