"""Yahoo against its recorded responses, replayed over a loopback socket.

The provider gets the replay server through ``ProviderSettings(base_url=...)``, exactly what
``MARKETLAKE_YAHOO_BASE_URL`` sets. Bodies written here by hand (not recordings) say so.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import polars as pl
import pytest
from replay_server import FakeClock, Reply, settings_for

from marketlake.errors import (
    BadResponseError,
    InvalidSymbolError,
    RateLimitedError,
    TerminalProviderError,
)
from marketlake.pipeline.providers.base import (
    FetchRequest,
    frame_schema,
    provider_class,
)
from marketlake.pipeline.providers.yahoo import YahooProvider, yahoo_symbol

CHART = "/v8/finance/chart/"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def yahoo_dir(provider_fixtures):
    return provider_fixtures / "yahoo"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2025, 3, 3, 12))


@pytest.fixture
def yahoo(replay, clock, home):
    p = YahooProvider(
        settings_for("yahoo", replay, max_retries=2), home=home, clock=clock.now, sleep=clock.sleep
    )
    yield p
    p.close()


def chart(replay, yahoo_dir, symbol, fixture, interval="1d", **kw):
    params = {"interval": interval} if interval else {}
    return replay.add_file(CHART + symbol, yahoo_dir / fixture, params=params, **kw)


def bars(yahoo, symbol, tf, start, end, instrument=None):
    return yahoo.fetch(FetchRequest(symbol, tf, start, end, instrument=instrument or {}))


def test_registry_resolves_the_yahoo_class():
    assert provider_class("yahoo") is YahooProvider
    caps = YahooProvider.capabilities
    assert "4h" not in caps.timeframes and {"1m", "1h", "1D", "1W"} <= set(caps.timeframes)
    assert caps.max_range["1m"].days == 8 and caps.max_range["1D"] is None


def test_aapl_2020_split_and_dividend(replay, yahoo_dir, yahoo):
    chart(
        replay,
        yahoo_dir,
        "AAPL",
        "chart_AAPL_1d_2020-08-31_2020-11-07_split_and_dividends.cassette.json",
    )
    out = bars(yahoo, "AAPL", "1D", utc(2020, 8, 31), utc(2020, 11, 7))
    assert out.schema == frame_schema("ohlcv")
    assert out.height == 49
    first = out.row(0, named=True)
    assert first["ts"] == utc(2020, 8, 31)  # 13:30 UTC session open -> its NY date
    assert first["open"] == pytest.approx(127.58, abs=1e-3)
    assert first["adj_close"] == pytest.approx(125.8267, abs=1e-3)  # from indicators.adjclose
    assert out["is_final"].all() and out["ts"].is_unique().all()
    assert (out["ts"].dt.hour() == 0).all()
    seen = replay.requests_to(CHART + "AAPL")[-1]
    assert seen.params["interval"] == "1d" and "capitalGains" in seen.params["events"]

    chart(
        replay,
        yahoo_dir,
        "AAPL",  # actions are asked at 3-month granularity
        "chart_AAPL_1d_2020-08-31_2020-11-07_split_and_dividends.cassette.json",
        "3mo",
    )
    actions = yahoo.fetch(FetchRequest.actions("AAPL", utc(2020, 8, 1), utc(2020, 12, 1)))
    assert actions.schema == frame_schema("actions")
    rows = {(r["kind"], r["ex_date"]): r for r in actions.iter_rows(named=True)}
    assert rows[("split", date(2020, 8, 31))]["ratio"] == 4.0
    div = rows[("dividend", date(2020, 11, 6))]
    assert div["amount"] == pytest.approx(0.205) and div["currency"] == "USD"


def test_nvda_split_history_is_already_adjusted(replay, yahoo_dir, yahoo):
    chart(
        replay,
        yahoo_dir,
        "NVDA",
        "chart_NVDA_1d_2021-02-01_2022-01-31_split_4for1.cassette.json",
        interval=None,
    )
    out = bars(yahoo, "NVDA", "1D", utc(2021, 2, 1), utc(2022, 1, 31))
    assert out.height == 252
    around = out.filter(pl.col("ts").is_between(utc(2021, 7, 19), utc(2021, 7, 20)))
    c0, c1 = around["close"].to_list()
    assert abs(c1 / c0 - 1) < 0.1  # no 4:1 jump: Yahoo's OHLC is split-adjusted
    assert out.row(0, named=True)["close"] == pytest.approx(13.237, abs=1e-3)
    actions = yahoo.fetch(FetchRequest.actions("NVDA", utc(2021, 2, 1), utc(2022, 1, 31)))
    assert actions.select("kind", "ex_date", "ratio").rows() == [("split", date(2021, 7, 20), 4.0)]


def test_msft_dividends_and_the_dividends_data_type(replay, yahoo_dir, yahoo):
    chart(
        replay,
        yahoo_dir,
        "MSFT",
        "chart_MSFT_1d_2021-02-01_2022-01-31_dividends.cassette.json",
        interval=None,
    )
    actions = yahoo.fetch(FetchRequest.actions("MSFT", utc(2021, 2, 1), utc(2022, 1, 31)))
    assert actions["kind"].to_list() == ["dividend"] * 4
    assert actions["amount"].to_list() == pytest.approx([0.56, 0.56, 0.56, 0.62])
    assert actions["ex_date"].to_list() == [
        date(2021, 2, 17),
        date(2021, 5, 19),
        date(2021, 8, 18),
        date(2021, 11, 17),
    ]
    fund = yahoo.fetch(FetchRequest.fundamentals("MSFT", ("dividends",)))
    assert fund.height == 4 and set(fund["data_type"]) == {"dividends"}
    assert fund["value"].sum() == pytest.approx(2.30)
    assert len(replay.requests_to(CHART + "MSFT")) == 1  # the chart the actions read


def test_leading_null_bar_dropped_and_live_last_bar_not_final(replay, yahoo_dir, yahoo):
    chart(replay, yahoo_dir, "600497.SS", "chart_600497.SS_1d_leading_null_bar_2017.body.json")
    out = bars(yahoo, "600497.SS", "1D", utc(2017, 11, 1), utc(2017, 12, 1))
    assert out.height == 8  # 9 timestamps, the first one all null
    assert out["ts"][0] == utc(2017, 11, 16)
    assert out["open"].null_count() == 0
    assert out["is_final"].to_list() == [True] * 7 + [False]  # 15:00:03 CST: a live bar
    assert out["ts"][-1] == utc(2017, 11, 27)


def test_weekend_1m_without_timestamps_is_empty(replay, yahoo_dir, yahoo):
    chart(
        replay,
        yahoo_dir,
        "AAPL",
        "chart_AAPL_1m_weekend_no_bars_empty_quote.cassette.json",
        interval="1m",
    )
    out = bars(yahoo, "AAPL", "1m", utc(2025, 2, 1), utc(2025, 2, 2))
    assert out.is_empty() and out.schema == frame_schema("ohlcv")
    seen = replay.requests_to(CHART + "AAPL")[-1].params
    assert (seen["interval"], seen["period1"], seen["period2"]) == (
        "1m",
        "1738368000",
        "1738454400",
    )


def test_berlin_dst_shift_keeps_session_dates(replay, yahoo_dir, yahoo):
    chart(replay, yahoo_dir, "GS2C.DE", "chart_GS2C.DE_1d_5d_europe_berlin.body.json")
    out = bars(yahoo, "GS2C.DE", "1D", utc(2025, 10, 20), utc(2025, 11, 1))
    # 07:00 UTC (CEST) before 2025-10-26, 08:00 UTC (CET) after: both 09:00 in Berlin
    assert out["ts"].to_list() == [utc(2025, 10, d) for d in (23, 24, 27, 28, 29)]
    assert out["is_final"].to_list() == [True, True, True, True, False]  # 17:35 live bar


@pytest.mark.parametrize(
    ("symbol", "fixture", "keys"),
    [
        (
            "WSKT.JK",
            "chart_WSKT.JK_1d_2020-01-01_2020-01-03_asia_jakarta.cassette.json",
            [utc(2020, 1, 2)],
        ),  # 02:00 UTC = 09:00 WIB
        (
            "BTC-USD",
            "chart_BTC-USD_1d_2020-01-01_2020-01-03_crypto_utc.cassette.json",
            [utc(2020, 1, 1), utc(2020, 1, 2)],
        ),  # the bar at period2 is outside [start, end)
        (
            "EURUSD=X",
            "chart_EURUSDX_1d_2020-01-01_2020-01-03_fx_europe_london.cassette.json",
            [utc(2020, 1, 1), utc(2020, 1, 2)],
        ),
        (
            "GC=F",
            "chart_GCF_1d_2020-01-01_2020-01-03_future.cassette.json",
            [utc(2020, 1, 2)],
        ),  # 05:00 UTC = midnight in New York
    ],
)
def test_session_dates_across_time_zones(replay, yahoo_dir, yahoo, symbol, fixture, keys):
    chart(replay, yahoo_dir, symbol, fixture)
    out = bars(yahoo, symbol, "1D", utc(2020, 1, 1), utc(2020, 1, 3))
    assert out["ts"].to_list() == keys
    assert out["is_final"].all()
    if symbol == "EURUSD=X":
        assert out["volume"].to_list() == [0.0, 0.0]  # FX: no volume, not missing
    if symbol == "WSKT.JK":
        assert out["close"][0] == 1505.0 and out["adj_close"][0] == pytest.approx(1497.7766)


def test_vfinx_capital_gains_dated_by_their_date_field(replay, yahoo_dir, yahoo):
    chart(
        replay,
        yahoo_dir,
        "VFINX",
        "chart_VFINX_3mo_range_max_dividends_capitalGains.body.json",
        interval=None,
    )
    actions = yahoo.fetch(FetchRequest.actions("VFINX", utc(1980, 1, 1), utc(2026, 1, 1)))
    gains = actions.filter(pl.col("kind") == "capital_gain")
    # map key 560059200 is the 1987-10-01 bar bucket; the event's date 567786600 is 1987-12-29
    first = gains.row(0, named=True)
    assert (first["ex_date"], first["amount"]) == (date(1987, 12, 29), pytest.approx(0.17))
    assert actions.filter(pl.col("kind") == "dividend").height > 100
    assert actions.select("ex_date", "kind").is_unique().all()
    assert replay.requests_to(CHART + "VFINX")[-1].params["interval"] == "3mo"


def test_invalid_symbol_404(replay, yahoo_dir, yahoo):
    chart(
        replay, yahoo_dir, "INVALID.BO", "chart_404_invalid_symbol_INVALID.BO.body.json", status=404
    )
    with pytest.raises(InvalidSymbolError, match="INVALID.BO.*No data found") as err:
        bars(yahoo, "INVALID.BO", "1D", utc(2024, 1, 1), utc(2024, 2, 1))
    assert err.value.symbol == "INVALID.BO" and err.value.provider == "yahoo"
    assert len(replay.requests_to(CHART + "INVALID.BO")) == 1  # not retried


def test_range_too_wide_422_is_terminal_not_invalid(replay, yahoo_dir, yahoo):
    chart(replay, yahoo_dir, "TSLA", "chart_422_1m_range_over_8_days.envelope.json", interval="1m")
    with pytest.raises(TerminalProviderError, match="Only 8 days") as err:
        bars(yahoo, "TSLA", "1m", utc(2024, 12, 22), utc(2025, 1, 21))
    assert not isinstance(err.value, InvalidSymbolError)


def test_429_text_body_then_200_waits_ten_seconds(replay, yahoo_dir, yahoo, clock):
    from replay_server import load_recording

    replay.add(
        CHART + "AAPL",
        [
            load_recording(yahoo_dir / "error_429_edge_too_many_requests.envelope.json"),
            load_recording(
                yahoo_dir / "chart_AAPL_1d_2020-08-31_2020-11-07_split_and_dividends.cassette.json"
            ),
        ],
    )
    out = bars(yahoo, "AAPL", "1D", utc(2020, 8, 31), utc(2020, 11, 7))
    assert out.height == 49
    assert clock.sleeps == [10.0]  # no Retry-After header: the policy's 10 s


def test_getcrumb_and_quote_summary_price_profile(replay, yahoo_dir, yahoo):
    replay.add_file("/v1/test/getcrumb", yahoo_dir / "getcrumb.cassette.json")
    replay.add_file(
        "/v10/finance/quoteSummary/AAPL", yahoo_dir / "quoteSummary_price_AAPL.cassette.json"
    )
    prof = yahoo.fetch(FetchRequest.profile("AAPL"))
    row = prof.row(0, named=True)
    assert (row["symbol"], row["provider"], row["name"]) == ("AAPL", "yahoo", "Apple Inc.")
    assert row["market_cap"] == 3688676720640.0
    assert json.loads(row["raw"])["price"]["marketState"] == "PRE"
    qs = replay.requests_to("/v10/finance/quoteSummary/AAPL")[-1].params
    assert qs["crumb"] == "haT3oykhHqZ" and set(qs["modules"].split(",")) == {
        "assetProfile",
        "price",
    }
    yahoo.fetch(FetchRequest.profile("AAPL"))
    assert len(replay.requests_to("/v1/test/getcrumb")) == 1  # the crumb is reused


def test_crumb_rate_limited_text(replay, yahoo_dir, yahoo):
    replay.add_file(
        "/v1/test/getcrumb", yahoo_dir / "error_429_edge_too_many_requests.envelope.json"
    )
    with pytest.raises(RateLimitedError):
        yahoo.fetch(FetchRequest.profile("AAPL"))


def test_no_profile_404_then_empty_quote_is_invalid(replay, yahoo_dir, yahoo):
    replay.add_file("/v1/test/getcrumb", yahoo_dir / "getcrumb.cassette.json")
    replay.add_file(
        "/v10/finance/quoteSummary/^VXAPL",
        yahoo_dir / "quoteSummary_404_no_fundamentals_VXAPL.cassette.json",
    )
    replay.add_file(
        "/v7/finance/quote", yahoo_dir / "quote_v7_unknown_symbol_GS2C_empty_result.body.json"
    )
    with pytest.raises(InvalidSymbolError, match="No fundamentals data found"):
        yahoo.fetch(FetchRequest.profile("^VXAPL"))
    assert replay.requests_to("/v7/finance/quote")[-1].params["symbols"] == "^VXAPL"


def test_unknown_symbol_empty_v7_quote(replay, yahoo_dir, yahoo):
    replay.add_file("/v1/test/getcrumb", yahoo_dir / "getcrumb.cassette.json")
    replay.add_file(
        "/v7/finance/quote", yahoo_dir / "quote_v7_unknown_symbol_GS2C_empty_result.body.json"
    )
    with pytest.raises(InvalidSymbolError, match="GS2C.*empty quote"):
        yahoo.quote("GS2C")


TIMESERIES = "/ws/fundamentals-timeseries/v1/finance/timeseries/"


def test_quarterly_financials_from_timeseries(replay, yahoo_dir, yahoo):
    replay.add_file(
        TIMESERIES + "AAPL",
        yahoo_dir / "fundamentals_timeseries_AAPL_financials_quarterly.cassette.json",
    )
    out = yahoo.fetch(FetchRequest.fundamentals("AAPL", ("quarterly_financials",)))
    assert out.select("symbol", "data_type", "period_end", "item").is_unique().all()
    revenue = out.filter(pl.col("item") == "TotalRevenue").sort("period_end")
    assert revenue["period_end"].to_list() == [
        date(2024, 3, 31),
        date(2024, 6, 30),
        date(2024, 9, 30),
        date(2024, 12, 31),
    ]
    assert revenue["value"][0] == 90753000000.0 and revenue["text"][0] == "USD"
    assert set(out["data_type"]) == {"quarterly_financials"}
    assert out["item"].n_unique() == 33
    seen = replay.requests_to(TIMESERIES + "AAPL")
    assert all(s.params["type"].startswith("quarterly") for s in seen)
    # the same answer does not fill the annual statement (types are matched exactly)
    assert yahoo.fetch(FetchRequest.fundamentals("AAPL", ("financials",))).is_empty()


def test_meta_only_timeseries_gives_no_rows(replay, yahoo_dir, yahoo):
    replay.add_file(
        TIMESERIES + "^VXAPL",
        yahoo_dir / "fundamentals_timeseries_VXAPL_no_data_meta_only.cassette.json",
    )
    out = yahoo.fetch(FetchRequest.fundamentals("^VXAPL", ("quarterly_financials",)))
    assert out.is_empty()


def test_truncated_chart_is_bad_response(replay, yahoo):
    replay.add(
        CHART + "AAPL",
        Reply(200, b'{"chart": {"result": [{"meta": {', {"content-type": "application/json"}),
    )
    with pytest.raises(BadResponseError, match="yahoo AAPL: unparseable JSON"):
        bars(yahoo, "AAPL", "1D", utc(2024, 1, 1), utc(2024, 2, 1))


def test_symbol_mapping():
    assert yahoo_symbol("BRK.B") == "BRK-B"
    assert yahoo_symbol("GS2C.DE") == "GS2C.DE" and yahoo_symbol("600497.SS") == "600497.SS"
    assert yahoo_symbol("VOD.L") == "VOD.L"
    assert yahoo_symbol("ABC.L", {"exchange": "NYSE"}) == "ABC-L"
    assert yahoo_symbol("BTC/USD", {"asset_type": "crypto"}) == "BTC-USD"
    assert yahoo_symbol("EUR/USD", {"asset_type": "fx"}) == "EURUSD=X"
    assert yahoo_symbol("XYZ", {"provider_symbols": '{"yahoo": "XYZ.TO"}'}) == "XYZ.TO"


def test_mapped_symbol_reaches_the_url_encoded(replay, yahoo_dir, yahoo):
    chart(replay, yahoo_dir, "BRK-B", "chart_MSFT_1d_2021-02-01_2022-01-31_dividends.cassette.json")
    out = bars(yahoo, "BRK.B", "1D", utc(2021, 2, 1), utc(2021, 3, 1))
    assert out.height > 0 and set(out["symbol"]) == {"BRK.B"}
    for hostile in ("..", "X?interval=1m#y", "A%2F..%2Fb"):  # each stays one path segment
        with pytest.raises(InvalidSymbolError):
            bars(yahoo, hostile, "1D", utc(2021, 2, 1), utc(2021, 3, 1))
        seen = replay.unmatched[-1]
        assert seen.path == CHART + hostile and seen.params["interval"] == "1d"


# -- yfinance, bridged into the provider's HTTP layer -------------------------------------------
def test_yfinance_accessor_goes_through_the_replay_server(replay, yahoo_dir, yahoo):
    replay.add_file("/v1/test/getcrumb", yahoo_dir / "getcrumb.cassette.json")
    # written by hand in the shape yfinance parses (quoteSummary recommendationTrend)
    replay.add_json(
        "/v10/finance/quoteSummary/AAPL",
        {
            "quoteSummary": {
                "result": [
                    {
                        "recommendationTrend": {
                            "trend": [
                                {
                                    "period": "0m",
                                    "strongBuy": 7,
                                    "buy": 21,
                                    "hold": 14,
                                    "sell": 2,
                                    "strongSell": 1,
                                },
                                {
                                    "period": "-1m",
                                    "strongBuy": 8,
                                    "buy": 21,
                                    "hold": 13,
                                    "sell": 2,
                                    "strongSell": 1,
                                },
                            ]
                        }
                    }
                ],
                "error": None,
            }
        },
    )
    out = yahoo.fetch(FetchRequest.fundamentals("AAPL", ("recommendations",)))
    values = dict(zip(out["item"], out["value"], strict=True))
    assert values["0m.strongBuy"] == 7.0 and values["-1m.hold"] == 13.0
    assert set(out["period_end"]) == {date(2025, 3, 3)}  # the fetch date
    qs = replay.requests_to("/v10/finance/quoteSummary/AAPL")[-1].params
    assert qs["modules"] == "recommendationTrend" and qs["crumb"] == "haT3oykhHqZ"


def test_yfinance_404_becomes_invalid_symbol(replay, yahoo_dir, yahoo):
    replay.add_file("/v1/test/getcrumb", yahoo_dir / "getcrumb.cassette.json")
    replay.add_file(
        "/v10/finance/quoteSummary/^VXAPL",
        yahoo_dir / "quoteSummary_404_no_fundamentals_VXAPL.cassette.json",
    )
    with pytest.raises(InvalidSymbolError, match=r"\^VXAPL"):
        yahoo.fetch(FetchRequest.fundamentals("^VXAPL", ("recommendations",)))


def test_bridge_refuses_non_yahoo_hosts(replay, yahoo):
    from marketlake.pipeline.providers.yahoo import yfbridge

    sess = yfbridge.session(yahoo.home / "cache" / "yfinance")
    with yfbridge.route(yahoo.http, yahoo.settings.base_url, "AAPL"):
        with pytest.raises(TerminalProviderError, match="non-Yahoo host"):
            sess.get("https://markets.businessinsider.com/ajax/x")
    assert replay.seen == []


def test_market_status(replay, yahoo):
    # written by hand in the shape of Yahoo's markettime answer (no recording exists)
    replay.add_json(
        "/v6/finance/markettime",
        {
            "finance": {
                "marketTimes": [
                    {
                        "marketTime": [
                            {
                                "id": "us",
                                "name": "U.S. markets",
                                "status": "closed",
                                "open": "2025-03-03T14:30:00Z",
                                "close": "2025-03-03T21:00:00Z",
                            }
                        ]
                    }
                ],
                "error": None,
            }
        },
        params={"market": "US"},
    )
    status = json.loads(yahoo.fetch(FetchRequest.market("status:US"))["value"][0])
    assert status["status"] == "closed"


def test_tidy_flattens_yfinance_shapes():
    """The converter behind the accessor types, on frames shaped like yfinance 1.x returns
    (built here by hand: no recording of these endpoints exists)."""
    import pandas as pd

    from marketlake.pipeline.providers.yahoo.fundamentals import frame, tidy

    at = datetime(2025, 3, 3, 12, tzinfo=UTC)

    def rows(data_type, obj):
        return {
            (r["period_end"], r["item"]): r
            for r in frame(tidy(data_type, obj, symbol="AAPL", fetched_at=at)).iter_rows(named=True)
        }

    major = rows(
        "major_holders",
        pd.DataFrame(
            {"Value": [0.02, 0.61]}, index=["insidersPercentHeld", "institutionsPercentHeld"]
        ),
    )
    assert major[(date(2025, 3, 3), "institutionsPercentHeld")]["value"] == 0.61

    inst = rows(
        "institutional_holders",
        pd.DataFrame(
            {
                "Date Reported": [pd.Timestamp("2024-12-31")],
                "Holder": ["Vanguard Group Inc"],
                "pctHeld": [0.09],
                "Shares": [1.3e9],
                "Value": [3.2e11],
                "pctChange": [0.01],
            }
        ),
    )
    assert inst[(date(2024, 12, 31), "Vanguard Group Inc.Shares")]["value"] == 1.3e9

    earn = rows(
        "earnings_dates",
        pd.DataFrame(
            {"EPS Estimate": [2.35, None], "Reported EPS": [2.4, None]},
            index=pd.DatetimeIndex(
                [
                    pd.Timestamp("2025-01-30 16:00", tz="America/New_York"),
                    pd.Timestamp("2025-05-01 16:00", tz="America/New_York"),
                ]
            ),
        ),
    )
    assert earn[(date(2025, 1, 30), "Reported EPS")]["value"] == 2.4
    assert (date(2025, 5, 1), "Reported EPS") not in earn  # NaN cells are not rows

    growth = rows(
        "growth_estimates",
        pd.DataFrame(
            {"stockTrend": [0.1, float("nan")], "indexTrend": [0.05, 0.07]}, index=["0q", "+1y"]
        ),
    )
    assert set(k[1] for k in growth) == {"0q.stockTrend", "0q.indexTrend", "+1y.indexTrend"}

    cal = rows(
        "calendar",
        {
            "Dividend Date": date(2025, 2, 13),
            "Earnings Average": 2.35,
            "Earnings Date": [date(2025, 5, 1)],
        },
    )
    assert cal[(date(2025, 3, 3), "Dividend Date")]["text"] == "2025-02-13"
    assert cal[(date(2025, 3, 3), "Earnings Average")]["value"] == 2.35
    assert json.loads(cal[(date(2025, 3, 3), "Earnings Date")]["raw"]) == ["2025-05-01"]

    filings = rows(
        "sec_filings",
        [
            {"date": date(2025, 1, 31), "type": "10-Q", "title": "Quarterly report"},
            {"date": date(2025, 1, 31), "type": "10-Q", "title": "Amendment"},
        ],
    )
    assert {k[1] for k in filings} == {"10-Q#1", "10-Q#2"}
    assert json.loads(filings[(date(2025, 1, 31), "10-Q#2")]["raw"])["title"] == "Amendment"

    assert rows("recommendations", None) == {} and rows("esg_scores", pd.DataFrame()) == {}
