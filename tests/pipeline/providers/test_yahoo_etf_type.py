"""An instrument Yahoo's own answer calls an ETF (chart ``instrumentType``, quoteSummary
``quoteType``) becomes one in ``instruments`` when a bars or profile sync sees it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake.store import Lake

OWN = Path(__file__).parent / "fixtures" / "yahoo"


def _env(home, replay) -> dict[str, str]:
    return {
        "MARKETLAKE_HOME": str(home),
        "MARKETLAKE_YAHOO_BASE_URL": replay.url,
        "MARKETLAKE_NOW": "2025-03-03T12:00:00+00:00",
    }


def _add(runner, env, *symbols: str) -> None:
    for symbol in symbols:
        out = runner.invoke(
            app, ["universe", "add", symbol, "--provider", "yahoo", "--exchange", "NMS"], env=env
        )
        assert out.exit_code == 0, out.output


def _instruments(home) -> dict[str, tuple[bool, str]]:
    df = Lake(home).read("instruments")
    return {s: (e, a) for s, e, a in df.select("symbol", "is_etf", "asset_type").iter_rows()}


def _sync(runner, env, *args: str) -> dict:
    out = runner.invoke(app, ["sync", "--provider", "yahoo", *args, "--json"], env=env)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bars_sync_marks_the_chart_etf(replay, provider_fixtures, home):
    replay.add_file(
        "/v8/finance/chart/SPY",
        OWN / "written_from_docs_chart_SPY_1d_2025-01-02_2025-01-07_etf.json",
    )
    replay.add_file(
        "/v8/finance/chart/AAPL",
        provider_fixtures
        / "yahoo"
        / "chart_AAPL_1d_2020-08-31_2020-11-07_split_and_dividends.cassette.json",
    )
    runner, env = CliRunner(), _env(home, replay)
    _add(runner, env, "SPY", "AAPL")
    assert _instruments(home)["SPY"] == (False, "equity")
    args = [
        "--timeframes",
        "1D",
        "--kinds",
        "ohlcv",
        "--start",
        "2025-01-02",
        "--end",
        "2025-01-07",
    ]
    summary = _sync(runner, env, "--symbols", "SPY,AAPL", *args)
    assert summary["status"] == "ok", summary
    got = _instruments(home)
    assert got["SPY"] == (True, "etf")
    assert got["AAPL"] == (False, "equity")  # Yahoo says EQUITY: left alone
    assert Lake(home).read("ohlcv").filter(pl.col("symbol") == "SPY").height == 3


def test_profile_sync_marks_the_quote_type_etf(replay, provider_fixtures, home):
    replay.add_file("/v1/test/getcrumb", provider_fixtures / "yahoo" / "getcrumb.cassette.json")
    replay.add_file(
        "/v10/finance/quoteSummary/QQQ", OWN / "written_from_docs_quoteSummary_QQQ_price_etf.json"
    )
    runner, env = CliRunner(), _env(home, replay)
    _add(runner, env, "QQQ")
    summary = _sync(runner, env, "--symbols", "QQQ", "--kinds", "profile")
    assert summary["status"] == "ok", summary
    assert _instruments(home)["QQQ"] == (True, "etf")
    assert Lake(home).read("profiles")["name"].to_list() == ["Invesco QQQ Trust"]
