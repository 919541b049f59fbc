"""``universe refresh``: add, update, mark gone as inactive (history kept), report duplicates."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from marketlake.errors import ConfigError
from marketlake.lake.store import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import Settings
from marketlake.pipeline.refresh import fetch_source, refresh
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def _csv(path, rows: str):
    path.write_text("ticker,name,sector\n" + rows)
    return path


def test_refresh_from_file_adds_updates_and_inactivates_keeping_bars(home, tmp_path):
    settings = Settings(home=home, now=NOW)
    lake = Lake(home)
    universe.add(lake, "MANUAL", run_id="u", provider="synthetic", now=NOW)
    first = _csv(tmp_path / "r2k.csv", "AAA,Alpha,Tech\nBBB,Beta,Energy\nCCC,Gamma,\n")
    listed, _ = fetch_source(settings, "file", first)
    res = refresh(lake, "file", listed, run_id="r1", now=NOW)
    assert (res.added, res.updated, res.inactivated) == (3, 0, 0)
    run_sync(settings.with_(), symbols=["BBB"], provider="synthetic", start="2026-10-01")
    bars = lake.read("ohlcv").filter(pl.col("symbol") == "BBB").height
    assert bars > 0

    # the next list drops BBB, renames AAA, adds DDD
    second = _csv(tmp_path / "r2k.csv", "AAA,Alpha Inc,Tech\nCCC,Gamma,\nDDD,Delta,Health\n")
    later = NOW.replace(day=21)
    listed, _ = fetch_source(settings, "file", second)
    res = refresh(lake, "file", listed, run_id="r2", now=later)
    assert (res.added, res.updated, res.inactivated) == (1, 1, 1)
    inst = {r["symbol"]: r for r in lake.read("instruments").iter_rows(named=True)}
    assert inst["BBB"]["active"] is False and inst["BBB"]["delisted_at"] == later
    assert inst["AAA"]["name"] == "Alpha Inc" and inst["AAA"]["active"] is True
    assert inst["MANUAL"]["active"] is True  # not listed by this source: untouched
    assert lake.read("ohlcv").filter(pl.col("symbol") == "BBB").height == bars  # kept
    assert "BBB" not in universe.load(lake)["symbol"].to_list()  # inactive: not synced

    # the same list again changes nothing; BBB coming back is active again
    listed, _ = fetch_source(settings, "file", second)
    again = refresh(lake, "file", listed, run_id="r3", now=later)
    assert (again.added, again.updated, again.inactivated) == (0, 0, 0)
    third = _csv(
        tmp_path / "r2k.csv", "AAA,Alpha Inc,Tech\nBBB,Beta,Energy\nCCC,Gamma,\nDDD,Delta,Health\n"
    )
    listed, _ = fetch_source(settings, "file", third)
    back = refresh(lake, "file", listed, run_id="r4", now=later)
    assert back.updated == 1 and universe.load(lake, symbols=["BBB"]).height == 1


def test_duplicates_are_reported_not_created(home):
    lake = Lake(home)
    universe.add(
        lake,
        "BTC/IDR",
        run_id="u",
        asset_type="crypto",
        provider="indodax",
        provider_symbols={"indodax": "btcidr", "coingecko": "bitcoin"},
        now=NOW,
    )
    listed = pl.DataFrame(
        {
            "symbol": ["bitcoin", "ethereum", "ethereum", "weth-clone"],
            "asset_type": ["crypto"] * 4,
            "provider": ["coingecko"] * 4,
            "provider_symbols": [
                json.dumps({"coingecko": c})
                for c in ("bitcoin", "ethereum", "ethereum", "ethereum")
            ],
        }
    )
    res = refresh(lake, "coingecko", listed, run_id="r1", now=NOW)
    assert res.added == 1  # ethereum only
    assert len(res.duplicates) == 3
    assert any("bitcoin: already in the universe as BTC/IDR" in d for d in res.duplicates)
    assert any("ethereum: listed more than once" in d for d in res.duplicates)
    assert any("weth-clone: same coingecko id 'ethereum'" in d for d in res.duplicates)
    symbols = set(lake.read("instruments")["symbol"])
    assert symbols == {"BTC/IDR", "ethereum"}
    btc = lake.read("instruments").filter(pl.col("symbol") == "BTC/IDR").row(0, named=True)
    assert json.loads(btc["provider_symbols"])["indodax"] == "btcidr"  # untouched


def test_import_sets_provider_symbols_and_routes(home, tmp_path):
    path = tmp_path / "crypto.csv"
    path.write_text(
        "symbol,asset_type,provider,indodax_symbol,coingecko_symbol,profile_provider\n"
        "BTC/IDR,crypto,indodax,btcidr,bitcoin,coingecko\n"
    )
    lake = Lake(home)
    universe.import_csv(lake, path, run_id="u", now=NOW)
    row = lake.read("instruments").row(0, named=True)
    assert json.loads(row["provider_symbols"]) == {"coingecko": "bitcoin", "indodax": "btcidr"}
    assert json.loads(row["routes"]) == {"profile": "coingecko"}  # its own column


def test_unknown_source_is_a_usage_error(home):
    with pytest.raises(ConfigError, match="unknown universe source"):
        fetch_source(Settings(home=home), "nasdaq")
    with pytest.raises(ConfigError, match="--file"):
        fetch_source(Settings(home=home), "file")
