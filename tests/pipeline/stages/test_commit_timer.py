"""Finished work is committed on a timer, not only when a whole batch is done."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import ProviderSettings, load_settings
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def symbols(lake: Lake) -> set[str]:
    if not lake.exists("ohlcv"):
        return set()
    return set(lake.read("ohlcv").get_column("symbol").unique().to_list())


def test_fast_symbols_commit_while_a_slow_one_is_still_fetching(home):
    # regression: one slow request held every finished symbol back until the batch ended
    release = threading.Event()
    settings = load_settings(home=home, env={}, now=NOW).with_(commit_every_s=0.2)
    providers = dict(settings.providers)
    providers["fake"] = ProviderSettings("fake", options={"hold": {"SLOW": release}})
    settings = settings.with_(providers=providers, concurrency=4)
    lake = Lake(home)
    for s in ("AAA", "BBB", "SLOW"):
        universe.add(lake, s, run_id="u", provider="fake", asset_type="equity")
    result = {}
    sync = threading.Thread(
        target=lambda: result.update(r=run_sync(settings, timeframes=["1D"], start="2026-10-01"))
    )
    sync.start()
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not symbols(lake):
            time.sleep(0.1)
        seen = symbols(lake)  # SLOW is still held: only a timed commit can have landed these
    finally:
        release.set()
        sync.join(timeout=60)
    assert seen == {"AAA", "BBB"}
    assert result["r"].tasks_ok == 3 and symbols(lake) == {"AAA", "BBB", "SLOW"}
