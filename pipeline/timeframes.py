"""Timeframes: durations, bar alignment and resampling from a finer timeframe."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from marketlake.errors import ConfigError
from marketlake.lake.tables import INTRADAY, TIMEFRAMES

DURATION: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1D": timedelta(days=1),
    "1W": timedelta(weeks=1),
}
# what each timeframe can be built from, finest last
RESAMPLE_FROM = {"4h": "1h", "1h": "30m", "30m": "15m", "15m": "1m", "1W": "1D"}
_EVERY = {"1m": "1m", "15m": "15m", "30m": "30m", "1h": "1h", "4h": "4h", "1D": "1d", "1W": "1w"}


def check(timeframes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate timeframe names (case-sensitive, as stored in the lake)."""
    bad = [t for t in timeframes if t not in TIMEFRAMES]
    if bad:
        raise ConfigError(f"unknown timeframe(s) {bad}; valid: {', '.join(TIMEFRAMES)}")
    return tuple(timeframes)


def is_intraday(tf: str) -> bool:
    return tf in INTRADAY


def floor(ts: datetime, tf: str) -> datetime:
    """Start of the bar that contains ``ts`` (UTC; weeks start on Monday)."""
    if tf == "1W":
        day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=day.weekday())
    if tf == "1D":
        return ts.replace(hour=0, minute=0, second=0, microsecond=0)
    step = DURATION[tf]
    epoch = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    n = (ts - epoch) // step
    return epoch + n * step


def source_for(tf: str, native: tuple[str, ...] | frozenset[str]) -> str | None:
    """The timeframe to fetch so that ``tf`` can be built: itself if native, else the nearest
    finer native one it can be resampled from."""
    cur: str | None = tf
    while cur is not None:
        if cur in native:
            return cur
        cur = RESAMPLE_FROM.get(cur)
    return None


def resample(bars: pl.DataFrame, tf: str, *, now: datetime) -> pl.DataFrame:
    """Aggregate finer bars into ``tf`` bars per symbol (open first, high max, low min, close
    last, volume sum). A bar is final only when all its parts are and its period has closed
    by ``now`` (the run's clock): the current week's bar is still forming on a Wednesday."""
    if bars.is_empty():
        return bars.with_columns(pl.lit(tf).alias("timeframe"))
    every = _EVERY[tf]
    agg = (
        bars.sort("symbol", "ts")
        .group_by_dynamic("ts", every=every, group_by="symbol", label="left", start_by="window")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.col("adj_close").last() if "adj_close" in bars.columns else pl.lit(None),
            pl.col("provider").first(),
            pl.col("is_final").all() if "is_final" in bars.columns else pl.lit(True),
        )
        .with_columns(pl.lit(tf).alias("timeframe"))
    )
    closed = pl.col("ts").dt.offset_by(every) <= pl.lit(now).cast(pl.Datetime("us", "UTC"))
    return agg.with_columns((pl.col("is_final") & closed).alias("is_final"))
