"""A row whose value does not parse is quarantined with its reason; the symbol's other rows
land (CSV import, Indodax candles, Yahoo charts)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from replay_server import settings_for

from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import ProviderSettings, load_settings
from marketlake.pipeline.providers.base import FetchRequest, provider_class, split_rejects
from marketlake.pipeline.providers.yahoo.chart import parse_bars
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def test_csv_volume_abc_quarantines_one_row_and_lands_the_rest(home, tmp_path):
    # regression: one row with Volume "abc" rejected all bars of its symbol
    src = tmp_path / "AAA.csv"
    src.write_text(
        "Date,Open,High,Low,Close,Volume\n"
        "2024-01-02,10,12,9.5,11,100\n"
        "2024-01-03,11,12.5,10.5,12,abc\n"
        "2024-01-04,12,13,11,12.5,300\n"
        "soon,12,13,11,12.5,300\n"
    )
    settings = load_settings(home=home, env={}, now=NOW)
    providers = dict(settings.providers)
    providers["files"] = ProviderSettings("files", options={"path": str(src)})
    lake = Lake(home)
    universe.add(lake, "AAA", run_id="u", provider="files")
    res = run_sync(settings.with_(providers=providers), start="2024-01-01")
    got = lake.read("ohlcv").sort("ts")
    assert got["ts"].dt.day().to_list() == [2, 4] and got["volume"].to_list() == [100.0, 300.0]
    q = lake.read("quarantine").sort("reason")
    assert q.filter(pl.col("symbol") == "AAA")["reason"].to_list() == [
        "AAA.csv: Date soon does not parse",
        "Volume abc does not parse",
    ]
    assert res.tasks_ok == 1 and res.quarantined == 2


def test_indodax_candle_with_volume_abc_is_rejected_alone(replay):
    # regression: float("abc") raised for the whole response: no candle of the pair landed
    candles = [
        {"Time": 1704067200 + i * 3600, "Open": 10, "High": 11, "Low": 9, "Close": 10.5,
         "Volume": "abc" if i == 1 else "1.5"}
        for i in range(3)
    ]  # fmt: skip
    replay.add_json("/tradingview/history_v2", candles)
    indodax = provider_class("indodax")(settings_for("indodax", replay), clock=lambda: NOW)
    req = FetchRequest.bars("BTC/IDR", "1h", datetime(2024, 1, 1, tzinfo=UTC), NOW)
    good, bad = split_rejects(indodax.fetch(req))
    assert good.height == 2 and good["volume"].to_list() == [1.5, 1.5]
    assert bad["reason"].to_list() == ["Volume 'abc' is not a number"]


def test_yahoo_chart_value_that_is_not_a_number_is_rejected_alone():
    # regression: a non-numeric volume became a silent null instead of a quarantined row
    ts = [1704205800, 1704292200, 1704378600]
    body = {
        "chart": {
            "result": [
                {
                    "meta": {"exchangeTimezoneName": "America/New_York"},
                    "timestamp": ts,
                    "indicators": {
                        "quote": [
                            {
                                "open": [1.0, 2.0, 3.0],
                                "high": [1.5, 2.5, 3.5],
                                "low": [0.5, 1.5, 2.5],
                                "close": [1.2, 2.2, 3.2],
                                "volume": [10, "abc", 30],
                            }
                        ]
                    },
                }
            ],
            "error": None,
        }
    }
    frame = parse_bars(
        body,
        symbol="AAA",
        timeframe="1D",
        start=datetime(2024, 1, 1, tzinfo=UTC),
        end=datetime(2024, 1, 10, tzinfo=UTC),
        now=NOW,
    )
    good, bad = split_rejects(frame)
    assert good["volume"].to_list() == [10.0, 30.0]
    assert bad["reason"].to_list() == ["volume 'abc' is not a number"]
