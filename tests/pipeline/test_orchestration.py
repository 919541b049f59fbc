import json
import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.exceptions import PanicException

from marketlake.errors import TaskError
from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import ProviderSettings, SegmentSettings, load_settings
from marketlake.pipeline.orchestration import demo_symbols, run_daily, run_demo
from marketlake.pipeline.stages.market import DEFAULT_KEYS

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
    assert steps == ["universe", "sync", "market", "compute"]  # fake serves market data
    assert res.status == "partial"  # the sync step had a failed symbol, compute still ran
    lake = Lake(home)
    assert set(lake.read("ohlcv")["symbol"]) == {"AAA"}
    assert lake.read("indicators").height > 0
    logs = lake.read("sync_logs").filter(pl.col("stage") == "daily")
    assert set(logs["task_name"]) == {
        "daily:universe",
        "daily:sync:main",
        "daily:market",
        "daily:compute",
    }
    assert universe.load(lake).height == 2


def test_demo_symbols_are_distinct():
    syms = demo_symbols(200)
    assert len(set(syms)) == 200


def test_demo_reports_its_status_as_the_run_ends(home):
    """On the wall clock (nothing pinned), the status comes after the run's successes: taken
    at the run's start, every age showed as -0.0 h."""
    report = run_demo(load_settings(home=home, env={}), equities=2)
    ages = [r["freshness_hours"] for r in report["status_rows"]]
    assert report["status"] == "ok" and ages
    assert all(math.copysign(1.0, a) > 0 for a in ages), ages


def _daily_settings(home, tmp_path, provider="synthetic"):
    csv = tmp_path / "universe.csv"
    csv.write_text(f"symbol,provider\nAAA,{provider}\nBBB,{provider}\n")
    return load_settings(home=home, env={}, now=NOW).with_(
        universe_file=csv,
        segments={"main": SegmentSettings("main", asset_types=("equity",), start="2026-10-01")},
    )


@pytest.mark.parametrize("boom", [RuntimeError("disk on fire"), PanicException("rust panicked")])
def test_daily_step_raising_a_foreign_error_is_logged_and_the_next_step_runs(
    home, tmp_path, monkeypatch, boom
):
    # regression: a step raising anything but MarketlakeError stopped daily, and daily's own
    # sync_logs rows were never written
    import marketlake.pipeline.stages.ingest as ingest

    def failing_sync(*args, **kwargs):
        raise boom

    monkeypatch.setattr(ingest, "run_sync", failing_sync)
    settings = _daily_settings(home, tmp_path)
    res = run_daily(settings)

    assert [s["stage"] for s in res.details["steps"]] == ["universe", "sync:main", "compute"]
    failed = res.details["steps"][1]
    assert failed["status"] == "failed" and failed["cause"] == type(boom).__name__
    # the failed task keeps its exception, raised from the cause
    err = res.errors[0]
    assert isinstance(err, TaskError) and err.__cause__ is boom
    assert err.stage == "sync:main" and err.run_id == res.run_id
    assert res.to_json()["errors"][0].startswith("sync:main: ")
    logs = Lake(home).read("sync_logs").filter(pl.col("run_id") == res.run_id)
    rows = {r["task_name"]: r for r in logs.iter_rows(named=True)}
    assert set(rows) == {"daily:universe", "daily:sync:main", "daily:compute"}
    bad = rows["daily:sync:main"]
    assert bad["status"] == "failed" and bad["stage"] == "daily"
    assert type(boom).__name__ in bad["error_message"]
    assert json.loads(bad["metadata"]) == {
        "step": "sync:main",
        "run_id": res.run_id,
        "cause": type(boom).__name__,
    }


def test_daily_does_not_swallow_keyboard_interrupt_but_still_writes_its_log(
    home, tmp_path, monkeypatch
):
    import marketlake.pipeline.stages.compute as compute

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compute, "run_compute", interrupted)
    settings = _daily_settings(home, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_daily(settings)
    logs = Lake(home).read("sync_logs").filter(pl.col("stage") == "daily")
    assert {"daily:universe", "daily:sync:main"} <= set(logs["task_name"])


def test_daily_market_step_is_served_from_the_cache_within_its_ttl(home, tmp_path):
    # regression: market status and calendars were reached by no command
    settings = _daily_settings(home, tmp_path, provider="fake")
    first = run_daily(settings)
    market = next(s for s in first.details["steps"] if s["stage"] == "market")
    assert market["tasks"] == {"ok": 5, "failed": 0, "skipped": 0}
    cache = Lake(home).read("market_cache")
    assert set(cache["key"]) == set(DEFAULT_KEYS) and set(cache["provider"]) == {"fake"}

    again = run_daily(settings.with_(now=NOW + timedelta(minutes=20)))
    market = next(s for s in again.details["steps"] if s["stage"] == "market")
    assert market["tasks"] == {"ok": 0, "failed": 0, "skipped": 5}

    later = run_daily(settings.with_(now=NOW + timedelta(minutes=40)))
    market = next(s for s in later.details["steps"] if s["stage"] == "market")
    assert market["tasks"] == {"ok": 1, "failed": 0, "skipped": 4}  # status: 30 min TTL
    fetched = dict(Lake(home).read("market_cache").select("key", "fetched_at").iter_rows())
    assert fetched["status:US"] == NOW + timedelta(minutes=40)
    assert fetched["calendar:earnings"] == NOW


def test_daily_has_no_market_step_when_no_provider_serves_market_data(home, tmp_path):
    res = run_daily(_daily_settings(home, tmp_path))
    assert "market" not in [s["stage"] for s in res.details["steps"]]
    assert Lake(home).read("market_cache").is_empty()
