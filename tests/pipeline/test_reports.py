"""``status``: symbols never synced are counted, stale data is overdue (calendar-aware)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.reports import status
from marketlake.pipeline.stages.ingest import run_sync

FRI_EVENING = datetime(2025, 3, 7, 23, 0, tzinfo=UTC)


def _universe(home, symbols=("AAA", "BBB")) -> Lake:
    lake = Lake(home)
    fields = {"provider": "synthetic", "asset_type": "equity", "exchange": "NYQ"}
    universe.add_many(lake, list(symbols), run_id="u", **fields)
    return lake


def _row(rows, kind="ohlcv", timeframe="1D"):
    return next(r for r in rows if r["kind"] == kind and r["timeframe"] == timeframe)


def test_status_counts_symbols_never_synced(home):
    # regression: status hid symbols that were never synced
    lake = _universe(home, ("AAA", "BBB", "CCC"))
    settings = load_settings(home=home, env={}, now=FRI_EVENING)
    run_sync(settings, symbols=["AAA"], timeframes=["1D"], start="2025-01-01")
    row = _row(status(settings, lake, FRI_EVENING))
    assert (row["symbols"], row["ok"], row["never"]) == (3, 1, 2)
    assert row["overdue"] == 2  # the two never synced


def test_status_reports_data_15_months_old_as_overdue(home):
    # regression: a last bar 15 months old showed overdue 0
    lake = _universe(home)
    settings = load_settings(home=home, env={}, now=FRI_EVENING)
    run_sync(settings, timeframes=["1D"], start="2025-01-01")
    later = datetime(2026, 6, 5, 23, 0, tzinfo=UTC)
    row = _row(status(settings.with_(now=later), lake, later))
    assert (row["symbols"], row["never"], row["overdue"]) == (2, 0, 2)


def test_status_is_calendar_aware(home):
    lake = _universe(home)
    settings = load_settings(home=home, env={}, now=FRI_EVENING)
    run_sync(settings, timeframes=["1D"], start="2025-01-01")
    bars = lake.read("ohlcv").filter(pl.col("timeframe") == "1D")
    assert bars["ts"].max() == datetime(2025, 3, 7, tzinfo=UTC)  # Friday's bar is in
    # over the weekend, with a daily schedule, nothing is due: the exchange is closed
    saturday = datetime(2025, 3, 8, 20, 0, tzinfo=UTC)
    assert _row(status(settings, lake, saturday))["overdue"] == 0
    # Monday before the close (+ tolerance): still Friday's bar is the newest expected,
    # but the last success is older than the daily schedule allows
    monday = datetime(2025, 3, 10, 18, 0, tzinfo=UTC)
    assert _row(status(settings, lake, monday))["overdue"] == 2
    weekly = settings.with_(stale_after_hours=24 * 7)
    assert _row(status(weekly, lake, monday))["overdue"] == 0
    # Tuesday morning: Monday's session closed, its bar is missing
    tuesday = datetime(2025, 3, 11, 6, 0, tzinfo=UTC)
    assert _row(status(weekly, lake, tuesday))["overdue"] == 2
