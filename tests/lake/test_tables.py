"""Partition codes of bars: the lookup by day agrees with the calendar."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from marketlake.lake.tables import with_period_code


def calendar_codes(frame: pl.DataFrame, timeframe: str) -> pl.Series:
    year = pl.col("ts").dt.year().cast(pl.Int32)
    code = year * 100 + pl.col("ts").dt.month().cast(pl.Int32) if timeframe == "1h" else year
    return frame.select(code.alias("_pcode")).to_series()


@pytest.mark.parametrize("unit", ["ns", "us", "ms"])
@pytest.mark.parametrize("timeframe", ["1h", "1D"])
def test_period_codes_by_day_match_the_calendar(unit, timeframe):
    """Random instants from 1906 to 2096, the epoch and the instants around midnight and new
    year, in every time unit: the same code as polars' year and month."""
    rng = np.random.default_rng(7)
    us = rng.integers(-2_000_000_000_000_000, 4_000_000_000_000_000, 50_000)
    edges = [0, -1, 1, 86_400_000_000 - 1, -86_400_000_000, 1_704_067_199_999_999]
    us = np.concatenate([us, edges])
    vals = {"us": us, "ms": us // 1000, "ns": us * 1000}[unit]
    frame = pl.DataFrame({"ts": pl.Series(vals).cast(pl.Datetime(unit, "UTC"))})
    got = with_period_code(frame, timeframe).get_column("_pcode")
    assert got.dtype == pl.Int32
    assert got.equals(calendar_codes(frame, timeframe))


def test_period_codes_of_local_times_and_nulls_follow_the_calendar():
    """A ``ts`` in another time zone, or with nulls, is coded by polars' calendar."""
    local = pl.DataFrame(
        {
            "ts": pl.datetime_range(
                pl.datetime(2023, 12, 31, 20), pl.datetime(2024, 1, 1, 4), "1h", eager=True
            )
        }
    ).with_columns(pl.col("ts").dt.replace_time_zone("Asia/Jakarta"))
    assert with_period_code(local, "1h").get_column("_pcode").equals(calendar_codes(local, "1h"))
    holes = pl.DataFrame(
        {"ts": pl.Series([0, None, 86_400_000_000 * 400]).cast(pl.Datetime("us", "UTC"))}
    )
    assert with_period_code(holes, "1h").get_column("_pcode").to_list() == [197001, None, 197102]
