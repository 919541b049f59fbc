"""One symbol's bars with chosen indicators, for charts and apps (the service and ``chart``).

Indicators are computed on the fly by the kernels over the whole stored series, then cut to the
requested window, so any spec works and the first bars of the window carry values, not warm-up
NaNs. The symbol is a filter value, never a path or SQL text.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from marketlake.errors import ConfigError, UnknownSymbolError
from marketlake.lake.store import Lake
from marketlake.pipeline import timeframes as tfs

BAR_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]
MAX_BARS = 20_000


def read_bars(
    lake: Lake,
    symbol: str,
    timeframe: str = "1D",
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    indicators: list[str] | None = None,
    limit: int | None = None,
) -> pl.DataFrame:
    """``ts, open, high, low, close, volume`` plus one column per indicator output, sorted by
    ``ts``; ``limit`` keeps the last bars of the window."""
    tfs.check([timeframe])
    specs = indicators or []
    columns: list[str] = []
    if specs:
        from marketlake import kernels

        try:
            columns = kernels.output_columns(specs)
        except ValueError as exc:
            raise ConfigError(str(exc).splitlines()[0]) from exc
    frame = (
        lake.scan("ohlcv")
        .filter((pl.col("timeframe") == timeframe) & (pl.col("symbol") == symbol))
        .select("symbol", *BAR_COLUMNS)
        .sort("ts")
        .collect()
    )
    if frame.is_empty():
        known = (
            lake.scan("ohlcv")
            .filter(pl.col("symbol") == symbol)
            .select("timeframe")
            .unique()
            .collect()
            .get_column("timeframe")
            .to_list()
        )
        if known:
            raise UnknownSymbolError(
                f"{symbol}: no {timeframe} bars (has {', '.join(sorted(known))})"
            )
        raise UnknownSymbolError(f"{symbol}: no bars in the lake")
    if specs:
        from marketlake import kernels

        frame = kernels.compute(frame, specs)
    if start is not None:
        frame = frame.filter(pl.col("ts") >= start)
    if end is not None:
        frame = frame.filter(pl.col("ts") < end)
    cap = min(limit or MAX_BARS, MAX_BARS)
    return frame.tail(cap).select(*BAR_COLUMNS, *columns)
