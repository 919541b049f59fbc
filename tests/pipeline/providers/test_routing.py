"""Routing per kind and per provider in one sync, against the replay server: bars of BTC/IDR
from Indodax and its profile from CoinGecko, DCF valuations from FMP for US equities, and an
Upstox 401 that fails only Upstox's tasks."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from types import MappingProxyType

import polars as pl
import pytest
from replay_server import Reply, settings_for

from marketlake.lake.store import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import SegmentSettings, Settings
from marketlake.pipeline.planning import route
from marketlake.pipeline.stages.ingest import run_sync


def _settings(home, replay, now, **secrets) -> Settings:
    providers = {
        name: settings_for(name, replay, max_retries=0, secret=secrets.get(name))
        for name in ("indodax", "coingecko", "fmp", "upstox", "yahoo")
    }
    return Settings(home=home, providers=MappingProxyType(providers), now=now)


def test_btc_idr_bars_from_indodax_profile_from_coingecko(home, replay, provider_fixtures):
    replay.add_file(
        "/tradingview/history_v2",
        provider_fixtures / "indodax" / "doc_sample_tradingview_history_v2_tf15.json",
        params={"symbol": "btcidr", "tf": "15"},
    )
    replay.add_file(
        "/coins/bitcoin",
        provider_fixtures
        / "coingecko"
        / "coins_bitcoin_market_data_false_2024-05-30.cassette.json",
    )
    lake = Lake(home)
    universe.add(
        lake,
        "BTC/IDR",
        run_id="u",
        asset_type="crypto",
        provider="indodax",
        provider_symbols={"indodax": "btcidr", "coingecko": "bitcoin"},
    )
    settings = _settings(home, replay, datetime(2023, 11, 7, 5, 0, tzinfo=UTC))
    res = run_sync(settings, segments=["crypto"], timeframes=["15m"], start="2023-11-07")
    assert res.tasks_failed == 0, res.errors
    bars = lake.read("ohlcv")
    assert bars.height == 3 and set(bars["provider"]) == {"indodax"}
    profile = lake.read("profiles").row(0, named=True)
    assert (profile["symbol"], profile["provider"], profile["name"]) == (
        "BTC/IDR",
        "coingecko",
        "Bitcoin",
    )
    assert [s.path for s in replay.unmatched if not s.path.startswith("/coins/images")] == []


def test_btc_idr_own_route_as_data_without_a_segment_route(home, replay, provider_fixtures):
    """The route set on the instrument (its ``routes`` column) sends the profile to CoinGecko
    in the same sync as Indodax's bars, in a segment that routes nothing."""
    replay.add_file(
        "/tradingview/history_v2",
        provider_fixtures / "indodax" / "doc_sample_tradingview_history_v2_tf15.json",
        params={"symbol": "btcidr", "tf": "15"},
    )
    replay.add_file(
        "/coins/bitcoin",
        provider_fixtures
        / "coingecko"
        / "coins_bitcoin_market_data_false_2024-05-30.cassette.json",
    )
    lake = Lake(home)
    universe.add(
        lake,
        "BTC/IDR",
        run_id="u",
        asset_type="crypto",
        provider="indodax",
        provider_symbols={"indodax": "btcidr", "coingecko": "bitcoin"},
        routes={"profile": "coingecko"},
    )
    coins = SegmentSettings("coins", asset_types=("crypto",), kinds=("ohlcv", "profile"))
    settings = _settings(home, replay, datetime(2023, 11, 7, 5, 0, tzinfo=UTC)).with_(
        segments=MappingProxyType({"coins": coins})
    )
    res = run_sync(settings, segments=["coins"], timeframes=["15m"], start="2023-11-07")
    assert res.tasks_failed == 0, res.errors
    assert set(lake.read("ohlcv")["provider"]) == {"indodax"}
    assert lake.read("profiles").select("symbol", "provider").rows() == [("BTC/IDR", "coingecko")]
    stored = lake.read("instruments").row(0, named=True)
    assert json.loads(stored["routes"]) == {"profile": "coingecko"}
    assert json.loads(stored["provider_symbols"]) == {"coingecko": "bitcoin", "indodax": "btcidr"}


def test_routes_need_the_providers_symbol_unless_the_own_provider_lacks_the_kind():
    crypto = SegmentSettings("crypto", routes=MappingProxyType({"profile": "coingecko"}))
    plain = {"symbol": "BTC/USD", "provider": "synthetic", "provider_symbols": "{}"}
    assert route("profile", plain, crypto, None) == "synthetic"  # no CoinGecko id: not routed
    mapped = {**plain, "provider_symbols": json.dumps({"coingecko": "bitcoin"})}
    assert route("profile", mapped, crypto, None) == "coingecko"
    assert route("ohlcv", mapped, crypto, None) == "synthetic"
    own = {**plain, "routes": json.dumps({"profile": "indodax"})}
    assert route("profile", own, crypto, None) == "indodax"  # set on import: the instrument's
    us = SegmentSettings("us_equity", routes=MappingProxyType({"valuation": "fmp"}))
    aapl = {"symbol": "AAPL", "provider": "yahoo", "provider_symbols": "{}"}
    assert route("valuation", aapl, us, None) == "fmp"  # yahoo has no valuations
    assert route("valuation", aapl, us, "synthetic") == "synthetic"  # --provider wins


