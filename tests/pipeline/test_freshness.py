"""Calendar-aware freshness: the last session an exchange has closed, per calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from marketlake.pipeline import freshness
from marketlake.pipeline.config import SegmentSettings, load_settings


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("calendar", "when", "session"),
    [
        ("XNYS", at(2025, 3, 8, 12), at(2025, 3, 7)),  # Saturday: Friday's session
        ("XNYS", at(2025, 3, 7, 20, 59), at(2025, 3, 6)),  # Friday before the close
        ("XNYS", at(2025, 3, 7, 21, 1), at(2025, 3, 7)),  # just after it
        ("XNYS", at(2025, 4, 19, 12), at(2025, 4, 17)),  # Good Friday: closed
        ("XNAS", at(2025, 11, 27, 23), at(2025, 11, 26)),  # Thanksgiving
        ("XBOM", at(2025, 2, 26, 20), at(2025, 2, 25)),  # Mahashivratri
        ("XIDX", at(2025, 3, 31, 12), at(2025, 3, 27)),  # Nyepi and Idul Fitri holidays
        ("24/7", at(2025, 3, 8, 12), at(2025, 3, 7)),  # crypto: the last whole UTC day
    ],
)
def test_last_closed_session(calendar, when, session):
    assert freshness.last_closed_session(calendar, when)[0] == session


def test_expected_last_bar_per_timeframe():
    sat = at(2025, 3, 8, 12)
    assert freshness.expected_last_bar("XNYS", "1D", sat) == at(2025, 3, 7)
    assert freshness.expected_last_bar("XNYS", "1W", sat) == at(2025, 3, 3)
    assert freshness.expected_last_bar("XNYS", "1h", sat) == at(2025, 3, 7, 20)


@pytest.mark.parametrize(
    ("exchange", "asset_type", "tz", "calendar"),
    [
        ("NMS", "equity", None, "XNAS"),
        ("NYQ", "etf", None, "XNYS"),
        ("NSE", "option", None, "XBOM"),
        ("NSE_INDEX", "index", None, "XBOM"),
        ("BSE", "equity", None, "XBOM"),
        ("IDX", "equity", None, "XIDX"),
        (None, "equity", "Asia/Jakarta", "XIDX"),
        ("INDODAX", "crypto", "UTC", "24/7"),
        (None, "fx", None, "24/5"),
    ],
)
def test_instruments_map_to_calendars(exchange, asset_type, tz, calendar):
    assert freshness.calendar_for(exchange, asset_type, tz) == calendar


def test_schedule_interval_and_tolerance(home):
    settings = load_settings(home=home, env={})
    seg = SegmentSettings("s", schedule="every 6h", tolerance_hours=1.5)
    assert freshness.schedule_interval(seg, settings) == timedelta(hours=6)
    assert freshness.tolerance(seg, "XNYS") == timedelta(hours=1.5)
    daily = SegmentSettings("d", schedule="daily")
    assert freshness.schedule_interval(daily, settings) == timedelta(days=1)
    assert freshness.schedule_interval(None, settings) == timedelta(hours=24)
    assert freshness.tolerance(None, "24/7") < freshness.tolerance(None, "XNYS")
