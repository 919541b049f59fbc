"""A snapshot applied to a table that holds rows: the table ends equal to the snapshot (keys it
lacks deleted), every live file carries page checksums, only partitions that differ are
swapped, the counts are exact, memory is bounded by buckets, and a re-send changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
from remote_helpers import table
from tests_helpers import bars, has_page_crcs

from marketlake.lake import Lake
from marketlake.lake.batches import conform, iter_batches
from marketlake.lake.tables import TABLES
from marketlake.lake.writes import commit_properties
from marketlake.pipeline.remote.apply import PushBatch, apply_push
from marketlake.pipeline.remote.files import Bounds
from marketlake.pipeline.remote.snapshot import apply_snapshot
from marketlake.pipeline.remote.wire import FLAG, encode

START = datetime(2024, 10, 1, tzinfo=UTC)  # 200 days: partitions 2024 and 2025


def spool(home: Path, path: Path) -> int:
    """The whole ``ohlcv`` of ``home`` as a push sends a snapshot; its rows."""
    dt = Lake(home).table("ohlcv")
    schema = pa.schema(dt.schema().to_arrow()).append(pa.field(FLAG, pa.bool_()))
    rows = 0
    batches = []
    for b in iter_batches(dt, "ohlcv"):
        rows += b.num_rows
        batches.append(b.append_column(FLAG, pa.repeat(pa.scalar(False), b.num_rows)))
    with path.open("wb") as fh:
        for chunk in encode(schema, conform(batches, schema)):
            fh.write(chunk)
    return rows


def files(lake: Lake) -> set[str]:
    return set(lake.table("ohlcv").get_add_actions(flatten=True).column("path").to_pylist())


def push_snapshot(source: Path, target: Path, tmp_path: Path):
    path = tmp_path / "spool.arrows"
    rows = spool(source, path)
    lake = Lake(target)
    batch = PushBatch("ohlcv", "src", "table-id", None, 7, "snapshot", rows)
    return apply_push(
        lake.table("ohlcv"),
        lake.location,
        TABLES["ohlcv"],
        batch,
        path,
        lambda meta: commit_properties("r", "push", meta),
    )


def test_a_snapshot_into_a_table_with_rows_makes_it_equal_with_checksums(tmp_path):
    local, remote = tmp_path / "local", tmp_path / "remote"
    old = pl.concat([bars(s, days=200, start=START) for s in (["A"], ["B"], ["C"])])
    Lake(remote).upsert("ohlcv", old, run_id="r0", stage="sync")
    Lake(remote).upsert("ohlcv", bars(["E"], days=5, start=START), run_id="r0", stage="sync")
    # the source: A equal, B's 2025 closes changed, C and E gone, D new
    b_new = bars(["B"], days=200, start=START).with_columns(
        pl.when(pl.col("ts").dt.year() == 2025).then(9.0).otherwise(pl.col("close")).alias("close")
    )
    src = pl.concat([bars(["A"], days=200, start=START), b_new, bars(["D"], days=3, start=START)])
    Lake(local).upsert("ohlcv", src, run_id="l0", stage="sync")
    before = files(Lake(remote))
    n2025 = b_new.filter(pl.col("ts").dt.year() == 2025).height

    res = push_snapshot(local, remote, tmp_path)
    assert (res.inserted, res.updated, res.deleted) == (3, n2025, 205)
    assert res.unchanged == src.height - 3 - n2025
    assert (
        table(remote, "ohlcv")
        .drop("ingested_at", "run_id")
        .equals(table(local, "ohlcv").drop("ingested_at", "run_id"))
    )
    lake = Lake(remote)
    after = files(lake)
    assert after and all(has_page_crcs(lake.path("ohlcv") / p) for p in after)
    # one commit, recording its counts; no uncommitted file left behind
    last = lake.table("ohlcv").history(1)[0]
    assert (last["merge"], last["merge_deleted"], last["push_to"]) == ("snapshot", "205", "7")
    on_disk = {
        str(p.relative_to(lake.path("ohlcv"))) for p in lake.path("ohlcv").rglob("*.parquet")
    }
    assert after <= on_disk and not (on_disk - after - before)

    version = lake.version("ohlcv")
    again = push_snapshot(local, remote, tmp_path)  # a re-send (no source id recorded: re-diffed)
    assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)
    assert lake.version("ohlcv") == version and files(lake) == after
    on_disk = {
        str(p.relative_to(lake.path("ohlcv"))) for p in lake.path("ohlcv").rglob("*.parquet")
    }
    assert not (on_disk - after - before)  # its staged files were deleted


def test_only_partitions_that_differ_are_rewritten(tmp_path):
    local, remote = tmp_path / "local", tmp_path / "remote"
    both = bars(["A", "B"], days=200, start=START)
    Lake(remote).upsert("ohlcv", both, run_id="r0", stage="sync")
    Lake(local).upsert("ohlcv", both, run_id="r0", stage="sync")
    Lake(local).upsert(
        "ohlcv",
        bars(["A"], days=200, start=START, close=3.0).filter(pl.col("ts").dt.year() == 2025),
        run_id="l1",
        stage="sync",
    )
    lake = Lake(remote)
    kept = {p for p in files(lake) if "period=2024" in p}
    res = push_snapshot(local, remote, tmp_path)
    assert (res.inserted, res.updated, res.deleted) == (0, 108, 0)  # A's 2025 days
    assert kept <= files(lake)  # the equal partition kept its files
    assert (
        table(remote, "ohlcv")
        .drop("ingested_at", "run_id")
        .equals(table(local, "ohlcv").drop("ingested_at", "run_id"))
    )


def test_buckets_bound_the_rows_held_and_the_counts_stay_exact(tmp_path):
    remote = Lake(tmp_path / "remote")
    old = bars([f"S{i:02d}" for i in range(30)], days=200, start=START)  # 6,000 rows
    remote.upsert("ohlcv", old, run_id="r0", stage="sync")
    new = pl.concat(
        [
            old.filter(pl.col("symbol") != "S00"),  # 200 deleted
            bars(["S01"], days=200, start=START, close=4.0),  # 200 updated (replaced below)
            bars(["Z"], days=50, start=START),  # 50 inserted
        ]
    ).unique(subset=["symbol", "timeframe", "ts"], keep="last", maintain_order=True)
    tdef = TABLES["ohlcv"]
    dt = remote.table("ohlcv")
    schema = pa.schema(dt.schema().to_arrow())
    from marketlake.lake.frames import to_arrow

    batches = list(conform(to_arrow(tdef, new).to_batches(max_chunksize=500), schema))
    counts = apply_snapshot(
        dt,
        remote.location,
        tdef,
        schema,
        batches,
        commit_properties("r", "push"),
        bucket_rows=400,
        bounds=Bounds(group_rows=300, buffer_rows=1_000, file_rows=2_000, open_files=2),
    )
    assert (counts.inserted, counts.updated, counts.deleted) == (50, 200, 200)
    assert counts.unchanged == new.height - 250
    assert counts.peak_rows <= 2 * 2 * 400  # two sides of one bucket (hashing is uneven)
    got = remote.read("ohlcv").select(new.columns).sort("symbol", "ts")
    assert got.equals(new.sort("symbol", "ts"))
    assert all(has_page_crcs(remote.path("ohlcv") / p) for p in files(remote))
