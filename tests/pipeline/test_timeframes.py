from datetime import UTC, datetime

import polars as pl
import pytest

from marketlake.errors import ConfigError
from marketlake.pipeline.timeframes import canonical, check, floor, resample, shift


def test_timeframe_aliases_become_canonical():
    # regression: `--timeframes 1d` was rejected
    spellings = {
        "1d": "1D",
        "1wk": "1W",
        "1w": "1W",
        "60m": "1h",
        "1H": "1h",
        "4H": "4h",
        "240m": "4h",
        "15min": "15m",
        "1m": "1m",
        "daily": "1D",
        "1D": "1D",
    }
    for given, want in spellings.items():
        assert canonical(given) == want, given
    assert check(["1d", "1D", "60m"]) == ("1D", "1h")


def test_one_minute_stays_a_minute_and_1M_is_refused_as_ambiguous():
    assert canonical("1m") == "1m"
    with pytest.raises(ConfigError, match="ambiguous .* use 1m for minutes or 1mo for months"):
        canonical("1M")
    for spelling in ("1mo", "1month", "1mon", "monthly", "Monthly", "1MO"):
        assert canonical(spelling) == "1mo", spelling
    with pytest.raises(ConfigError, match="unknown timeframe '3mo'"):
        canonical("3mo")
    with pytest.raises(ConfigError, match="--timeframes: unknown timeframe '7x'"):
        check(["7x"])


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_months_floor_and_shift_by_the_calendar():
    assert floor(utc(2024, 2, 29, 15, 30), "1mo") == utc(2024, 2, 1)
    assert shift(utc(2024, 1, 1), "1mo", 1) == utc(2024, 2, 1)
    assert shift(utc(2024, 1, 1), "1mo", -2) == utc(2023, 11, 1)
    assert shift(utc(2024, 12, 1), "1mo", 1) == utc(2025, 1, 1)
    assert shift(utc(2024, 1, 1), "1D", -2) == utc(2023, 12, 30)


def test_monthly_resample_is_final_only_once_the_month_closed():
    days = pl.datetime_range(utc(2024, 1, 29), utc(2024, 2, 20), "1d", time_zone="UTC", eager=True)
    n = len(days)
    daily = pl.DataFrame(
        {
            "symbol": "NIFTY FUT",
            "timeframe": "1D",
            "ts": days,
            "open": [float(i) for i in range(n)],
            "high": [float(i) + 2 for i in range(n)],
            "low": [float(i) - 1 for i in range(n)],
            "close": [float(i) + 1 for i in range(n)],
            "volume": [10.0] * n,
            "adj_close": [float(i) + 1 for i in range(n)],
            "provider": "upstox",
            "is_final": [True] * n,
            "open_interest": [1000.0 + i for i in range(n)],
        }
    )
    out = resample(daily, "1mo", now=utc(2024, 2, 21)).sort("ts")
    assert out["ts"].to_list() == [utc(2024, 1, 1), utc(2024, 2, 1)]
    assert out["is_final"].to_list() == [True, False]  # February is still forming
    jan = out.row(0, named=True)
    assert (jan["open"], jan["close"], jan["volume"]) == (0.0, 3.0, 30.0)
    assert jan["open_interest"] == 1002.0  # the month's last session's open interest
    assert out["timeframe"].unique().to_list() == ["1mo"]
    closed = resample(daily, "1mo", now=utc(2024, 3, 1))
    assert closed["is_final"].all()
