"""``marketlake chart``: candles and indicators of one symbol to a PNG, from the lake."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.bars import read_bars
from marketlake.pipeline.chart import layout

ENV = {"MARKETLAKE_NOW": "2026-11-20T18:00:00+00:00"}


@pytest.fixture
def synced(home):
    lake = Lake(home)
    for s in ("AAA", "BRK.B"):
        universe.add(lake, s, run_id="u", provider="synthetic")
    res = CliRunner().invoke(
        app, ["sync", "--timeframes", "1D", "--home", str(home), "--json"], env=ENV
    )
    assert res.exit_code == 0, res.output
    return home


def test_chart_writes_a_png_with_overlays_and_panes(synced, tmp_path):
    out = tmp_path / "brk.png"
    res = CliRunner().invoke(
        app,
        ["chart", "BRK.B", "--home", str(synced), "--out", str(out), "--bars", "120",
         "--indicators", "sma(20),bbands(20,2),rsi(14),macd(12,26,9)"],
        env=ENV,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    frame = read_bars(Lake(synced), "BRK.B", indicators=["sma(20)", "rsi(14)"], limit=120)
    assert frame.height == 120 and frame.get_column("sma_20").null_count() == 0


def test_indicators_split_into_overlays_and_panes():
    overlays, panes = layout(
        ["sma_20", "bb_upper_20_2", "rsi_14", "macd_12_26_9", "macd_hist_12_26_9", "obv",
         "supertrend_10_3", "supertrend_dir_10_3"]
    )  # fmt: skip
    assert overlays == ["sma_20", "bb_upper_20_2", "supertrend_10_3"]
    assert panes == [["rsi_14"], ["macd_12_26_9", "macd_hist_12_26_9"], ["obv"]]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["NOPE"], "NOPE: no bars"),
        (["AAA", "--timeframe", "1h"], "no 1h bars"),
        (["AAA", "--indicators", "sma(0)"], "sma"),
    ],
)
def test_chart_errors_are_one_line_and_exit_2_or_1(synced, tmp_path, args, needle):
    res = CliRunner().invoke(
        app, ["chart", *args, "--home", str(synced), "--out", str(tmp_path / "x.png")], env=ENV
    )
    assert res.exit_code in (1, 2) and needle in res.output, res.output
    assert not (tmp_path / "x.png").exists()
