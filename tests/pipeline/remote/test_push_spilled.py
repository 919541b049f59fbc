"""A change batch far larger than a deliberately tiny memory budget, netted on the source and
merged on the remote out of core: the remote equals the source (deletes, keys changed in
several versions, rows rewritten unchanged), in one commit, with the in-memory merge's counts;
a re-sent batch changes 0 rows (test_push_s3 merges out of core into an S3 lake)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from tests_helpers import bars, has_page_crcs

from marketlake.lake import Lake
from marketlake.lake.batches import conform, iter_batches
from marketlake.lake.changes import Bounds as NetBounds
from marketlake.lake.changes import read_changes
from marketlake.lake.scratch import Scratch
from marketlake.lake.tables import TABLES
from marketlake.lake.writes import commit_properties
from marketlake.pipeline.remote import spilled
from marketlake.pipeline.remote.apply import PushBatch, apply_push
from marketlake.pipeline.remote.files import Bounds as FileBounds
from marketlake.pipeline.remote.wire import FLAG, encode

SYMBOLS = [f"S{i:02d}" for i in range(24)]
TINY = spilled.Bounds(
    memory_rows=50,
    memory_limit="64MB",
    threads=1,
    batch_rows=37,
    files=FileBounds(group_rows=100, buffer_rows=300, file_rows=700, open_files=2),
)
KEY = ["symbol", "timeframe", "ts"]


def rows(lake: Lake):
    frame = lake.read("ohlcv")
    return frame.select(sorted(frame.columns)).sort(KEY)


def spool(lake: Lake, path: Path, prev: int | None) -> PushBatch:
    """The source's batch since ``prev`` (a snapshot when None) as the wire's IPC stream."""
    dt = lake.table("ohlcv")
    schema = pa.schema(dt.schema().to_arrow()).append(pa.field(FLAG, pa.bool_()))
    with Scratch("test", lake.home) as work:
        if prev is None:
            flagged = (
                b.append_column(FLAG, pa.repeat(pa.scalar(False), b.num_rows))
                for b in iter_batches(dt, "ohlcv")
            )
            batches, mode, count = list(conform(flagged, schema)), "snapshot", None
        else:
            changes = read_changes(
                dt, TABLES["ohlcv"], prev, dt.version(), lake.location, work, NetBounds(61, 29)
            )
            assert changes is not None and changes.buckets > 1
            batches, mode, count = list(conform(changes.batches(), schema)), "changes", changes.rows
        path.write_bytes(b"".join(encode(schema, batches)))
    count = sum(b.num_rows for b in batches) if count is None else count
    return PushBatch("ohlcv", "src", dt.metadata().id, prev, dt.version(), mode, count)


def apply(remote: Lake, batch: PushBatch, path: Path, bounds=TINY):
    with Scratch("apply", remote.home) as work:
        return apply_push(
            remote.table("ohlcv"),
            remote.location,
            TABLES["ohlcv"],
            batch,
            path,
            lambda meta: commit_properties("r", "push", meta),
            work,
            bounds,
        )


def history(source: Lake) -> None:
    """After v0: a whole-history re-adjustment, deletes, one key changed twice, one bar
    whose file is rewritten (the rest of it unchanged), new bars."""
    source.upsert("ohlcv", bars(SYMBOLS, days=40, close=2.0), run_id="r1", stage="s")
    source.delete_keys("ohlcv", bars(["S03", "S04"], days=40), run_id="r2", stage="s")
    source.upsert("ohlcv", bars(["S05"], days=1, close=7.0), run_id="r3", stage="s")
    source.upsert("ohlcv", bars(["S05"], days=1, close=8.0), run_id="r4", stage="s")
    source.upsert("ohlcv", bars(["S07"], days=1, close=9.0), run_id="r5", stage="s")
    source.upsert("ohlcv", bars(["NEW"], days=45, close=3.0), run_id="r6", stage="s")


def check(source: Lake, remote: Lake, tmp_path: Path) -> tuple[PushBatch, PushBatch, object]:
    source.upsert("ohlcv", bars(SYMBOLS, days=40), run_id="r0", stage="s")
    first = spool(source, tmp_path / "snap.arrows", None)
    apply(remote, first, tmp_path / "snap.arrows")
    assert rows(remote).equals(rows(source))
    history(source)
    batch = spool(source, tmp_path / "changes.arrows", first.to_version)
    before = remote.table("ohlcv").version()
    res = apply(remote, batch, tmp_path / "changes.arrows")
    assert remote.table("ohlcv").version() == before + 1  # ONE commit
    assert rows(remote).equals(rows(source))
    # 22 symbols re-adjusted, S03/S04 gone, NEW added: S05/S07's last values among the 22
    assert (res.inserted, res.updated, res.deleted) == (45, 22 * 40, 80)
    assert res.unchanged == 0

    # re-sent: the history holds it; without a source, the merge itself changes 0 rows
    again = apply(remote, batch, tmp_path / "changes.arrows")
    assert again.already_applied and again.inserted + again.updated + again.deleted == 0
    anonymous = PushBatch(
        "ohlcv", "", "", batch.from_version, batch.to_version, "changes", batch.rows
    )
    again = apply(remote, anonymous, tmp_path / "changes.arrows")
    assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)
    assert again.unchanged == batch.rows  # the 80 flagged keys are gone already
    assert remote.table("ohlcv").version() == before + 1  # nothing committed
    assert rows(remote).equals(rows(source))
    return first, batch, res


def test_a_change_batch_beyond_the_memory_budget_merges_out_of_core(tmp_path):
    source, remote = Lake(tmp_path / "source"), Lake(tmp_path / "remote")
    first, batch, res = check(source, remote, tmp_path)
    # the in-memory merge of the same batches on a third lake agrees, count for count
    third = Lake(tmp_path / "third")
    apply(third, first, tmp_path / "snap.arrows")
    held = apply(third, batch, tmp_path / "changes.arrows", spilled.BOUNDS)
    assert rows(third).equals(rows(remote))
    assert (held.inserted, held.updated, held.deleted, held.unchanged) == (
        res.inserted,
        res.updated,
        res.deleted,
        res.unchanged,
    )
    # the files the out-of-core merge wrote carry page checksums and stay within its bound
    adds = remote.table("ohlcv").get_add_actions(flatten=True)
    paths = adds.column("path").to_pylist()
    assert len(paths) > 1 and all(has_page_crcs(remote.path("ohlcv") / p) for p in paths)
    assert max(adds.column("num_records").to_pylist()) <= 700 + 100  # a file ends after a group
    assert not list((remote.home / ".scratch").iterdir())  # spills and spools removed
