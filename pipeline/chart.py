"""``marketlake chart``: candles, volume and chosen indicators of one symbol as a PNG
(mplfinance). Price-scale indicators (SMA, EMA, Bollinger, VWAP, Supertrend, pivots, Fibonacci
levels) are drawn over the candles; RSI, MACD, ATR, ADX and OBV get panes of their own."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from marketlake.errors import ConfigError
from marketlake.lake.atomic import atomic_write

_OVERLAY = ("sma_", "ema_", "bb_", "vwap", "supertrend_", "pivot_", "fib_")
_PANES = (("rsi_",), ("macd",), ("atr_",), ("adx_", "plus_di_", "minus_di_"), ("obv",))


def layout(columns: list[str]) -> tuple[list[str], list[list[str]]]:
    """Indicator columns -> (overlays, panes of columns drawn together)."""
    overlays = [c for c in columns if c.startswith(_OVERLAY) and not c.startswith("supertrend_dir")]
    panes = []
    for prefixes in _PANES:
        group = [c for c in columns if c.startswith(prefixes)]
        if group:
            panes.append(group)
    return overlays, panes


def render(frame: pl.DataFrame, out: Path, *, title: str = "") -> Path:
    """Write ``frame`` (``ts, open, high, low, close, volume`` + indicator columns) as a PNG."""
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # style font fallbacks
    import mplfinance as mpf

    if frame.height < 2:
        raise ConfigError(f"{title}: need at least 2 bars to draw a chart, have {frame.height}")
    pdf = frame.to_pandas().set_index("ts")
    pdf.index = pdf.index.tz_convert(None)
    pdf = pdf.rename(
        columns={c: c.capitalize() for c in ("open", "high", "low", "close", "volume")}
    )
    indicator_cols = [
        c for c in frame.columns if c not in ("ts", "open", "high", "low", "close", "volume")
    ]
    indicator_cols = [c for c in indicator_cols if pdf[c].notna().any()]
    overlays, panes = layout(indicator_cols)
    plots = []
    palette = ["#2962ff", "#ff6d00", "#00897b", "#d500f9", "#6d4c41", "#c51162", "#546e7a"]
    for i, col in enumerate(overlays):
        plots.append(mpf.make_addplot(pdf[col], panel=0, width=0.9, color=palette[i % 7]))
    for p, group in enumerate(panes, start=2):
        for i, col in enumerate(group):
            if col.startswith("macd_hist"):
                plots.append(
                    mpf.make_addplot(pdf[col], panel=p, type="bar", color="#90a4ae", ylabel="MACD")
                )
            else:
                label = col.split("_")[0].upper()
                plots.append(
                    mpf.make_addplot(pdf[col], panel=p, color=palette[i % 7], ylabel=label)
                )
    ratios = (4, 1, *([1.2] * len(panes)))

    def write(path: Path) -> None:
        mpf.plot(
            pdf,
            type="candle",
            style="yahoo",
            volume=True,
            addplot=plots or None,
            panel_ratios=ratios,
            title=title,
            figsize=(11, 6 + 1.5 * len(panes)),
            tight_layout=True,
            savefig={"fname": str(path), "dpi": 90, "format": "png"},
        )

    atomic_write(Path(out), write)
    return Path(out)
