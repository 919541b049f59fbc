"""A snapshot applied to a table that holds rows: the table made equal to the snapshot, with
page checksums, in bounded memory, as one commit.

The snapshot (every row of the source's table) streams from the spool into new data files of
the table's partitions (:class:`.files.FileWriter`: bounded buffers, page checksums), which
stay invisible until committed. Each partition both sides hold is then compared key by key
in buckets of at most about ``BUCKET_ROWS`` rows a side (a bucket: the rows whose key hash
falls in it; both sides' files are streamed once per bucket, pages verified), so memory does
not grow with the table. A partition whose rows all equal the snapshot's keeps its files
(the new ones are deleted); any other partition's files are swapped for the new ones, and a
partition the snapshot lacks loses its files (its keys are gone from the source). One commit,
pinned to the version read, removes and adds those files and records the exact row counts; a
re-sent snapshot finds every partition equal and commits nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable
from deltalake.transaction import AddAction

from marketlake.lake._errors import lake_errors
from marketlake.lake.location import LakeLocation
from marketlake.lake.tables import TableDef
from marketlake.lake.verified import damaged, open_file
from marketlake.lake.writes import commit_swap, live_files, remove_files
from marketlake.pipeline.remote.files import Bounds, FileWriter

BUCKET_ROWS = 262_144
_READ_ROWS = 65_536


@dataclass
class Counts:
    """What the snapshot changes: rows inserted, updated, equal, deleted; and the most rows
    a comparison held at once (both sides of one bucket: the memory bound, observable)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    peak_rows: int = 0

    def add(self, other: Counts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.peak_rows = max(self.peak_rows, other.peak_rows)

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


@dataclass(frozen=True)
class _Side:
    """One side's files of a partition: their paths and rows."""

    paths: list[str]
    rows: int


def apply_snapshot(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    props: CommitProperties,
    *,
    bucket_rows: int = BUCKET_ROWS,
    bounds: Bounds | None = None,
) -> Counts:
    """Make the table at ``dt``'s version equal the rows of ``batches`` (in ``schema``, the
    table's, partition columns included; rows whose key the source deleted left out), as
    one commit on top of ``dt``; the rows inserted, updated, unchanged and deleted."""
    out = FileWriter(location, tdef, schema, *([bounds] if bounds else []))
    with lake_errors("write a snapshot into", tdef.name):
        staged = out.write_all(batches)
    try:
        keep, gone, counts = _diff(dt, location, tdef, schema, staged, bucket_rows)
        kept = {a.path for a in keep}
        unused = [a.path for a in staged if a.path not in kept]
        if keep or gone:
            metadata = {
                **(props.custom_metadata or {}),
                "merge": "snapshot",
                "merge_inserted": str(counts.inserted),
                "merge_updated": str(counts.updated),
                "merge_deleted": str(counts.deleted),
            }
            pinned = CommitProperties(
                custom_metadata=metadata, max_commit_retries=props.max_commit_retries
            )
            with lake_errors("apply a snapshot to", tdef.name):
                commit_swap(dt, tdef, gone, keep, pinned)
    except BaseException:
        remove_files(location, tdef.name, [a.path for a in staged])
        raise
    remove_files(location, tdef.name, unused)  # partitions equal to the snapshot's
    return counts


def _diff(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    schema: pa.Schema,
    staged: list[AddAction],
    bucket_rows: int,
) -> tuple[list[AddAction], list[dict[str, Any]], Counts]:
    """The new files to add, the table's files to remove, and the counts, partition by
    partition."""
    parts = list(tdef.partitions)
    new: dict[tuple, list[AddAction]] = defaultdict(list)
    for a in staged:
        new[tuple(_text(a.partition_values.get(p)) for p in parts)].append(a)
    old: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for f in live_files(dt):
        old[tuple(_text(f.get(f"partition.{p}")) for p in parts)].append(f)

    def read(path: str) -> Any:
        return open_file(location, f"{tdef.name}/{unquote(path)}")

    compare = _Comparer(tdef, schema, read, bucket_rows)
    keep: list[AddAction] = []
    gone: list[dict[str, Any]] = []
    total = Counts()
    for part in sorted(set(new) | set(old), key=lambda k: tuple(str(v) for v in k)):
        adds, files = new.get(part, []), old.get(part, [])
        fresh = _Side([a.path for a in adds], sum(_records(a) for a in adds))
        held = _Side([f["path"] for f in files], sum(_rows(read, tdef, f) for f in files))
        if not files:
            counts = Counts(inserted=fresh.rows)
        elif not adds:
            counts = Counts(deleted=held.rows)
        else:
            counts = compare(held, fresh)
        total.add(counts)
        if counts.changed:
            keep += adds
            gone += files
    return keep, gone, total


class _Comparer:
    """Counts, bucket by bucket, how one partition's snapshot rows differ from its files."""

    def __init__(
        self,
        tdef: TableDef,
        schema: pa.Schema,
        read: Callable[[str], Any],
        bucket_rows: int,
    ) -> None:
        self.tdef, self.read, self.bucket_rows = tdef, read, bucket_rows
        data = pa.schema([f for f in schema if f.name not in tdef.partitions])
        empty = pl.from_arrow(data.empty_table())
        assert isinstance(empty, pl.DataFrame)
        self.empty = empty
        self.types = dict(empty.schema)
        self.key = [k for k in tdef.key if k not in tdef.partitions]
        self.values = [c for c in self.types if c not in self.key]

    def __call__(self, held: _Side, fresh: _Side) -> Counts:
        buckets = max(1, -(-max(held.rows, fresh.rows) // self.bucket_rows))
        counts = Counts()
        for b in range(buckets):
            old = self._bucket(held.paths, b, buckets)
            new = self._bucket(fresh.paths, b, buckets)
            both = new.join(old, on=self.key, how="inner", suffix="__t", nulls_equal=True)
            distinct = [pl.col(c).ne_missing(pl.col(f"{c}__t")) for c in self.values]
            updated = both.filter(pl.any_horizontal(distinct)).height if distinct else 0
            counts.add(
                Counts(
                    inserted=new.join(old, on=self.key, how="anti", nulls_equal=True).height,
                    updated=updated,
                    unchanged=both.height - updated,
                    deleted=old.join(new, on=self.key, how="anti", nulls_equal=True).height,
                    peak_rows=old.height + new.height,
                )
            )
        return counts

    def _bucket(self, paths: list[str], bucket: int, buckets: int) -> pl.DataFrame:
        """The rows of ``paths`` whose key hashes into ``bucket``, in the table's types."""
        frames = [self.empty]
        for path in paths:
            try:
                for batch in self.read(path).iter_batches(batch_size=_READ_ROWS):
                    frame = self._typed(batch)
                    if buckets > 1:
                        h = pl.struct(self.key).hash(seed=0) % buckets
                        frame = frame.filter(h == bucket)
                    frames.append(frame)
            except (OSError, pa.ArrowException) as exc:
                raise damaged(self.tdef.name, path, exc) from exc
        return pl.concat(frames, how="vertical")

    def _typed(self, batch: pa.RecordBatch) -> pl.DataFrame:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        return frame.select(
            [
                pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c)
                for c, t in self.types.items()
            ]
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _records(add: AddAction) -> int:
    return int(json.loads(add.stats)["numRecords"])


def _rows(read: Callable[[str], Any], tdef: TableDef, f: dict[str, Any]) -> int:
    """A live file's rows: from its statistics, else from its footer."""
    if f.get("num_records") is not None:
        return int(f["num_records"])
    try:
        return int(read(f["path"]).metadata.num_rows)
    except (OSError, pa.ArrowException) as exc:
        raise damaged(tdef.name, f["path"], exc) from exc


__all__ = ["BUCKET_ROWS", "Counts", "apply_snapshot"]
