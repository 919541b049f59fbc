"""Sync regressions: one unavailable provider fails only its own tasks; resampled bars are
final only once their period has closed; market data through ``sync --kinds market``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def test_an_unavailable_provider_fails_only_its_own_tasks(home):
    # regression: an option (default provider upstox, not in this build) stopped the whole
    # sync with exit 2 and nothing synced
    lake = Lake(home)
    universe.add(lake, "AAA", run_id="u", provider="synthetic", asset_type="equity")
    universe.add(lake, "BBB", run_id="u", provider="synthetic", asset_type="equity")
    universe.add(lake, "NIFTY26DEC24000CE", run_id="u", asset_type="option")
    env = {"MARKETLAKE_HOME": str(home), "MARKETLAKE_NOW": NOW.isoformat()}
    res = CliRunner().invoke(app, ["sync", "--start", "2026-10-01", "--json"], env=env)
    assert res.exit_code == 1, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["status"] == "partial"
    assert summary["tasks"] == {"ok": 2, "failed": 1, "skipped": 0}
    assert any("upstox" in e and "NIFTY26DEC24000CE" in e for e in summary["errors"])
    assert set(lake.read("ohlcv")["symbol"]) == {"AAA", "BBB"}
    logs = lake.read("sync_logs").filter(pl.col("run_id") == summary["run_id"])
    failed = logs.filter(pl.col("status") == "failed")
    assert failed["task_name"].to_list() == ["sync:ohlcv:1D:NIFTY26DEC24000CE"]
    assert "upstox" in failed["error_message"][0]
    status = lake.read("sync_status").filter(pl.col("symbol") == "NIFTY26DEC24000CE")
    assert status["status"].to_list() == ["failed"]


def test_an_explicit_unknown_provider_is_still_a_usage_error(home):
    lake = Lake(home)
    universe.add(lake, "AAA", run_id="u", provider="synthetic", asset_type="equity")
    env = {"MARKETLAKE_HOME": str(home), "MARKETLAKE_NOW": NOW.isoformat()}
    res = CliRunner().invoke(app, ["sync", "--provider", "nosuch"], env=env)
    assert res.exit_code == 2 and lake.read("ohlcv").is_empty()


def test_weekly_bars_resampled_mid_week_are_not_rewritten_by_later_syncs(home):
    # regression: the current week's 1W bar (resampled from daily bars) was marked final
    # before the week ended, so a later sync saw a "re-adjusted" final bar and replaced
    # whole weekly series (35 replace commits in 4 syncs)
    lake = Lake(home)
    for s in ("AAA", "BBB", "CCC"):
        universe.add(lake, s, run_id="u", provider="synthetic", asset_type="equity")
    monday = datetime(2026, 11, 16, 22, 0, tzinfo=UTC)
    base = load_settings(home=home, env={})
    results = []
    for day in (0, 2, 4):  # Monday, Wednesday and Friday evening
        settings = base.with_(now=monday + timedelta(days=day))
        results.append(run_sync(settings, timeframes=["1W"], start="2026-06-01"))
    bars = lake.read("ohlcv").filter(pl.col("timeframe") == "1W")
    current = bars.filter(pl.col("ts") == datetime(2026, 11, 16, tzinfo=UTC))
    assert current.height == 3 and not current["is_final"].any()  # the week is not over
    # the next Tuesday: the finished week's bar is updated (now final), never replaced
    results.append(run_sync(base.with_(now=monday + timedelta(days=8)), timeframes=["1W"]))
    assert all(r.status == "ok" for r in results), [r.errors for r in results]
    replaced = [e for r in results for e in r.details.get("events", [])]
    assert replaced == []
    logs = lake.read("sync_logs")
    assert logs.filter(pl.col("task_name").str.starts_with("sync:replace:")).is_empty()
    bars = lake.read("ohlcv").filter(pl.col("timeframe") == "1W")
    closed = bars.filter(pl.col("ts") <= datetime(2026, 11, 16, tzinfo=UTC))
    assert closed.height > 3 and closed["is_final"].all()
    assert not bars.filter(pl.col("ts") == datetime(2026, 11, 23, tzinfo=UTC))["is_final"].any()
    assert results[-1].updated == 3  # the finished week, once per symbol


def test_sync_kinds_market_refreshes_market_cache_within_its_ttl(home):
    # regression: `sync --kinds market` was accepted and then failed as a bar fetch
    lake = Lake(home)
    universe.add(lake, "AAA", run_id="u", provider="fake", asset_type="equity")
    env = {"MARKETLAKE_HOME": str(home), "MARKETLAKE_NOW": NOW.isoformat()}
    runner = CliRunner()
    first = runner.invoke(app, ["sync", "--kinds", "market", "--json"], env=env)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["stage"] == "sync" and summary["tasks"]["ok"] == 5
    assert lake.read("ohlcv").is_empty()  # no bars were asked for
    cache = lake.read("market_cache")
    assert cache.height == 5 and set(cache["provider"]) == {"fake"}

    env["MARKETLAKE_NOW"] = (NOW + timedelta(minutes=10)).isoformat()
    again = runner.invoke(app, ["sync", "--kinds", "market", "--json"], env=env)
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert again.exit_code == 0 and summary["tasks"] == {"ok": 0, "failed": 0, "skipped": 5}

    # bars and market data in one run; the plan shows the market keys due
    env["MARKETLAKE_NOW"] = (NOW + timedelta(minutes=45)).isoformat()
    plan = runner.invoke(
        app,
        ["sync", "--kinds", "ohlcv,market", "--start", "2026-11-01", "--dry-run", "--json"],
        env=env,
    )
    tasks = json.loads(plan.stdout)["tasks"]
    assert [t["symbol"] for t in tasks if t["kind"] == "market"] == ["status:US"]
    assert [t["symbol"] for t in tasks if t["kind"] == "ohlcv"] == ["AAA"]
    both = runner.invoke(
        app, ["sync", "--kinds", "ohlcv,market", "--start", "2026-11-01", "--json"], env=env
    )
    summary = json.loads(both.stdout.strip().splitlines()[-1])
    assert both.exit_code == 0 and summary["tasks"]["ok"] == 2, summary
    assert set(lake.read("ohlcv")["symbol"]) == {"AAA"}


def test_sync_kinds_market_with_a_provider_without_market_data_is_a_usage_error(home):
    lake = Lake(home)
    universe.add(lake, "AAA", run_id="u", provider="synthetic", asset_type="equity")
    env = {"MARKETLAKE_HOME": str(home), "MARKETLAKE_NOW": NOW.isoformat()}
    res = CliRunner().invoke(app, ["sync", "--kinds", "market", "--provider", "synthetic"], env=env)
    assert res.exit_code == 2 and "market" in res.output
