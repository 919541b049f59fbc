from datetime import UTC, datetime

import polars as pl

from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import ProviderSettings, SegmentSettings, load_settings
from marketlake.pipeline.orchestration import demo_symbols, run_daily

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def test_daily_runs_every_step_even_after_a_failure(home, tmp_path):
    csv = tmp_path / "universe.csv"
    csv.write_text("symbol,provider\nAAA,synthetic\nBBB,fake\n")
    settings = load_settings(home=home, env={}, now=NOW).with_(
        universe_file=csv,
        segments={"main": SegmentSettings("main", asset_types=("equity",), start="2026-10-01")},
        providers={"fake": ProviderSettings("fake", options={"fail": {"BBB": "auth"}})},
    )
    res = run_daily(settings)
    steps = [s["stage"] for s in res.details["steps"]]
    assert steps == ["universe", "sync", "compute"]
    assert res.status == "partial"  # the sync step had a failed symbol, compute still ran
    lake = Lake(home)
    assert set(lake.read("ohlcv")["symbol"]) == {"AAA"}
    assert lake.read("indicators").height > 0
    logs = lake.read("sync_logs").filter(pl.col("stage") == "daily")
    assert set(logs["task_name"]) == {"daily:universe", "daily:sync:main", "daily:compute"}
    assert universe.load(lake).height == 2


def test_demo_symbols_are_distinct():
    syms = demo_symbols(200)
    assert len(set(syms)) == 200
