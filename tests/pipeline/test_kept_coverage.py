"""The coverage a sync keeps for the next plan: used only while ``ohlcv`` is at the version it
was kept for, where it equals what the lake's query reads; any other commit, a provisional bar
or a damaged file sends the plan back to the lake, and the plans stay the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl

from marketlake.lake import Lake
from marketlake.pipeline import kept_coverage, universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.planning import SyncRequest, coverage, plan_with_coverage
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 1, 6, 22, 0, tzinfo=UTC)  # after the US close: every bar is final
SYMBOLS = ["AAA", "BBB", "CCC"]


def setup(home, symbols=SYMBOLS, asset_type="equity"):
    settings = load_settings(home=home, env={}, now=NOW)
    lake = Lake(home)
    universe.add_many(lake, symbols, run_id="u", provider="synthetic", asset_type=asset_type)
    return settings, lake


def scanned(lake: Lake, symbols=SYMBOLS, timeframes=("1D",)) -> dict:
    rows = coverage(lake, list(symbols), list(timeframes), lake.version("ohlcv"))
    return {(r["symbol"], r["timeframe"]): r for r in rows.iter_rows(named=True)}


def planned(settings, lake, now):
    req = SyncRequest(provider="synthetic", timeframes=("1D",))
    return plan_with_coverage(settings, lake, req, now)


def test_a_sync_keeps_the_coverage_its_commits_leave_and_the_next_plan_uses_it(home):
    settings, lake = setup(home)
    run_sync(settings, provider="synthetic", timeframes=["1D"], start="2025-06-01")
    version = lake.version("ohlcv")
    kept = kept_coverage.load(lake, version, SYMBOLS, ["1D"])
    assert kept is not None and kept == scanned(lake)
    # the next day: planned from the kept coverage, the same plan as from the lake
    later = settings.with_(now=NOW + timedelta(days=1))
    plan = planned(later, lake, later.clock())
    assert plan.kept and plan.coverage == scanned(lake)
    path = kept_coverage.path(home)
    path.unlink()
    assert planned(later, lake, later.clock()).units == plan.units
    # that day's sync keeps the coverage at its own commit's version
    run_sync(later, provider="synthetic", timeframes=["1D"])
    assert lake.version("ohlcv") == version + 1
    assert kept_coverage.load(lake, version + 1, SYMBOLS, ["1D"]) == scanned(lake)
    assert kept_coverage.load(lake, version, SYMBOLS, ["1D"]) is None  # replaced


def test_another_commit_leaves_the_kept_coverage_unused(home):
    settings, lake = setup(home)
    run_sync(settings, provider="synthetic", timeframes=["1D"], start="2025-06-01")
    bar = lake.read("ohlcv").filter(pl.col("symbol") == "AAA").sort("ts").tail(1)
    lake.append(
        "ohlcv", bar.with_columns(pl.col("ts") + timedelta(days=7)), run_id="x", stage="sync"
    )
    later = settings.with_(now=NOW + timedelta(days=1))
    plan = planned(later, lake, later.clock())
    assert not plan.kept and plan.coverage == scanned(lake)
    assert plan.coverage[("AAA", "1D")]["last_ts"] == bar["ts"][0] + timedelta(days=7)


def test_a_series_outside_the_kept_ones_or_another_table_reads_the_lake(home):
    settings, lake = setup(home)
    run_sync(settings, provider="synthetic", timeframes=["1D"], start="2025-06-01")
    version = lake.version("ohlcv")
    assert kept_coverage.load(lake, version, [*SYMBOLS, "DDD"], ["1D"]) is None
    assert kept_coverage.load(lake, version, SYMBOLS, ["1D", "1h"]) is None
    assert kept_coverage.load(lake, version, SYMBOLS[:1], ["1D"]) == {
        k: v for k, v in scanned(lake).items() if k[0] == "AAA"
    }
    path = kept_coverage.path(home)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "table_id": "another table"}))
    assert kept_coverage.load(lake, version, SYMBOLS, ["1D"]) is None
    path.write_text('{"version": ')  # damaged
    assert kept_coverage.load(lake, version, SYMBOLS, ["1D"]) is None


def test_provisional_bars_are_not_kept(home):
    # a crypto pair's bar of the running day stays provisional until the day ends
    settings, lake = setup(home, symbols=["BTC/USD"], asset_type="crypto")
    run_sync(settings, provider="synthetic", timeframes=["1D"], start="2025-06-01")
    assert not lake.read("ohlcv")["is_final"].all()
    version = lake.version("ohlcv")
    assert kept_coverage.load(lake, version, ["BTC/USD"], ["1D"]) is None
    later = settings.with_(now=NOW + timedelta(days=1))
    plan = planned(later, lake, later.clock())
    assert not plan.kept and plan.coverage == scanned(lake, ["BTC/USD"])
