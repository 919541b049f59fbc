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


@pytest.mark.parametrize("calendar", ["XNYS", "XBOM"])
def test_a_month_long_calendar_window_answers_as_the_two_day_one(calendar):
    # the calendar is built (and cached) to the end of the month, no longer to `at` + 2 days:
    # the same answers every 37 minutes over a year-end with holidays, around every close
    import exchange_calendars as xc
    import pandas as pd

    built = {}
    for when in pd.date_range("2025-12-22", "2026-01-03", freq="37min", tz="UTC"):
        start = (when - pd.Timedelta(days=30)).strftime("%Y-%m-01")
        end = (when + pd.Timedelta(days=2)).strftime("%Y-%m-%d")
        cal = built.get(end) or built.setdefault(end, xc.get_calendar(calendar, start, end))
        if when >= cal.session_close(cal.last_session):
            session = cal.last_session
        else:
            session = cal.minute_to_past_session(max(when, cal.first_minute))
        want = (datetime(session.year, session.month, session.day, tzinfo=UTC),)
        want += (cal.session_close(session).to_pydatetime(),)
        assert freshness.last_closed_session(calendar, when.to_pydatetime()) == want, when


def test_calendars_are_cached_on_disk(tmp_path, monkeypatch):
    from marketlake.pipeline import session_tables

    monkeypatch.setattr(session_tables.platformdirs, "user_cache_dir", lambda app: str(tmp_path))
    freshness._sessions.cache_clear()
    first = freshness.last_closed_session("XNYS", at(2025, 3, 8, 12))
    (cached,) = tmp_path.rglob("XNYS-*.npz")
    freshness._sessions.cache_clear()
    monkeypatch.setattr("exchange_calendars.get_calendar", None)  # not built again
    assert freshness.last_closed_session("XNYS", at(2025, 3, 9, 12)) == first
    cached.write_bytes(b"damaged")
    freshness._sessions.cache_clear()
    monkeypatch.undo()
    monkeypatch.setattr(session_tables.platformdirs, "user_cache_dir", lambda app: str(tmp_path))
    assert freshness.last_closed_session("XNYS", at(2025, 3, 8, 12)) == first  # rebuilt
    assert not list(tmp_path.rglob("*.tmp.npz"))  # written through a renamed temporary file
    freshness._sessions.cache_clear()


def test_a_cached_lookup_does_not_import_exchange_calendars(tmp_path):
    # a nightly run's calendar look-ups: a subprocess, so the modules start unloaded
    import subprocess
    import sys

    code = f"""
import sys
from datetime import datetime, UTC
import platformdirs
platformdirs.user_cache_dir = lambda app: {str(tmp_path)!r}
from marketlake.pipeline import freshness
when = datetime(2025, 3, 8, 12, tzinfo=UTC)
first = freshness.last_closed_session("XNYS", when)
if sys.argv[1] == "warm":
    assert "exchange_calendars" not in sys.modules
print(first)
"""
    cold = subprocess.run([sys.executable, "-c", code, "cold"], capture_output=True, text=True)
    warm = subprocess.run([sys.executable, "-c", code, "warm"], capture_output=True, text=True)
    assert cold.returncode == 0 and warm.returncode == 0, cold.stderr + warm.stderr
    assert warm.stdout == cold.stdout != ""
