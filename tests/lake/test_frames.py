"""Key dedupe and series runs of fetched bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from marketlake.lake.frames import dedupe, series_runs

T0 = datetime(2024, 1, 2, tzinfo=UTC)


def bars(rows: list[tuple[str, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": [s for s, _, _ in rows],
            "timeframe": ["1D"] * len(rows),
            "ts": [T0 + timedelta(days=d) for _, d, _ in rows],
            "close": [c for _, _, c in rows],
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


def test_series_after_series_give_their_runs_and_are_kept_whole():
    frame = bars([("A", 0, 1.0), ("A", 1, 2.0), ("A", 5, 3.0), ("B", 0, 4.0), ("B", 2, 5.0)])
    runs = series_runs(frame, ["symbol"])
    assert runs.rows() == [
        ("A", T0, T0 + timedelta(days=5), 3),
        ("B", T0, T0 + timedelta(days=2), 2),
    ]
    assert dedupe(frame, ["symbol", "timeframe", "ts"]).equals(frame)


@pytest.mark.parametrize(
    "rows",
    [
        [("A", 0, 1.0), ("B", 0, 2.0), ("A", 1, 3.0)],  # a series in two runs
        [("A", 0, 1.0), ("A", 1, 2.0), ("A", 1, 3.0)],  # a repeated ts
        [("A", 1, 1.0), ("A", 0, 2.0)],  # ts falling
    ],
)
def test_anything_else_has_no_runs_and_dedupe_keeps_the_last_of_each_key(rows):
    frame = bars(rows)
    assert series_runs(frame, ["symbol"]) is None
    out = dedupe(frame, ["symbol", "timeframe", "ts"])
    expected = frame.unique(["symbol", "timeframe", "ts"], keep="last", maintain_order=True)
    assert out.equals(expected)
    assert out.select("symbol", "ts").is_unique().all()


def test_runs_span_a_frame_of_one_row_and_none_of_an_empty_one():
    frame = bars([("A", 3, 1.0)])
    assert series_runs(frame, ["symbol"]).rows() == [
        ("A", T0 + timedelta(days=3), T0 + timedelta(days=3), 1)
    ]
    assert series_runs(frame.clear(), ["symbol"]) is None


def test_a_symbol_in_two_timeframes_is_two_series():
    frame = pl.concat([bars([("A", 0, 1.0), ("A", 1, 2.0)]), bars([("A", 0, 3.0)])]).with_columns(
        pl.Series("timeframe", ["1D", "1D", "1h"])
    )
    assert series_runs(frame, ["symbol"]) is None
    assert series_runs(frame, ["symbol", "timeframe"]).height == 2
    assert dedupe(frame, ["symbol", "timeframe", "ts"]).equals(frame)
