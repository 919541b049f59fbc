"""Maintenance: idempotent compaction, orphan files, checksum verification, damaged files."""

import os
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests_helpers import bars

from marketlake.errors import LakeCorruptError
from marketlake.lake import Lake
from marketlake.lake.maintenance import maintain, raise_on_damage, verify


def _lake(home, batches=3):
    lake = Lake(home)
    for i in range(batches):  # several commits: several small files per partition
        start = datetime(2024, 1, 1 + 5 * i, tzinfo=UTC)
        lake.upsert("ohlcv", bars(["A", "B"], days=4, start=start), run_id=f"r{i}", stage="t")
    return lake


def _data_files(lake, name="ohlcv"):
    return sorted(p for p in lake.path(name).rglob("*.parquet") if "_delta_log" not in p.parts)


def test_second_maintain_changes_nothing(home):
    # regression: every maintain rewrote every file (a new version, files_added =
    # files_removed) even with nothing to compact
    lake = _lake(home)
    before = lake.read("ohlcv").sort("symbol", "ts")
    first = maintain(lake, vacuum_hours=0)
    assert first["ohlcv"]["files_removed"] >= 3
    versions = {t: lake.version(t) for t in first}
    files = _data_files(lake)
    second = maintain(lake, vacuum_hours=0)
    assert {t: lake.version(t) for t in second} == versions
    assert all(i["files_added"] == i["files_removed"] == 0 for i in second.values())
    assert _data_files(lake) == files
    assert lake.read("ohlcv").sort("symbol", "ts").equals(before)


def test_maintain_removes_files_no_version_references(home):
    # regression: a writer killed between writing files and committing left parquet files
    # that `maintain --vacuum-hours 0` kept forever
    lake = _lake(home, batches=1)
    part = next(iter(_data_files(lake))).parent
    orphan = part / "part-00000-00000000-dead-beef-0000-000000000000-c000.zstd.parquet"
    pq.write_table(pa.table({"symbol": ["X"]}), orphan)
    old = datetime(2020, 1, 1).timestamp()
    os.utime(orphan, (old, old))
    fresh = part / "part-00000-11111111-dead-beef-0000-000000000000-c000.zstd.parquet"
    pq.write_table(pa.table({"symbol": ["Y"]}), fresh)
    rows = lake.read("ohlcv").height
    report = maintain(lake, vacuum_hours=0, optimize=False)
    assert report["ohlcv"]["orphans_removed"] == 2
    assert not orphan.exists() and not fresh.exists()
    assert lake.read("ohlcv").height == rows
    assert maintain(lake, vacuum_hours=0, optimize=False)["ohlcv"]["orphans_removed"] == 0


def _overwrite_middle(path, n=64):
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid : mid + n] = os.urandom(n)
    path.write_bytes(bytes(data))


def test_verify_detects_64_bytes_overwritten_in_a_data_file(home):
    # regression: 64 bytes overwritten inside a data file gave wrong prices without an error
    lake = Lake(home)
    lake.upsert("ohlcv", bars(["A", "B", "C"], days=400), run_id="r", stage="t")
    assert verify(lake) == []
    target = max(_data_files(lake), key=lambda p: p.stat().st_size)
    _overwrite_middle(target)
    problems = verify(lake)
    assert len(problems) == 1
    p = problems[0]
    rel = target.relative_to(lake.path("ohlcv")).as_posix()
    assert (p["table"], p["file"]) == ("ohlcv", rel)
    assert p["row_group"] == 0
    with pytest.raises(LakeCorruptError, match=rel):
        raise_on_damage(problems)


def test_truncated_data_file_is_named_before_any_reader_panics(home):
    # regression: a truncated data file gave a Rust panic and a 70-line traceback
    lake = _lake(home, batches=1)
    target = _data_files(lake)[0]
    with open(target, "r+b") as fh:
        fh.truncate(target.stat().st_size // 2)
    rel = target.relative_to(lake.path("ohlcv")).as_posix()
    for read in (
        lambda: lake.read("ohlcv"),
        lambda: lake.scan("ohlcv"),
        lambda: lake.table("ohlcv"),
    ):
        with pytest.raises(LakeCorruptError) as caught:
            read()
        assert rel in str(caught.value) and "ohlcv" in str(caught.value)
        assert "\n" not in str(caught.value)
