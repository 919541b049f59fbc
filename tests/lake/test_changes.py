"""A table's changes between two versions, netted per key out of core: however small the
bucket, the result equals netting the whole feed at once (each key's last change, deletes
flagged, rows a merge rewrote unchanged netted away), and the spools go with the scratch."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from tests_helpers import bars

from marketlake.lake import Lake
from marketlake.lake.changes import FLAG, Bounds, read_changes
from marketlake.lake.scratch import Scratch
from marketlake.lake.tables import TABLES

SYMBOLS = [f"S{i:02d}" for i in range(30)]
KEY = ["symbol", "timeframe", "ts"]


def _history(home) -> Lake:
    """v0 base; v1 a whole-history re-adjustment; v2 deletes; v3/v4 one key changed twice;
    v5 one bar of a partition changed (its file rewritten: the rest unchanged)."""
    lake = Lake(home)
    lake.upsert("ohlcv", bars(SYMBOLS, days=40), run_id="r0", stage="s")
    lake.upsert("ohlcv", bars(SYMBOLS, days=40, close=2.0), run_id="r1", stage="s")
    lake.delete_keys("ohlcv", bars(["S03"], days=40), run_id="r2", stage="s")
    lake.upsert("ohlcv", bars(["S05"], days=1, close=7.0), run_id="r3", stage="s")
    lake.upsert("ohlcv", bars(["S05"], days=1, close=8.0), run_id="r4", stage="s")
    lake.upsert("ohlcv", bars(["S07"], days=1, close=9.0), run_id="r5", stage="s")
    return lake


def _netted(lake: Lake, prev: int, bounds: Bounds):
    dt = lake.table("ohlcv")
    with Scratch("test", lake.home) as work:
        out = read_changes(dt, TABLES["ohlcv"], prev, dt.version(), lake.location, work, bounds)
        assert out is not None
        frame = out.frame()
        spooled = sorted(p.name for p in work.iterdir() if p.name != ".owner")
    assert frame.height == out.rows
    assert out.upserts == int((~frame.get_column(FLAG)).sum())
    return out, frame.select(sorted(frame.columns)).sort(KEY), spooled


def test_tiny_buckets_net_exactly_as_the_whole_feed(tmp_path):
    lake = _history(tmp_path / "home")
    whole, expect, spooled = _netted(lake, 0, Bounds(bucket_rows=1_000_000))
    assert whole.buckets == 1 and spooled == []  # it fitted: nothing went to disk
    small, got, spooled = _netted(lake, 0, Bounds(bucket_rows=97, batch_rows=50))
    assert small.buckets > 10 and spooled == ["sorted.arrows"]  # feed, buckets, spills removed
    assert got.equals(expect)

    # every key of the re-adjusted table once: 29 symbols upserted, S03 deleted
    assert got.height == 30 * 40
    gone = got.filter(pl.col(FLAG))
    assert gone.height == 40 and gone.get_column("symbol").unique().to_list() == ["S03"]
    # the key changed in two versions carries its last values
    s05 = got.filter(
        (pl.col("symbol") == "S05") & (pl.col("ts") == datetime(2024, 1, 1, tzinfo=UTC))
    )
    assert s05.get_column("close").to_list() == [8.0]


def test_rows_rewritten_unchanged_are_netted_away_in_every_bucket(tmp_path):
    lake = _history(tmp_path / "home")
    # v5 rewrote the file holding S07's first bar: only that bar changed
    dt = lake.table("ohlcv")
    for bounds in (Bounds(bucket_rows=1_000_000), Bounds(bucket_rows=13)):
        out, got, _ = _netted(lake, dt.version() - 1, bounds)
        assert got.select("symbol", "close", FLAG).rows() == [("S07", 9.0, False)]
        assert out.rows == 1
