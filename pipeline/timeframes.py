"""Timeframes: durations, bar alignment and resampling from a finer timeframe.

``1mo`` is the monthly bar (keyed at 00:00 UTC of the month's first day); ``1M`` stays
refused, as it reads as minutes as often as months. A month has no fixed length: its
:data:`DURATION` is the longest (31 days), an upper bound for "is the next bar due" checks;
:func:`floor` and :func:`shift` use the calendar.
"""

from __future__ import annotations

import re
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
    "1mo": timedelta(days=31),  # the longest month: see the module docstring
}
# what each timeframe can be built from, finest last
RESAMPLE_FROM = {"4h": "1h", "1h": "30m", "30m": "15m", "15m": "1m", "1W": "1D", "1mo": "1D"}
_EVERY = {"1m": "1m", "15m": "15m", "30m": "30m", "1h": "1h", "4h": "4h", "1D": "1d", "1W": "1w", "1mo": "1mo"}  # fmt: skip


_UNITS = {
    "min": "minute",
    "mins": "minute",
    "minute": "minute",
    "minutes": "minute",
    "t": "minute",
    "h": "hour",
    "hr": "hour",
    "hrs": "hour",
    "hour": "hour",
    "hours": "hour",
    "d": "day",
    "day": "day",
    "days": "day",
    "w": "week",
    "wk": "week",
    "week": "week",
    "weeks": "week",
    "mo": "month",
    "mon": "month",
    "month": "month",
    "months": "month",
}
_WORDS = {"hourly": "1h", "daily": "1D", "weekly": "1W", "monthly": "1mo"}
_BY_MINUTES = {1: "1m", 15: "15m", 30: "30m", 60: "1h", 240: "4h"}
_SPELLING = re.compile(r"^(\d*)\s*([a-zA-Z]+)$")


def canonical(tf: str, source: str | None = "timeframe") -> str:
    """The lake's name for ``tf``, accepting the spellings of yfinance and pandas (``1d``,
    ``1wk``, ``60m``, ``1H``, ``4H``, ``60min``, ``1mo``, ``1month``, ``monthly``); ``source``
    names the flag or setting in the error. A lowercase ``m`` is always minutes; ``1M`` is
    refused as ambiguous."""
    text = str(tf).strip()
    where = f"{source}: " if source else ""
    if text in TIMEFRAMES:
        return text
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    m = _SPELLING.match(text)
    if m:
        n = int(m.group(1) or 1)
        unit = "minute" if m.group(2) == "m" else _UNITS.get(m.group(2).lower())
        if m.group(2) == "M":
            raise ConfigError(
                f"{where}{text!r} is ambiguous (minutes or months): use {n}m for minutes"
                " or 1mo for months"
            )
        found = {
            "minute": _BY_MINUTES.get(n),
            "hour": _BY_MINUTES.get(n * 60),
            "day": "1D" if n == 1 else None,
            "week": "1W" if n == 1 else None,
            "month": "1mo" if n == 1 else None,
        }.get(unit or "")
        if found:
            return found
    raise ConfigError(
        f"{where}unknown timeframe {text!r}; valid: {', '.join(TIMEFRAMES)}"
        " (aliases such as 1d, 1wk, 60m, 4H are accepted)"
    )


def check(
    timeframes: list[str] | tuple[str, ...], source: str | None = "--timeframes"
) -> tuple[str, ...]:
    """Canonical names of ``timeframes`` (aliases resolved, duplicates dropped, order kept)."""
    return tuple(dict.fromkeys(canonical(t, source) for t in timeframes))


def is_intraday(tf: str) -> bool:
    return tf in INTRADAY


def floor(ts: datetime, tf: str) -> datetime:
    """Start of the bar that contains ``ts`` (UTC; weeks start on Monday, months on the 1st)."""
    if tf == "1mo":
        return ts.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if tf == "1W":
        day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=day.weekday())
    if tf == "1D":
        return ts.replace(hour=0, minute=0, second=0, microsecond=0)
    step = DURATION[tf]
    epoch = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    n = (ts - epoch) // step
    return epoch + n * step


def shift(ts: datetime, tf: str, bars: int) -> datetime:
    """``ts`` moved by ``bars`` bars of ``tf`` (negative: back); months by the calendar
    (from a month's first day, to a month's first day)."""
    if tf == "1mo":
        months = ts.year * 12 + ts.month - 1 + bars
        return ts.replace(year=months // 12, month=months % 12 + 1)
    return ts + DURATION[tf] * bars


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
    last, volume sum, open interest last). A bar is final only when all its parts are and its
    period has closed by ``now`` (the run's clock): the current week's bar is still forming on
    a Wednesday, the current month's until the month has ended."""
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
            pl.col("adj_close").last()
            if "adj_close" in bars.columns
            else pl.lit(None, pl.Float64).alias("adj_close"),
            pl.col("provider").first(),
            pl.col("open_interest").last()
            if "open_interest" in bars.columns
            else pl.lit(None, pl.Float64).alias("open_interest"),
            pl.col("is_final").all() if "is_final" in bars.columns else pl.lit(True),
        )
        .with_columns(pl.lit(tf).alias("timeframe"))
    )
    closed = pl.col("ts").dt.offset_by(every) <= pl.lit(now).cast(pl.Datetime("us", "UTC"))
    return agg.with_columns((pl.col("is_final") & closed).alias("is_final"))
