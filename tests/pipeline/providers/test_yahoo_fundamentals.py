"""Yahoo's 23 fundamentals types in a handful of requests: one quoteSummary with every module,
one timeseries request per statement family, the event chart for dividends (shared with the
actions kind), the earnings page."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from replay_server import FakeClock, Reply, settings_for

from marketlake.errors import InvalidSymbolError
from marketlake.pipeline.providers.base import FetchRequest
from marketlake.pipeline.providers.yahoo import YahooProvider
from marketlake.pipeline.providers.yahoo import fundamentals as yfund

OWN = Path(__file__).parent / "fixtures" / "yahoo"
SUMMARY = OWN / "written_from_docs_quoteSummary_AAPL_fundamentals_modules.json"
QS = "/v10/finance/quoteSummary/AAPL"
TS = "/ws/fundamentals-timeseries/v1/finance/timeseries/AAPL"
# written by hand in the shape yfinance's earnings-dates scraper reads (no recording exists)
EARNINGS_PAGE = """<html><body><table><tr><th>Symbol</th><th>Company</th>
<th>Earnings Date</th><th>EPS Estimate</th><th>Reported EPS</th><th>Surprise (%)</th></tr>
<tr><td>AAPL</td><td>Apple Inc</td><td>January 30, 2025 at 4 PM EST</td><td>2.35</td>
<td>2.40</td><td>2.13</td></tr></table></body></html>"""


@pytest.fixture
def yahoo(replay, home):
    clock = FakeClock(datetime(2025, 3, 3, 12, tzinfo=UTC))
    p = YahooProvider(
        settings_for("yahoo", replay, max_retries=0), home=home, clock=clock.now, sleep=clock.sleep
    )
    yield p
    p.close()


@pytest.fixture
def aapl(replay, provider_fixtures):
    """Every endpoint the 23 types read, for AAPL; quoteSummary answers only the modules asked
    for (as Yahoo does), so a request per accessor and the one batch are told apart."""
    yahoo_dir = provider_fixtures / "yahoo"
    replay.add("/", Reply(200, b"<html></html>", {"content-type": "text/html"}))  # the cookie
    replay.add_file("/v1/test/getcrumb", yahoo_dir / "getcrumb.cassette.json")
    replay.add_file(
        "/v8/finance/chart/AAPL",
        yahoo_dir / "chart_MSFT_1d_2021-02-01_2022-01-31_dividends.cassette.json",
    )
    replay.add_file(
        TS, yahoo_dir / "fundamentals_timeseries_AAPL_financials_quarterly.cassette.json"
    )
    replay.add(
        "/calendar/earnings", Reply(200, EARNINGS_PAGE.encode(), {"content-type": "text/html"})
    )
    modules = json.loads(SUMMARY.read_text())["quoteSummary"]["result"][0]
    for data_type in yfund.DATA_TYPES:
        wanted = yfund.quote_summary_modules([data_type])
        if wanted:
            body = {"quoteSummary": {"result": [{m: modules[m] for m in wanted}], "error": None}}
            replay.add_json(QS, body, params={"modules": ",".join(wanted)})
    batch = yfund.quote_summary_modules(yfund.DATA_TYPES)
    body = {"quoteSummary": {"result": [{m: modules[m] for m in batch}], "error": None}}
    replay.add_json(QS, body, params={"modules": ",".join(batch)})
    return replay


def _rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop("fetched_at").sort("data_type", "period_end", "item")


def test_all_23_types_in_six_requests(aapl, yahoo):
    out = yahoo.fetch(FetchRequest.fundamentals("AAPL"))
    # the recording holds the quarterly income statement only: the other statements are empty
    landed = (set(yfund.DATA_TYPES) - set(yfund.STATEMENTS)) | {"quarterly_financials"}
    assert set(out["data_type"]) == landed
    session = [s for s in aapl.seen if s.path in ("/", "/v1/test/getcrumb")]
    per_symbol = [s for s in aapl.seen if s not in session]
    assert len(per_symbol) <= 6, [s.path for s in per_symbol]
    assert len(aapl.requests_to(QS)) == 1 and len(aapl.requests_to(TS)) == 3
    assert aapl.unmatched == []
    # one request per family lists every timescale of it
    scales = [{t[:6] for t in s.params["type"].split(",")} for s in aapl.requests_to(TS)]
    assert {"annual", "quarte", "traili"} in scales
    values = {(r["data_type"], r["item"]): r for r in out.iter_rows(named=True)}
    assert values[("recommendations", "0m.strongBuy")]["value"] == 7.0
    assert values[("analyst_price_targets", "mean")]["value"] == 252.6
    assert values[("major_holders", "institutionsPercentHeld")]["value"] == 0.6197
    assert values[("earnings_estimate", "0q.avg")]["value"] == 1.61
    assert values[("growth_estimates", "+5y.indexTrend")]["value"] == 0.104
    assert values[("calendar", "Ex-Dividend Date")]["text"] == "2025-02-10"
    assert values[("earnings_dates", "Reported EPS")]["period_end"] == date(2025, 1, 30)
    revenue = out.filter(
        (pl.col("data_type") == "quarterly_financials") & (pl.col("item") == "TotalRevenue")
    )
    assert revenue.height == 4 and revenue["value"].min() == 85777000000.0


def test_dividends_from_the_chart_the_actions_kind_fetched(aapl, yahoo):
    """A sync of actions and fundamentals asks for the event chart once: the dividends type
    reads the chart the actions kind fetched, whichever runs first."""
    actions = yahoo.fetch(
        FetchRequest.actions(
            "AAPL", datetime(2021, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC)
        )
    )
    assert actions["kind"].to_list() == ["dividend"] * 4
    before = len(aapl.seen)
    out = yahoo.fetch(FetchRequest.fundamentals("AAPL"))
    fundamentals = [s.path for s in aapl.seen[before:] if s.path not in ("/", "/v1/test/getcrumb")]
    assert len(fundamentals) <= 5 and "/v8/finance/chart/AAPL" not in fundamentals
    dividends = out.filter(pl.col("data_type") == "dividends")
    assert dividends["period_end"].to_list() == actions["ex_date"].to_list()
    assert dividends["value"].to_list() == actions["amount"].to_list()
    # the held chart is the whole event history, asked once
    (chart,) = aapl.requests_to("/v8/finance/chart/AAPL")
    assert (chart.params["interval"], chart.params["period1"]) == ("3mo", "86400")
    again = yahoo.fetch(
        FetchRequest.actions(
            "AAPL", datetime(2021, 6, 1, tzinfo=UTC), datetime(2021, 9, 1, tzinfo=UTC)
        )
    )
    assert again["ex_date"].to_list() == [date(2021, 8, 18)]
    assert len(aapl.requests_to("/v8/finance/chart/AAPL")) == 1


def test_batched_rows_equal_one_type_at_a_time(aapl, yahoo):
    """The batch lands what each type fetched on its own lands (modules are matched per
    accessor, statement keys per timescale)."""
    batched = yahoo.fetch(FetchRequest.fundamentals("AAPL"))
    alone = pl.concat(
        [yahoo.fetch(FetchRequest.fundamentals("AAPL", (t,))) for t in yfund.DATA_TYPES]
    )
    assert _rows(batched).equals(_rows(alone))
    assert aapl.unmatched == []


def test_long_timeseries_url_refused_falls_back_to_chunks(aapl, yahoo):
    route = next(r for r in aapl.routes if r.path == TS)
    route.replies = [Reply(414, b"URI Too Long", {"content-type": "text/plain"}), *route.replies]
    out = yahoo.fetch(FetchRequest.fundamentals("AAPL", ("quarterly_financials",)))
    assert out["item"].n_unique() == 33
    seen = aapl.requests_to(TS)
    keys = len(yfund.statement_keys("quarterly_financials")[1])
    assert len(seen) == 1 + -(-keys // yfund.TIMESERIES_CHUNK)
    # later families go in chunks at once
    before = len(aapl.requests_to(TS))
    yahoo.fetch(FetchRequest.fundamentals("AAPL", ("financials",)))
    assert len(aapl.requests_to(TS)) - before == -(-keys // yfund.TIMESERIES_CHUNK)


def test_no_quote_summary_fails_its_types_only(replay, provider_fixtures, yahoo):
    yahoo_dir = provider_fixtures / "yahoo"
    replay.add_file("/v1/test/getcrumb", yahoo_dir / "getcrumb.cassette.json")
    replay.add_file(
        "/v10/finance/quoteSummary/^VXAPL",
        yahoo_dir / "quoteSummary_404_no_fundamentals_VXAPL.cassette.json",
    )
    replay.add_file(
        "/ws/fundamentals-timeseries/v1/finance/timeseries/^VXAPL",
        yahoo_dir / "fundamentals_timeseries_VXAPL_no_data_meta_only.cassette.json",
    )
    types = ("recommendations", "calendar", "esg_scores")
    with pytest.raises(InvalidSymbolError, match="No fundamentals data found"):
        yahoo.fetch(FetchRequest.fundamentals("^VXAPL", types))
    assert len(replay.requests_to("/v10/finance/quoteSummary/^VXAPL")) == 1
    out = yahoo.fetch(FetchRequest.fundamentals("^VXAPL", (*types, "quarterly_financials")))
    assert out.is_empty()  # the statements answered (no data): the symbol does not fail
