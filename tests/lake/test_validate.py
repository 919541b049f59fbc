import math
import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from marketlake.errors import ValidationError
from marketlake.lake.validate import check_ohlcv, quarantine_rows

T = datetime(2024, 1, 2, tzinfo=UTC)


def frame(**over):
    base = {
        "symbol": ["A"],
        "timeframe": ["1D"],
        "ts": [T],
        "open": [10.0],
        "high": [11.0],
        "low": [9.0],
        "close": [10.5],
        "volume": [100.0],
    }
    base.update(over)
    return pl.DataFrame(base)


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"open": [float("nan")]}, "open is missing or not finite"),
        ({"close": [-1.0]}, "close is not positive"),
        ({"high": [8.0]}, "high < low"),
        ({"low": [10.2]}, "low above open/close"),
        ({"high": [10.2]}, "high below open/close"),
        ({"volume": [-5.0]}, "volume is negative or NaN"),
        ({"close": [float("inf")]}, "close is missing or not finite"),
        ({"symbol": [None]}, "symbol is missing"),
    ],
)
def test_bad_bars_get_a_reason(over, reason):
    good, bad = check_ohlcv(frame(**over))
    assert good.is_empty()
    assert bad["reason"].to_list() == [reason]


def test_a_bar_passes_exactly_when_the_rules_hold():
    """Random bars, with nulls, NaN, infinities, zeros, negatives and equal prices: kept
    exactly when the module's rules hold, as plain Python states them."""
    rng = random.Random(5)
    special = [None, float("nan"), float("inf"), -float("inf"), 0.0, -1.0]

    def price() -> float | None:
        return rng.choice(special) if rng.random() < 0.15 else float(rng.choice([9, 10, 11, 12]))

    rows = [
        {"symbol": "A", "timeframe": "1D", "ts": T + timedelta(minutes=i), "open": price(), "high": price(),
         "low": price(), "close": price(), "volume": rng.choice([None, -1.0, 0.0, 5.0])}
        for i in range(4000)
    ]  # fmt: skip

    def holds(r) -> bool:
        prices = [r[c] for c in ("open", "high", "low", "close")]
        if any(x is None or not math.isfinite(x) or x <= 0 for x in prices):
            return False
        o, h, lo, c = prices
        return lo <= min(o, c) and max(o, c) <= h and (r["volume"] is None or r["volume"] >= 0)

    good, bad = check_ohlcv(
        pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    )
    want = [holds(r) for r in rows]
    assert good.height == sum(want) and bad.height == len(rows) - sum(want)
    assert good.height > 100 and bad.height > 100
    assert (bad["reason"].is_not_null()).all()


def test_good_bars_pass_and_zero_volume_is_fine():
    good, bad = check_ohlcv(frame(volume=[0.0]))
    assert good.height == 1 and bad.is_empty()


def test_naive_timestamps_are_rejected():
    with pytest.raises(ValidationError, match="timezone-aware"):
        check_ohlcv(frame().with_columns(pl.col("ts").dt.replace_time_zone(None)))


def test_non_utc_timestamps_are_converted():
    f = frame().with_columns(pl.col("ts").dt.convert_time_zone("Asia/Jakarta"))
    good, _ = check_ohlcv(f)
    assert good.schema["ts"].time_zone == "UTC" and good["ts"][0] == T


def test_quarantine_rows_keep_the_row_as_json():
    _, bad = check_ohlcv(frame(high=[8.0]))
    q = quarantine_rows(bad, run_id="r", table="ohlcv", source="test", now=T)
    assert q["reason"][0] == "high < low" and '"high":8.0' in q["row"][0]
