"""The append path's files: statistics taken from the written footer equal those computed
from the rows, and partitions are split correctly whether their rows are contiguous or not."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pyarrow.parquet as pq
from tests_helpers import bars

from marketlake.lake import Lake
from marketlake.lake.frames import file_stats, stats
from marketlake.lake.location import LakeLocation
from marketlake.lake.tables import OHLCV, with_period
from marketlake.lake.writes import write_file, write_files


def test_footer_statistics_equal_the_rows_statistics(tmp_path):
    ts = [datetime(2024, 1, d, 9, 30, 0, 999_500, tzinfo=UTC) for d in range(1, 5)]
    frame = pl.DataFrame(
        {
            "symbol": ["B", None, "A", "C"],
            "ts": ts,
            "open": [1.5, float("nan"), None, 2.0],
            "high": [None, None, None, None],
            "close": [float("inf"), 1.0, 2.0, 3.0],
            "volume": [float("nan")] * 4,
            "key": ["x" * 40, "a", "b", "c"],
            "rows": [3, None, 1, 2],
        },
        schema_overrides={"high": pl.Float64},
    )
    _, meta = write_file(LakeLocation.local(tmp_path), "t", "f.parquet", frame.to_arrow())
    assert json.loads(file_stats(meta)) == json.loads(stats(frame))


def test_footer_statistics_span_row_groups(tmp_path):
    frame = bars(["A", "B", "C"], days=40).drop("timeframe")
    path = tmp_path / "f.parquet"
    pq.write_table(frame.to_arrow(), path, row_group_size=7)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups > 1
    assert json.loads(file_stats(meta)) == json.loads(stats(frame))


def test_parts_contiguous_or_scattered_land_every_row_once(tmp_path):
    lake = Lake(tmp_path)
    frame = bars(["A", "B"], days=800)  # symbol-major: each year's rows are scattered
    frame = frame.with_columns(pl.lit("r").alias("run_id"))
    rows, adds = write_files(lake.location, OHLCV, frame)
    assert rows == frame.height
    periods = sorted(a.partition_values["period"] for a in adds)
    assert periods == sorted(with_period(frame).get_column("period").unique().to_list())
    back = pl.concat(
        pl.read_parquet(lake.path("ohlcv") / a.path).with_columns(
            pl.lit(a.partition_values["period"]).alias("period")
        )
        for a in adds
    )
    assert back.height == frame.height
    assert (
        back.sort("symbol", "ts")
        .select("symbol", "ts", "close")
        .equals(frame.sort("symbol", "ts").select("symbol", "ts", "close"))
    )
    for a in adds:  # within a file, rows keep their order (symbol, then ts)
        part = pl.read_parquet(lake.path("ohlcv") / a.path)
        assert part.equals(part.sort("symbol", "ts"))
