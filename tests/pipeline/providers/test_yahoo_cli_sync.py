"""End to end: ``marketlake universe add`` + ``marketlake sync`` against the replay server
(MARKETLAKE_YAHOO_BASE_URL) lands exactly the rows a direct provider call returns."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
from replay_server import settings_for
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake.store import Lake
from marketlake.pipeline.providers.base import FetchRequest, frame_schema
from marketlake.pipeline.providers.yahoo import YahooProvider

AAPL = "chart_AAPL_1d_2020-08-31_2020-11-07_split_and_dividends.cassette.json"


def test_cli_sync_lands_the_provider_rows(replay, provider_fixtures, home, tmp_path):
    replay.add_file(
        "/v8/finance/chart/AAPL", provider_fixtures / "yahoo" / AAPL, params={"interval": "1d"}
    )
    env = {
        "MARKETLAKE_HOME": str(home),
        "MARKETLAKE_YAHOO_BASE_URL": replay.url,
        "MARKETLAKE_NOW": "2025-03-03T12:00:00+00:00",
    }
    runner = CliRunner()
    added = runner.invoke(
        app,
        [
            "universe",
            "add",
            "AAPL",
            "--provider",
            "yahoo",
            "--exchange",
            "NMS",
            "--timezone",
            "America/New_York",
        ],
        env=env,
    )
    assert added.exit_code == 0, added.output
    synced = runner.invoke(
        app,
        [
            "sync",
            "--provider",
            "yahoo",
            "--symbols",
            "AAPL",
            "--timeframes",
            "1D",
            "--kinds",
            "ohlcv",
            "--start",
            "2020-08-31",
            "--end",
            "2020-11-07",
            "--json",
        ],
        env=env,
    )
    assert synced.exit_code == 0, synced.output
    summary = json.loads(synced.stdout.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["rows"]["inserted"] == 49, summary
    assert replay.unmatched == []

    direct = YahooProvider(settings_for("yahoo", replay)).fetch(
        FetchRequest(
            "AAPL", "1D", datetime(2020, 8, 31, tzinfo=UTC), datetime(2020, 11, 7, tzinfo=UTC)
        )
    )
    landed = (
        Lake(home)
        .read("ohlcv")
        .filter(pl.col("symbol") == "AAPL")
        .select(list(frame_schema("ohlcv")))
        .sort("ts")
    )
    assert landed.equals(direct.sort("ts"))

    again = runner.invoke(
        app,
        [
            "sync",
            "--provider",
            "yahoo",
            "--symbols",
            "AAPL",
            "--timeframes",
            "1D",
            "--kinds",
            "ohlcv",
            "--start",
            "2020-08-31",
            "--end",
            "2020-11-07",
            "--json",
        ],
        env=env,
    )
    rows = json.loads(again.stdout.strip().splitlines()[-1])["rows"]
    assert rows["inserted"] == 0 and rows["updated"] == 0  # a second run changes nothing


def test_cli_sync_actions_and_profile(replay, provider_fixtures, home):
    yahoo = provider_fixtures / "yahoo"
    replay.add_file("/v8/finance/chart/AAPL", yahoo / AAPL, params={"interval": "3mo"})
    replay.add_file("/v1/test/getcrumb", yahoo / "getcrumb.cassette.json")
    replay.add_file(
        "/v10/finance/quoteSummary/AAPL", yahoo / "quoteSummary_price_AAPL.cassette.json"
    )
    env = {
        "MARKETLAKE_HOME": str(home),
        "MARKETLAKE_YAHOO_BASE_URL": replay.url,
        "MARKETLAKE_NOW": "2025-03-03T12:00:00+00:00",
    }
    runner = CliRunner()
    assert (
        runner.invoke(app, ["universe", "add", "AAPL", "--provider", "yahoo"], env=env).exit_code
        == 0
    )
    synced = runner.invoke(
        app,
        [
            "sync",
            "--provider",
            "yahoo",
            "--symbols",
            "AAPL",
            "--kinds",
            "actions,profile",
            "--start",
            "2020-08-31",
            "--end",
            "2020-11-07",
            "--json",
        ],
        env=env,
    )
    assert synced.exit_code == 0, synced.output
    lake = Lake(home)
    actions = lake.read("corporate_actions").sort("ex_date")
    assert actions.select("kind", "ratio", "amount").rows() == [
        ("split", 4.0, None),
        ("dividend", None, 0.205),
    ]
    profile = lake.read("profiles").row(0, named=True)
    assert (profile["symbol"], profile["name"]) == ("AAPL", "Apple Inc.")
    assert "haT3oykhHqZ" not in synced.output  # the session crumb is never shown
