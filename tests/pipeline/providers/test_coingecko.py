"""CoinGecko against its recorded responses over a loopback socket."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import pytest
from replay_server import FakeClock, Reply, load_recording, settings_for

from marketlake.errors import AuthError, InvalidSymbolError, RateLimitedError
from marketlake.pipeline.providers.base import FetchRequest, provider_class
from marketlake.pipeline.providers.coingecko import CoinGeckoProvider, icon_file_name

KEY = "CG-demo-key-0123456789"


@pytest.fixture
def cg_dir(provider_fixtures):
    return provider_fixtures / "coingecko"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(replay, home, clock, **kw) -> CoinGeckoProvider:
    settings = settings_for("coingecko", replay, max_retries=2, secret=kw.pop("secret", KEY), **kw)
    return CoinGeckoProvider(settings, home=home, clock=clock.now, sleep=clock.sleep)


@pytest.fixture
def cg(replay, home, clock):
    p = make(replay, home, clock)
    yield p
    p.close()


def test_registry_and_capabilities():
    assert provider_class("coingecko") is CoinGeckoProvider
    assert CoinGeckoProvider.capabilities.rate_limit_per_s == pytest.approx(1.6)


def test_coins_list_with_the_underscore_id(replay, cg_dir, cg):
    replay.add_file("/coins/list", cg_dir / "coins_list_2025-08-03_trimmed.cassette.json")
    coins = cg.list_coins()
    assert coins[0]["id"] == "_" and len(coins) > 2000
    inst = cg.fetch(FetchRequest.instruments())
    assert inst["symbol"].is_unique().all() and set(inst["asset_type"]) == {"crypto"}
    btc_like = [
        json.loads(p)["coingecko"]
        for p in inst["provider_symbols"]
        if json.loads(p)["ticker"] == "BTC"
    ]
    assert "bitcoin" in btc_like and len(btc_like) >= 6  # ticker "btc" is not unique
    assert replay.seen[-1].headers["x-cg-demo-api-key"] == KEY


def test_bitcoin_profile_and_icon_downloaded_once(replay, cg_dir, cg, home):
    replay.add_file(
        "/coins/bitcoin", cg_dir / "coins_bitcoin_market_data_false_2024-05-30.cassette.json"
    )
    replay.add(
        "/coins/images/1/large/bitcoin.png",
        Reply(200, b"\x89PNG-icon", {"content-type": "image/png"}),
    )
    row = cg.fetch(FetchRequest.profile("bitcoin")).row(0, named=True)
    assert (row["name"], row["provider"]) == ("Bitcoin", "coingecko")
    assert row["description"].startswith("Bitcoin is the first successful internet money")
    assert row["website"] == "http://www.bitcoin.org"
    assert row["icon_url"].startswith("https://coin-images.coingecko.com/coins/images/1/large/")
    digest = hashlib.sha256(b"bitcoin").hexdigest()
    assert row["icon_path"] == f"media/icons/{digest}.png"
    assert (home / row["icon_path"]).read_bytes() == b"\x89PNG-icon"
    assert CoinGeckoProvider.platforms(json.loads(row["raw"])) == {}  # native: {"": ""}
    qs = replay.requests_to("/coins/bitcoin")[-1].params
    assert qs["market_data"] == "true" and qs["tickers"] == "false"
    cg.fetch(FetchRequest.profile("bitcoin"))
    assert len(replay.requests_to("/coins/images/1/large/bitcoin.png")) == 1


def test_yearn_finance_on_13_chains(replay, cg_dir, cg):
    replay.add_file(
        "/coins/yearn-finance",
        cg_dir / "coins_yearn-finance_market_data_false_2024-05-30.cassette.json",
    )
    row = cg.fetch(
        FetchRequest.profile(
            "YFI", instrument={"provider_symbols": '{"coingecko": "yearn-finance"}'}
        )
    ).row(0, named=True)
    assert row["symbol"] == "YFI" and row["name"] == "yearn.finance"
    chains = CoinGeckoProvider.platforms(json.loads(row["raw"]))
    assert len(chains) == 13
    assert chains["near-protocol"].endswith(".factory.bridge.near")
    assert row["icon_path"] is None  # the icon is not served here: the profile still lands


def test_icon_names_never_come_from_the_id():
    name = icon_file_name("../../etc/passwd", "https://x/coins/images/1/large/a.PNG?1")
    assert "/" not in name and name.endswith(".png")
    assert icon_file_name("_", "https://x/noext").endswith(".png")


def test_ethereum_history_price(replay, cg_dir, cg):
    replay.add_file(
        "/coins/ethereum/history", cg_dir / "coins_ethereum_history_01-01-2024.cassette.json"
    )
    prices = cg.price_on("ethereum", date(2024, 1, 1))
    assert prices["eth"] == 1.0 and prices["usd"] > 2000
    assert replay.requests_to("/coins/ethereum/history")[-1].params["date"] == "01-01-2024"


def test_simple_price(replay, cg_dir, cg):
    replay.add_file("/simple/price", cg_dir / "simple_price_eth_multi.cassette.json")
    out = cg.simple_price(["bitcoin", "dai", "binancecoin"], ["eth"])
    assert out["bitcoin"]["eth"] == pytest.approx(31.906046) and set(out) == {
        "bitcoin",
        "dai",
        "binancecoin",
    }
    assert replay.seen[-1].params == {"ids": "bitcoin,dai,binancecoin", "vs_currencies": "eth"}


def test_coin_not_found_404(replay, cg_dir, cg):
    replay.add_file("/coins/nope-coin", cg_dir / "error_404_coin_not_found.envelope.json")
    with pytest.raises(InvalidSymbolError, match="coingecko nope-coin: HTTP 404.*coin not found"):
        cg.fetch(FetchRequest.profile("nope-coin"))


def test_malformed_id_stays_one_segment_and_is_invalid(replay, cg_dir, cg):
    bad = "<tests.conftest.Recorder object at 0x7fde0baa3ee0>/market_chart"
    replay.add_file(f"/coins/{bad}", cg_dir / "error_404_incorrect_path_malformed_id.cassette.json")
    with pytest.raises(InvalidSymbolError, match="Incorrect path"):
        cg.fetch(FetchRequest.profile(bad))
    assert replay.seen[-1].path == f"/coins/{bad}"  # the "/" travelled encoded


def test_429_with_retry_after_is_honoured(replay, cg_dir, cg, clock):
    replay.add(
        "/coins/ethereum",
        [
            load_recording(cg_dir / "error_429_rate_limit.envelope.json"),
            Reply(
                200,
                json.dumps(
                    {
                        "id": "ethereum",
                        "name": "Ethereum",
                        "market_data": {
                            "market_cap": {"usd": 2.7e11},
                            "total_volume": {"usd": 1.1e10},
                        },
                    }
                ).encode(),
            ),
        ],
    )
    row = cg.fetch(FetchRequest.profile("ethereum")).row(0, named=True)
    assert clock.sleeps == [119.0]
    assert row["market_cap"] == 2.7e11 and row["volume_24h"] == 1.1e10


def test_429_storm_gives_up_rate_limited(replay, cg_dir, cg, clock):
    replay.add("/coins/ethereum", load_recording(cg_dir / "error_429_rate_limit.envelope.json"))
    with pytest.raises(RateLimitedError, match="exceeded the Rate Limit") as err:
        cg.fetch(FetchRequest.profile("ethereum"))
    assert err.value.retry_after == 119.0 and clock.sleeps == [119.0, 119.0]


def test_bad_key_stops_only_that_instance(replay, cg_dir, home, clock):
    replay.add_file(
        "/coins/bitcoin", cg_dir / "coins_bitcoin_market_data_false_2024-05-30.cassette.json"
    )
    replay.add_json(
        "/coins/bitcoin",
        {"status": {"error_code": 10002, "error_message": "invalid key"}},
        status=401,
        headers={"x-cg-demo-api-key": "wrong"},
    )
    bad = make(replay, home, clock, secret="wrong", options={"download_icons": False})
    good = make(replay, home, clock, options={"download_icons": False})
    with pytest.raises(AuthError):
        bad.fetch(FetchRequest.profile("bitcoin"))
    before = len(replay.seen)
    with pytest.raises(AuthError, match="provider stopped"):
        bad.fetch(FetchRequest.profile("bitcoin"))
    assert len(replay.seen) == before
    assert good.fetch(FetchRequest.profile("bitcoin")).height == 1
    assert "wrong" not in str(bad.http.aborted)