def test_us_equity_valuations_from_fmp_and_upstox_401_fails_only_upstox(
    home, replay, provider_fixtures
):
    replay.add_file(
        "/stable/discounted-cash-flow",
        provider_fixtures / "fmp" / "doc_sample_stable_discounted_cash_flow_AAPL.json",
        params={"symbol": "AAPL"},
    )
    replay.add_file(
        "/v3/historical-candle/NSE_INDEX|Nifty 50/days/1/2026-04-30/2026-04-01",
        provider_fixtures / "upstox" / "error_401_invalid_token_UDAPI100050.envelope.json",
    )
    lake = Lake(home)
    universe.add(lake, "AAPL", run_id="u", provider="synthetic", exchange="NMS")
    universe.add(lake, "NSE_INDEX|Nifty 50", run_id="u", asset_type="index", provider="upstox")
    universe.add(lake, "NSE_INDEX|Nifty Bank", run_id="u", asset_type="index", provider="upstox")
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    settings = _settings(home, replay, now, fmp="k-fmp-123456", upstox="t-upstox-123456")
    res = run_sync(
        settings, segments=["us_equity", "indices_nse"], timeframes=["1D"], start="2026-04-01"
    )
    # AAPL's bars (synthetic) and valuation (fmp) land; both Upstox indices fail, the second
    # without a request (the provider stopped after the 401)
    assert res.tasks_failed == 2 and res.tasks_ok == 3, res.errors
    assert all("upstox" in str(e) for e in res.errors)
    assert (
        len(
            replay.requests_to(
                "/v3/historical-candle/NSE_INDEX|Nifty Bank/days/1/2026-04-30/2026-04-01"
            )
        )
        == 0
    )
    val = lake.read("valuations")
    assert val.select("symbol", "provider", "dcf").rows() == [("AAPL", "fmp", 155.92)]
    assert lake.read("ohlcv").filter(pl.col("symbol") == "AAPL").height > 0
    again = run_sync(settings, segments=["us_equity"], timeframes=["1D"], start="2026-04-01")
    assert again.inserted == 0 and again.updated == 0  # valuations are fresh: not re-asked
    assert len(replay.requests_to("/stable/discounted-cash-flow")) == 1


@pytest.mark.postgres
def test_valuations_load_to_postgres(home, pg_dsn):
    import psycopg

    dsn, schema = pg_dsn
    lake = Lake(home)
    rows = pl.DataFrame(
        {
            "symbol": ["AAPL", "AAPL"],
            "date": [datetime(2026, 4, 29).date(), datetime(2026, 4, 30).date()],
            "provider": ["fmp", "fmp"],
            "dcf": [150.0, 155.92],
            "price": [268.0, 270.17],
        }
    )
    lake.upsert("valuations", rows, run_id="r1", stage="sync")
    from marketlake.pipeline.stages.load import run_load

    settings = Settings(home=home, dsn=dsn, pg_schema=schema)
    res = run_load(settings, tables=["valuations"])
    assert res.status == "ok", res.errors
    with psycopg.connect(dsn) as conn:
        latest = conn.execute(
            f'SELECT DISTINCT ON (symbol) symbol, date, dcf FROM "{schema}".valuations '  # noqa: S608
            "ORDER BY symbol, date DESC"
        ).fetchall()
    assert latest == [("AAPL", datetime(2026, 4, 30).date(), 155.92)]


def test_refresh_fmp_etf_and_upstox_sources(home, replay, provider_fixtures):
    from pathlib import Path

    from marketlake.pipeline.refresh import fetch_source, refresh

    own = Path(__file__).parent / "fixtures"
    replay.add_file("/stable/etf-list", own / "fmp" / "written_from_docs_stable_etf_list.json")
    replay.add_json("/v2/option/contract", {"status": "success", "data": []})
    replay.add_file(  # the latest matching route wins
        "/v2/option/contract",
        own / "upstox" / "written_from_docs_v2_option_contract_nifty50.json",
        params={"instrument_key": "NSE_INDEX|Nifty 50"},
    )
    for exchange, sample in (  # current futures: the instrument master, gzip
        ("NSE", "written_from_docs_instruments_json_NSE_futures_sample.json"),
        ("BSE", "written_from_docs_instruments_json_BSE_futures_sample.json"),
    ):
        replay.add(
            f"/market-quote/instruments/exchange/{exchange}.json.gz",
            Reply(200, gzip.compress((own / "upstox" / sample).read_bytes()), {}),
        )
    now = datetime(2025, 12, 1, 12, 0, tzinfo=UTC)
    settings = _settings(home, replay, now, fmp="k-fmp-123456", upstox="t-upstox-123456")
    lake = Lake(home)
    listed, _ = fetch_source(settings, "fmp-etf")
    res = refresh(lake, "fmp-etf", listed, run_id="r1", now=now)
    assert res.added == 3 and any("IWM: listed more than once" in d for d in res.duplicates)
    etfs = lake.read("instruments")
    assert etfs["is_etf"].all() and set(etfs["provider"]) == {"yahoo"}  # bars from Yahoo
    listed, problems = fetch_source(settings, "upstox")
    res = refresh(lake, "upstox", listed, run_id="r2", now=now)
    # 2 options + 5 futures (NIFTY Dec and Jan, BANKNIFTY, FINNIFTY, SENSEX) + 5 indices
    assert res.added == 12 and problems == []
    opts = lake.read("instruments").filter(pl.col("asset_type") == "option")
    assert opts["lot_size"].to_list() == [75, 75] and opts["active"].all()
    futs = lake.read("instruments").filter(pl.col("asset_type") == "future").sort("symbol")
    assert futs["symbol"].to_list() == [
        "BANKNIFTY FUT 30 DEC 25",
        "FINNIFTY FUT 30 DEC 25",
        "NIFTY FUT 27 JAN 26",
        "NIFTY FUT 30 DEC 25",
        "SENSEX FUT 24 DEC 25",
    ]
    assert futs["lot_size"].null_count() == 0 and futs["active"].all()
