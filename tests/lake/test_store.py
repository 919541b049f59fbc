from datetime import UTC, datetime

import polars as pl
import pytest
from tests_helpers import bars

from marketlake.errors import LakeError
from marketlake.lake import Lake
from marketlake.lake.tables import period_expr  # noqa: F401

HOSTILE = ["BRK.B", "BTC/IDR", "NSE_INDEX|Nifty 50", "../../etc/passwd", "x'; DROP TABLE ohlcv;--"]


def test_upsert_counts_and_rerun_changes_nothing(home):
    lake = Lake(home)
    first = lake.upsert("ohlcv", bars(["A", "B"]), run_id="r1", stage="test")
    assert (first.inserted, first.updated) == (6, 0)
    again = lake.upsert("ohlcv", bars(["A", "B"]), run_id="r2", stage="test")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6)
    changed = bars(["A"], close=2.0)
    res = lake.upsert("ohlcv", changed, run_id="r3", stage="test")
    assert (res.inserted, res.updated, res.unchanged) == (0, 3, 0)
    assert lake.read("ohlcv").height == 6
    assert lake.history("ohlcv", 1)[0]["run_id"] == "r3"
    assert lake.history("ohlcv", 1)[0]["stage"] == "test"


def test_duplicate_keys_in_one_batch_keep_the_last(home):
    lake = Lake(home)
    frame = pl.concat([bars(["A"], days=1, close=1.0), bars(["A"], days=1, close=5.0)])
    lake.upsert("ohlcv", frame, run_id="r", stage="t")
    lake.upsert("ohlcv", frame, run_id="r", stage="t")
    out = lake.read("ohlcv")
    assert out.height == 1 and out["close"][0] == 5.0


def test_hostile_symbols_are_data_not_paths(home):
    lake = Lake(home)
    lake.upsert("ohlcv", bars(HOSTILE), run_id="r", stage="t")
    lake.upsert("ohlcv", bars(HOSTILE, close=3.0), run_id="r2", stage="t")
    got = lake.read("ohlcv")
    assert sorted(got["symbol"].unique().to_list()) == sorted(HOSTILE)
    assert (got["close"] == 3.0).all()
    for path in home.rglob("*"):
        assert "passwd" not in path.name and "DROP" not in str(path)
        assert path.resolve().is_relative_to(home.resolve())


def test_replace_scope_is_one_commit_and_leaves_other_symbols(home):
    lake = Lake(home)
    lake.upsert("ohlcv", bars(["A", "B"], days=4), run_id="r", stage="t")
    v = lake.version("ohlcv")
    new = bars(["A"], days=2, close=7.0)
    res = lake.replace(
        "ohlcv",
        new,
        scope=pl.DataFrame({"symbol": ["A"], "timeframe": ["1D"]}),
        run_id="r2",
        stage="t",
    )
    assert lake.version("ohlcv") == v + 1
    assert (res.updated, res.deleted) == (2, 2)
    got = lake.read("ohlcv")
    assert got.filter(pl.col("symbol") == "A")["close"].to_list() == [7.0, 7.0]
    assert got.filter(pl.col("symbol") == "B").height == 4


def test_unsafe_partition_values_are_refused(home):
    lake = Lake(home)
    lake.upsert("ohlcv", bars(["A"]), run_id="r", stage="t")
    evil = bars(["A"]).with_columns(pl.lit("1D') OR 1=1 --").alias("timeframe"))
    with pytest.raises(LakeError, match="unsafe partition value"):
        lake.upsert("ohlcv", evil, run_id="r", stage="t")


def test_change_feed_and_time_travel(home):
    lake = Lake(home)
    first = lake.upsert("ohlcv", bars(["A"]), run_id="r", stage="t").version
    lake.upsert("ohlcv", bars(["A"], close=2.0), run_id="r", stage="t")
    assert lake.read("ohlcv", version=first)["close"].to_list() == [1.0, 1.0, 1.0]
    assert set(lake.changes("ohlcv", first, first)["_change_type"]) == {"insert"}
    cdf = lake.changes("ohlcv", first + 1)
    # the rewritten file's rows: the old values deleted, the new ones inserted
    assert sorted(cdf["_change_type"]) == ["delete"] * 3 + ["insert"] * 3
    assert sorted(cdf.filter(pl.col("_change_type") == "insert")["close"]) == [2.0] * 3


