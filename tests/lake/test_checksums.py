"""Every data file the lake writes carries parquet page checksums, whatever wrote it: the
append path, a merge, a replace, compaction, an evolving table's append, a rewrite, a
snapshot applied to a table that holds rows, the one-time column move; and ``maintain``
rewrites a live file that lacks them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import write_deltalake
from tests_helpers import bars, has_page_crcs, old_instruments

from marketlake.lake import Lake
from marketlake.lake.batches import conform
from marketlake.lake.frames import to_arrow
from marketlake.lake.maintenance import maintain
from marketlake.lake.tables import OHLCV
from marketlake.lake.writes import commit_properties
from marketlake.pipeline import universe
from marketlake.pipeline.remote.snapshot import apply_snapshot


def _live_files(lake: Lake, name: str) -> list[Path]:
    paths = lake.table(name).get_add_actions(flatten=True).column("path").to_pylist()
    return [lake.path(name) / p for p in paths]


def _all_checksummed(lake: Lake, name: str) -> None:
    files = _live_files(lake, name)
    assert files
    assert [f.name for f in files if not has_page_crcs(f)] == []


def test_the_probe_tells_a_file_without_crcs(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(bars(["A"], days=50).to_arrow(), plain)
    assert not has_page_crcs(plain)


def test_every_write_path_leaves_only_checksummed_files(home):
    lake = Lake(home)
    lake.upsert("ohlcv", bars(["A", "B"], days=30), run_id="r", stage="t")  # append
    lake.upsert("ohlcv", bars(["C"], days=30), run_id="r", stage="t")
    lake.upsert("ohlcv", bars(["A"], days=40, close=2.0), run_id="r", stage="t")  # merge
    scope = pl.DataFrame({"symbol": ["B"], "timeframe": ["1D"]})
    res = lake.replace("ohlcv", bars(["B"], days=10, close=3.0), scope=scope, run_id="r", stage="t")
    assert (res.updated, res.deleted) == (10, 20)
    _all_checksummed(lake, "ohlcv")
    before = lake.read("ohlcv").sort("symbol", "ts")
    maintain(lake, vacuum_hours=0)  # compaction
    assert len(_live_files(lake, "ohlcv")) == 1
    _all_checksummed(lake, "ohlcv")
    assert lake.read("ohlcv").sort("symbol", "ts").equals(before)

    keys = bars(["A"], days=30).select("symbol", "timeframe", "ts")
    ind = keys.with_columns(pl.lit(1.0).alias("sma_5"))
    lake.upsert("indicators", ind, run_id="r", stage="t")  # evolving append
    lake.upsert(
        "indicators", ind.with_columns(pl.lit(2.0).alias("rsi_14")), run_id="r", stage="t"
    )  # a merge adding a column
    got = lake.read("indicators")
    assert got.height == 30 and got["rsi_14"].to_list() == [2.0] * 30
    _all_checksummed(lake, "indicators")

    rw = lake.rewrite("indicators", "timeframe", "1D")
    rw.write(got.with_columns(pl.lit(3.0).alias("sma_5")))
    rw.commit(run_id="r", stage="t")
    _all_checksummed(lake, "indicators")

    # a snapshot applied to a table that holds rows (push or pull --full): A gone, D new
    kept = lake.read("ohlcv").filter(pl.col("symbol") != "A")
    after = pl.concat([kept, bars(["D"], days=5)], how="diagonal_relaxed")
    dt = lake.table("ohlcv")
    schema = pa.schema(dt.schema().to_arrow())
    batches = conform(to_arrow(OHLCV, after).to_batches(max_chunksize=20), schema)
    counts = apply_snapshot(
        dt, lake.location, OHLCV, schema, batches, commit_properties("r", "push")
    )
    assert (counts.inserted, counts.deleted) == (5, 40)
    _all_checksummed(lake, "ohlcv")

    # the one-time move of data into columns an older lake lacks
    old_instruments(lake)
    universe.add(lake, "MSFT", run_id="u", provider="synthetic")
    assert lake.read("instruments").height == 3
    _all_checksummed(lake, "instruments")


def test_merges_into_an_unpartitioned_table_are_checksummed_too(home):
    lake = Lake(home)
    for s in ("AAA", "BBB"):
        universe.add(lake, s, run_id="u", provider="synthetic")
    res = universe.add(lake, "AAA", run_id="u2", provider="synthetic", name="renamed")
    assert res.updated == 1
    assert lake.read("instruments").height == 2
    _all_checksummed(lake, "instruments")


def test_every_file_written_carries_the_checksum_mark(home):
    lake = Lake(home)
    lake.upsert("ohlcv", bars(["A", "B"], days=30), run_id="r", stage="t")
    lake.upsert("ohlcv", bars(["A"], days=40, close=2.0), run_id="r", stage="t")
    for f in _live_files(lake, "ohlcv"):
        assert pq.read_metadata(f).metadata[b"marketlake.page_crc"] == b"1"


def test_maintain_rewrites_a_file_written_without_checksums_even_alone(home):
    # regression: a file delta-rs' own writer made (no page CRCs) stayed live for good when
    # it was alone in its partition, since only crowded partitions were compacted
    lake = Lake(home)
    lake.upsert("ohlcv", bars(["A", "B"], days=30), run_id="r", stage="t")
    maintain(lake, vacuum_hours=0)
    other = bars(["C"], days=20, start=datetime(2023, 3, 1, tzinfo=UTC))  # its own partition
    write_deltalake(lake.uri("ohlcv"), to_arrow(OHLCV, other), mode="append")
    written = lake.version("ohlcv")
    plain = [f for f in _live_files(lake, "ohlcv") if not has_page_crcs(f)]
    assert [p.parent.name for p in plain] == ["period=2023"]
    before = lake.read("ohlcv").sort("symbol", "ts")

    first = maintain(lake, vacuum_hours=0)["ohlcv"]
    assert (first["rewritten_for_checksums"], first["files_removed"], first["files_added"]) == (
        1,
        1,
        1,
    )
    _all_checksummed(lake, "ohlcv")
    assert lake.read("ohlcv").sort("symbol", "ts").equals(before)
    dt = lake.table("ohlcv")
    rewrites = [h for h in dt.history() if h["version"] > written and h.get("stage")]
    assert [h["stage"] for h in rewrites] == ["maintain"]  # one commit: remove + add
    version = dt.version()

    second = maintain(lake, vacuum_hours=0)["ohlcv"]
    assert second["rewritten_for_checksums"] == second["files_removed"] == 0
    assert lake.version("ohlcv") == version
