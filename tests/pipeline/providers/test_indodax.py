"""Indodax against its recorded responses and documented samples, over a loopback socket.

No live ``history_v2`` body was ever recorded: the candle tests replay the official docs'
sample and the ccxt comment sample (shape authoritative, values illustrative).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from replay_server import FakeClock, load_recording, settings_for

from marketlake.errors import InvalidSymbolError
from marketlake.pipeline.config import ProviderSettings
from marketlake.pipeline.providers.base import FetchRequest, frame_schema, provider_class
from marketlake.pipeline.providers.indodax import IndodaxProvider, pair_parts

HISTORY = "/tradingview/history_v2"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.fixture
def idx_dir(provider_fixtures):
    return provider_fixtures / "indodax"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2023, 11, 7, 5, 0))


@pytest.fixture
def indodax(replay, home, clock):
    p = IndodaxProvider(
        settings_for("indodax", replay, max_retries=1),
        home=home,
        clock=clock.now,
        sleep=clock.sleep,
    )
    yield p
    p.close()


def test_registry_timeframes_and_symbols():
    assert provider_class("indodax") is IndodaxProvider
    assert set(IndodaxProvider.capabilities.timeframes) == {
        "1m",
        "15m",
        "30m",
        "1h",
        "4h",
        "1D",
        "1W",
    }
    assert IndodaxProvider.capabilities.rate_limit_per_s == 3.0
    assert IndodaxProvider.pair_id("BTC/IDR") == "BTCIDR"
    assert IndodaxProvider.pair_id("btc_idr") == "BTCIDR"
    assert IndodaxProvider.legacy_pair("BTC/IDR") == "btc_idr"
    assert IndodaxProvider.legacy_pair("BTCIDR") == "btc_idr"
    assert pair_parts("USDTIDR") == ("USDT", "IDR")


def test_history_v2_15m_candles(replay, idx_dir, indodax):
    replay.add_file(
        HISTORY,
        idx_dir / "doc_sample_tradingview_history_v2_tf15.json",
        params={"tf": "15", "symbol": "USDTIDR"},
    )
    req = FetchRequest("USDT/IDR", "15m", utc(2023, 11, 7), utc(2023, 11, 8))
    out = indodax.fetch(req)
    assert out.schema == frame_schema("ohlcv") and out.height == 3
    assert out["ts"][0] == datetime.fromtimestamp(1699328700, UTC)
    assert out["volume"].to_list() == [14814.0, 12359.0, 0.0]  # Volume arrives as a string
    # the clock is 05:00 UTC: the last bar (04:15-04:30) is complete
    assert out["is_final"].all()
    seen = replay.requests_to(HISTORY)[-1].params
    assert seen["from"] == str(int(utc(2023, 11, 7).timestamp())) and seen["tf"] == "15"


def test_forming_bar_is_not_final(replay, idx_dir, home):
    replay.add_file(HISTORY, idx_dir / "doc_sample_tradingview_history_v2_tf15.json")
    clock = FakeClock(datetime.fromtimestamp(1699330500 + 60, UTC))  # inside the last bar
    p = IndodaxProvider(
        settings_for("indodax", replay), home=home, clock=clock.now, sleep=clock.sleep
    )
    out = p.fetch(FetchRequest("USDT/IDR", "15m", utc(2023, 11, 7), utc(2023, 11, 8)))
    assert out["is_final"].to_list() == [True, True, False]


def test_zero_volume_bucket_and_utc_daily_keys(replay, idx_dir, indodax, clock):
    replay.add_file(
        HISTORY,
        idx_dir / "ccxt_comment_sample_tradingview_history_v2_zero_volume.json",
        params={"tf": "1D"},
    )
    out = indodax.fetch(FetchRequest("BTC/IDR", "1D", utc(2024, 2, 1), utc(2024, 3, 1)))
    row = out.row(0, named=True)
    assert row["ts"] == utc(2024, 2, 20)  # daily bars keyed at 00:00 UTC
    assert row["open"] == row["high"] == row["low"] == row["close"] == 51707.52
    assert row["volume"] == 0.0


def test_invalid_pair_200_is_not_data(replay, idx_dir, indodax):
    # Indodax's invalid-pair body (recorded on /api/depth) answering the candle request
    replay.add(HISTORY, load_recording(idx_dir / "error_invalid_pair_depth.envelope.json"))
    with pytest.raises(InvalidSymbolError, match="indodax NOPE/IDR: Invalid Pair"):
        indodax.fetch(FetchRequest("NOPE/IDR", "1h", utc(2024, 1, 1), utc(2024, 1, 2)))


def test_tickers_current_and_legacy_paths(replay, idx_dir, indodax):
    replay.add_file("/api/ticker/btcusdt", idx_dir / "ticker_btcusdt_2024-03-13_ccxt_static.json")
    replay.add_file(
        "/api/btc_idr/ticker", idx_dir / "ticker_btc_idr_legacy_path_2018.cassette.json"
    )
    t = indodax.fetch_ticker("BTC/USDT")
    assert t["last"] == 73302.0 and t["volume"] == {"BTC": 1.58603722, "USDT": 113619.71423736}
    assert t["server_time"] == datetime.fromtimestamp(1710328244, UTC)  # a string here
    legacy = indodax.fetch_ticker("BTC/IDR", legacy=True)
    assert legacy["high"] == 97140000.0 and legacy["volume"]["IDR"] == 7709503807.0
    assert legacy["server_time"] == datetime.fromtimestamp(1537069397, UTC)  # a number there


def test_invalid_pair_ticker(replay, idx_dir, indodax):
    replay.add_file("/api/ticker/nopeidr", idx_dir / "error_invalid_pair_ticker.envelope.json")
    with pytest.raises(InvalidSymbolError, match="Invalid Pair"):
        indodax.fetch_ticker("NOPE/IDR")


def test_pairs_instruments_and_profile(replay, idx_dir, indodax):
    replay.add_file("/api/pairs", idx_dir / "doc_sample_pairs.json")
    replay.add_file("/api/ticker/btcidr", idx_dir / "ticker_btc_idr_legacy_path_2018.cassette.json")
    inst = indodax.fetch(FetchRequest.instruments())
    row = inst.row(0, named=True)
    assert (row["symbol"], row["currency"], row["asset_type"]) == ("BTC/IDR", "IDR", "crypto")
    assert json.loads(row["provider_symbols"])["indodax"] == "BTCIDR"
    prof = indodax.fetch(FetchRequest.profile("BTC/IDR")).row(0, named=True)
    assert prof["volume_24h"] == 7709503807.0 and prof["icon_url"].endswith("btc.png")
    assert len(replay.requests_to("/api/pairs")) == 1
    with pytest.raises(InvalidSymbolError, match="not an Indodax pair"):
        indodax.fetch(FetchRequest.profile("NOPE/IDR"))


def test_unknown_api_method_404(replay, idx_dir, indodax):
    replay.add(
        "/api/ticker/zzzidr",
        load_recording(idx_dir / "error_404_api_method_not_found.envelope.json"),
    )
    with pytest.raises(InvalidSymbolError, match="HTTP 404.*API method not found"):
        indodax.fetch_ticker("ZZZ/IDR")


def test_summaries_and_server_time_samples_parse_as_json(idx_dir):
    # documentation samples kept for reference; the trailing commas of the docs were removed
    summaries = json.loads((idx_dir / "doc_sample_summaries.json").read_text())
    assert summaries["tickers"]["btc_idr"]["vol_btc"] == "218.31103295"
    assert json.loads((idx_dir / "doc_sample_server_time.json").read_text())["timezone"] == "UTC"


def test_mock_transport_path_for_4h(idx_dir):
    body = (idx_dir / "doc_sample_tradingview_history_v2_tf15.json").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["tf"] == "240" and request.url.params["symbol"] == "USDTIDR"
        return httpx.Response(200, content=body)

    clock = FakeClock(utc(2024, 1, 1))
    p = IndodaxProvider(
        ProviderSettings(name="indodax"),
        clock=clock.now,
        sleep=clock.sleep,
        transport=httpx.MockTransport(handler),
    )
    out = p.fetch(FetchRequest("USDT/IDR", "4h", utc(2023, 11, 1), utc(2023, 11, 10)))
    assert out.height == 3 and set(out["timeframe"]) == {"4h"}
