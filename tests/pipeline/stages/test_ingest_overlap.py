"""A sync checks the next batch's bars while the previous batch commits, and still lands
each batch in one commit, in order, nothing lost or doubled."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import polars as pl

from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages import ingest

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def test_the_next_batch_is_checked_while_one_commits(home, monkeypatch):
    settings = load_settings(home=home, env={}, now=NOW).with_(batch_tasks=2)
    lake = Lake(home)
    syms = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
    universe.add_many(lake, syms, run_id="u", provider="synthetic", asset_type="equity")
    second_checked = threading.Event()
    checks: list[int] = []
    waited: list[bool] = []
    check, land = ingest.check_bars, ingest.land_checked

    def checking(frame: pl.DataFrame, timeframe: str | None = None) -> ingest.Checked:
        checks.append(frame.height)
        if len(checks) == 2:
            second_checked.set()
        return check(frame, timeframe)

    def landing(lake: Lake, checked: ingest.Checked, **kw) -> ingest.Landed:
        if not waited:  # the first commit holds until the second batch has been checked
            waited.append(second_checked.wait(timeout=30))
        return land(lake, checked, **kw)

    monkeypatch.setattr(ingest, "check_bars", checking)
    monkeypatch.setattr(ingest, "land_checked", landing)
    before = lake.version("ohlcv")
    res = ingest.run_sync(settings, provider="synthetic", timeframes=["1D"], start="2025-01-01")

    assert waited == [True]  # checked while the first batch was committing
    assert res.status == "ok" and res.tasks_ok == len(syms)
    assert len(checks) == 3  # three batches of two symbols, one commit each
    assert lake.version("ohlcv") == (0 if before is None else before) + 3
    stored = lake.read("ohlcv")
    assert stored.height == res.inserted == sum(checks)
    assert stored.select("symbol", "timeframe", "ts").is_duplicated().sum() == 0
    assert sorted(stored.get_column("symbol").unique().to_list()) == syms