def test_merge_rewrites_only_the_files_holding_changed_rows_and_nets_the_feed(home):
    lake = Lake(home)
    lake.upsert("ohlcv", bars(["A"]), run_id="r", stage="t")
    lake.upsert("ohlcv", bars(["B"]), run_id="r", stage="t")  # a second file, same partition
    before = set(lake.table("ohlcv").get_add_actions(flatten=True).column("path").to_pylist())
    v = lake.version("ohlcv")
    changed = bars(["A", "B"]).with_columns(
        pl.when((pl.col("symbol") == "A") & (pl.col("ts") == pl.col("ts").min()))
        .then(5.0)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    res = lake.upsert("ohlcv", changed, run_id="r2", stage="t")
    assert (res.inserted, res.updated, res.unchanged) == (0, 1, 5)
    after = set(lake.table("ohlcv").get_add_actions(flatten=True).column("path").to_pylist())
    assert len(before - after) == 1 and len(after - before) == 1  # only A's file swapped
    cdf = lake.changes("ohlcv", v + 1)
    assert sorted(cdf["_change_type"]) == ["delete", "insert"]  # equal rows netted away
    assert lake.upsert("ohlcv", changed, run_id="r3", stage="t").changed == 0
    assert lake.version("ohlcv") == v + 1  # a re-run commits nothing


def test_empty_table_reads_with_schema(home):
    lake = Lake(home)
    assert lake.read("sync_status").is_empty()
    assert "consecutive_failures" in lake.read("sync_status").columns


def test_mark_records_metadata_in_an_empty_commit(home):
    # regression: Lake.mark passed the partition columns where the schema belongs, so every
    # watermark-only commit failed ("Expected an object with dunder __arrow_c_schema__")
    lake = Lake(home)
    lake.upsert("ohlcv", bars(["A"]), run_id="r1", stage="t")
    v = lake.version("ohlcv")
    lake.mark("ohlcv", run_id="r2", stage="compute", metadata={"watermark": "7"})
    assert lake.version("ohlcv") == v + 1
    entry = lake.history("ohlcv", 1)[0]
    assert (entry["watermark"], entry["run_id"], entry["stage"]) == ("7", "r2", "compute")
    assert lake.read("ohlcv").height == 3


def _keys_doubled(lake, name="ohlcv"):
    keys = lake.read(name).select("symbol", "timeframe", "ts")
    return keys.height - keys.unique().height


def test_append_proved_on_an_old_snapshot_falls_back_to_merge(home):
    # regression: a blind append trusted its own snapshot, so a writer that bypassed the lock
    # and committed the same keys in between doubled them
    lake = Lake(home)
    lake.upsert(
        "ohlcv", bars(["A"], start=datetime(2023, 1, 1, tzinfo=UTC)), run_id="r0", stage="t"
    )
    read = lake.version("ohlcv")
    batch = bars(["B", "C"])
    assert not lake.may_overlap("ohlcv", batch, version=read)  # the proof, at `read`
    other = Lake(home)  # another writer, no lock: lands the same keys first
    other.upsert("ohlcv", batch, run_id="other", stage="t", assume_new=True)
    res = lake.upsert("ohlcv", batch, run_id="late", stage="t", assume_new=True, read_version=read)
    assert _keys_doubled(lake) == 0
    assert (res.inserted, res.updated, res.unchanged) == (0, 0, 6)
    assert lake.read("ohlcv").height == 9


def test_overlap_suspects_are_only_the_symbols_a_stored_file_covers(home):
    lake = Lake(home)
    lake.upsert("ohlcv", bars(["A", "C"]), run_id="r0", stage="t")
    assert lake.overlap_suspects("ohlcv", bars(["B", "C", "D", "E"])) == {"B", "C"}
    assert lake.overlap_suspects("ohlcv", bars(["D", "E"])) == set()
    later = bars(["A"], start=datetime(2024, 6, 1, tzinfo=UTC))  # past every stored ts
    assert lake.overlap_suspects("ohlcv", later) == set()
    assert not lake.may_overlap("ohlcv", bars(["D", "E"]))
    assert lake.may_overlap("ohlcv", bars(["B"]))
    # the batch's symbol bounds given by the caller (a bulk load knows them): the same proof
    for names in (["B", "C", "D", "E"], ["D", "E"], ["B"], ["0", "A"], ["C", "Z"]):
        batch = bars(names)
        given = (min(names), max(names))
        assert lake.overlap_suspects("ohlcv", batch, symbols=given) == lake.overlap_suspects(
            "ohlcv", batch
        )


def test_racing_writers_without_the_lock_never_double_a_key(home):
    # regression: concurrent appends of the same new keys both committed (Delta sees two
    # blind appends as no conflict); 20 races, 0 doubled keys
    import shutil
    import threading

    for i in range(20):
        shutil.rmtree(home / "lake", ignore_errors=True)
        lake = Lake(home)
        lake.upsert("ohlcv", bars(["A"], days=1), run_id="seed", stage="t")
        batch = bars(["B", "C"], days=5)
        go = threading.Barrier(2)

        def write(tag, batch=batch, go=go):
            go.wait()
            Lake(home).upsert("ohlcv", batch, run_id=tag, stage="t")

        threads = [threading.Thread(target=write, args=(f"w{i}{k}",)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert _keys_doubled(Lake(home)) == 0
        assert Lake(home).read("ohlcv").height == 11


def test_files_written_ahead_commit_on_the_version_read_or_are_removed(home):
    lake = Lake(home)
    ahead = lake.write_ahead("ohlcv", bars(["A"]))  # no table yet: the commit creates it
    assert lake.version("ohlcv") is None
    first = lake.commit_written(ahead, run_id="r1", stage="t", read_version=None)
    assert first is not None and first.inserted == 3
    read = lake.version("ohlcv")
    ahead = lake.write_ahead("ohlcv", bars(["B"]))
    files = [lake.path("ohlcv") / a.path for a in ahead.adds]
    assert files and all(f.exists() for f in files)
    assert lake.read("ohlcv").height == 3  # invisible until committed
    res = lake.commit_written(ahead, run_id="r2", stage="t", read_version=read)
    assert res is not None and res.inserted == 3 and res.version == read + 1
    assert lake.read("ohlcv").height == 6
    assert lake.history("ohlcv", 1)[0]["run_id"] == "r2"
    # proved on a version another writer has since committed on top of: refused, removed
    read = lake.version("ohlcv")
    ahead = lake.write_ahead("ohlcv", bars(["C"]))
    lake.upsert("ohlcv", bars(["D"]), run_id="other", stage="t")
    assert lake.commit_written(ahead, run_id="r3", stage="t", read_version=read) is None
    assert not any((lake.path("ohlcv") / a.path).exists() for a in ahead.adds)
    assert sorted(lake.read("ohlcv").get_column("symbol").unique()) == ["A", "B", "D"]
