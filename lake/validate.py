"""Row rules checked before anything reaches a lake table; rejected rows get a reason.

Bars: key columns non-null, ts timezone-aware UTC, prices finite and > 0,
low <= min(open, close), max(open, close) <= high, volume >= 0. Duplicate keys inside one
batch keep the latest fetch (the last row in arrival order).
"""

from __future__ import annotations

import polars as pl

from marketlake.errors import ValidationError
from marketlake.lake.store import dedupe

_PRICES = ("open", "high", "low", "close")


def _reason_ohlcv() -> pl.Expr:
    bad_price = [
        pl.when(pl.col(c).is_null() | pl.col(c).is_nan() | pl.col(c).is_infinite())
        .then(pl.lit(f"{c} is missing or not finite"))
        .when(pl.col(c) <= 0)
        .then(pl.lit(f"{c} is not positive"))
        for c in _PRICES
    ]
    return pl.coalesce(
        pl.when(pl.col("symbol").is_null() | (pl.col("symbol") == "")).then(
            pl.lit("symbol is missing")
        ),
        pl.when(pl.col("ts").is_null()).then(pl.lit("ts is missing")),
        *bad_price,
        pl.when(pl.col("high") < pl.col("low")).then(pl.lit("high < low")),
        pl.when(pl.col("low") > pl.min_horizontal("open", "close")).then(
            pl.lit("low above open/close")
        ),
        pl.when(pl.col("high") < pl.max_horizontal("open", "close")).then(
            pl.lit("high below open/close")
        ),
        pl.when(pl.col("volume").is_nan() | (pl.col("volume") < 0)).then(
            pl.lit("volume is negative or NaN")
        ),
    )


def _ok_ohlcv() -> pl.Expr:
    """Whether a row passes every rule. With all four prices finite (else it fails anyway),
    low <= min(open, close) is low <= open and low <= close: comparisons make bitmaps, where
    the min and max of two columns would each make a column of floats."""
    finite = [pl.col(c).is_finite() & (pl.col(c) > 0) for c in _PRICES]
    return pl.all_horizontal(
        pl.col("symbol").is_not_null() & (pl.col("symbol") != ""),
        pl.col("ts").is_not_null(),
        *finite,
        *(pl.col("low") <= pl.col(c) for c in ("open", "close")),
        *(pl.col("high") >= pl.col(c) for c in ("open", "close")),
        pl.col("volume").is_null() | (pl.col("volume") >= 0),
    )


def check_ohlcv(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split bars into (good, rejected with a ``reason`` column)."""
    dtype = frame.schema.get("ts")
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ValidationError(f"ts must be a timezone-aware datetime, got {dtype}")
    if dtype.time_zone != "UTC":
        frame = frame.with_columns(pl.col("ts").dt.convert_time_zone("UTC"))
    for c in (*_PRICES, "volume"):
        if c in frame.columns:
            frame = frame.with_columns(pl.col(c).cast(pl.Float64))
    ok = frame.select(_ok_ohlcv().fill_null(False)).to_series()
    if ok.all():  # the common case: no reasons to compute
        good, bad = frame, frame.clear().with_columns(pl.lit(None, pl.String).alias("reason"))
    else:
        good = frame.filter(ok)
        bad = frame.filter(~ok).with_columns(_reason_ohlcv().alias("reason"))
    good = dedupe(good, ["symbol", "timeframe", "ts"])
    return good, bad


def quarantine_rows(
    bad: pl.DataFrame, *, run_id: str, table: str, source: str, now
) -> pl.DataFrame:
    """Rejected rows in the ``quarantine`` table's shape (the row kept as JSON)."""
    if bad.is_empty():
        return pl.DataFrame()
    payload = bad.drop("reason").select(pl.struct(pl.all()).struct.json_encode().alias("row"))
    return pl.DataFrame(
        {
            "run_id": run_id,
            "table": table,
            "symbol": bad.get_column("symbol").fill_null(""),
            "ts": bad.get_column("ts") if "ts" in bad.columns else None,
            "reason": bad.get_column("reason"),
            "source": source,
            "row": payload.get_column("row"),
            "quarantined_at": now,
        }
    ).with_columns(pl.col("quarantined_at").cast(pl.Datetime("us", "UTC")))
