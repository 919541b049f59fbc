"""What changed in a table between two versions: each key's last change, netted out of core.

``load`` and ``push`` send, per key, the last change of the Delta change feed in a version
range with a delete flag (``_ml_delete``), without the rows a merge rewrote unchanged
(:func:`~marketlake.lake.merges.net_changes`). A whole-history rewrite (a split re-adjusting
20 years, an indicator recomputed for every row) puts every row in the feed twice, so the
feed is never held whole: it is read batch by batch, spooled to a scratch directory once it
outgrows ``bucket_rows``, split by a hash of the key into buckets of about that many rows
(all of a key's changes fall in one bucket) and netted bucket by bucket; the netted rows are
spooled again, sorted by partition and key (DuckDB, out of core) and read back as a stream. A
feed that fits one bucket stays in memory.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from marketlake.lake import verified
from marketlake.lake.location import LakeLocation
from marketlake.lake.merges import net_changes
from marketlake.lake.tables import TableDef

log = logging.getLogger("marketlake.lake")

FLAG = "_ml_delete"  # a row whose key the range deleted
UPSERT_TYPES = ("insert", "update_postimage")
_CDF = ("_change_type", "_commit_version", "_commit_timestamp")
_SEED = 0x6D6C  # the key hash's seed: fixed, so one key always lands in one bucket
_SPOOL = pa.ipc.IpcWriteOptions(compression="lz4")
_WRITE_ROWS = 65_536  # rows per batch written to a spool
_SORT_MEMORY = "256MB"  # DuckDB's memory while it sorts the netted changes


@dataclass(frozen=True)
class Bounds:
    """Rows netted in memory at once (a bucket), and rows per batch read back."""

    bucket_rows: int = 250_000
    batch_rows: int = 65_536


BOUNDS = Bounds()


@dataclass
class Changes:
    """The netted changes: ``rows`` rows (``upserts`` of them not deletes), in memory or
    spooled to ``path``; :meth:`batches` streams them (any number of times)."""

    schema: pa.Schema
    rows: int = 0
    upserts: int = 0
    buckets: int = 1  # how many buckets the feed was netted in (1: in memory)
    path: Path | None = None
    table: pa.Table | None = None
    batch_rows: int = BOUNDS.batch_rows

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self.table is not None:
            yield from self.table.to_batches(max_chunksize=self.batch_rows)
        elif self.path is not None:
            for batch in pa.ipc.open_stream(pa.OSFile(str(self.path), "rb")):
                for start in range(0, batch.num_rows, self.batch_rows):
                    yield batch.slice(start, self.batch_rows)

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())

    def frame(self) -> pl.DataFrame:
        """All of it in memory (small ranges and tests only)."""
        out = pl.from_arrow(pa.Table.from_batches(list(self.batches()), self.schema))
        assert isinstance(out, pl.DataFrame)
        return out


def read_changes(
    dt: DeltaTable,
    tdef: TableDef,
    prev: int,
    current: int,
    location: LakeLocation,
    work: Path,
    bounds: Bounds | None = None,
) -> Changes | None:
    """Each key's last change in versions ``prev+1..current`` with a delete flag (spools go
    to ``work``, which the caller owns), or None when the change feed cannot serve that
    whole range (then a snapshot diff is used, whose reads are verified: a damaged file the
    feed would read sends the caller there)."""
    bounds = bounds or BOUNDS
    spool = _Spool(work / "feed.arrows", bounds.bucket_rows)
    try:
        versions = {h.get("version") for h in dt.history(current - prev)}
        if not set(range(prev + 1, current + 1)) <= versions:
            log.info(
                "%s: log lacks versions %d..%d; using a snapshot", tdef.name, prev + 1, current
            )
            return None
        verified.check_versions(location, tdef.name, prev + 1, current)
        feed = dt.load_cdf(starting_version=prev + 1, ending_version=current)
        reader = pa.RecordBatchReader.from_stream(feed)
        spool.schema = _plain(reader.schema)
        for batch in reader:
            spool.add(batch if batch.schema == spool.schema else _as_plain(batch, spool.schema))
        spool.close()
    except Exception as exc:  # deltalake/pyarrow raise several types: all mean "cannot serve"
        spool.discard()
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.info(
            "%s: change feed %d..%d unavailable (%s); using a snapshot",
            tdef.name,
            prev + 1,
            current,
            first,
        )
        return None
    key = list(tdef.key)
    if spool.path is None:  # it fits one bucket
        netted = net_per_key(_frame(spool.held, spool.schema), key).to_arrow()
        return Changes(
            netted.schema,
            netted.num_rows,
            _upserts(netted),
            table=netted,
            batch_rows=bounds.batch_rows,
        )
    buckets = math.ceil(spool.rows / bounds.bucket_rows)
    paths = _split(spool.path, key, buckets, work)
    spool.path.unlink()
    out = Changes(pa.schema([]), buckets=buckets, path=work / "netted.arrows")
    out.batch_rows = bounds.batch_rows
    writer = None
    try:
        for path in paths:
            frame = _frame(list(pa.ipc.open_stream(pa.OSFile(str(path), "rb"))), spool.schema)
            path.unlink()
            netted = net_per_key(frame, key).to_arrow()
            del frame
            if writer is None:
                out.schema = netted.schema
                writer = pa.ipc.new_stream(str(out.path), out.schema, options=_SPOOL)
            if netted.schema != out.schema:
                netted = netted.cast(out.schema)
            writer.write_table(netted, max_chunksize=bounds.batch_rows)
            out.rows += netted.num_rows
            out.upserts += _upserts(netted)
    finally:
        if writer is not None:
            writer.close()
    order = list(dict.fromkeys([*tdef.partitions, *key]))
    return _in_order(out, order, work)


def _in_order(changes: Changes, order: list[str], work: Path) -> Changes:
    """The spooled changes sorted by ``order`` (partition, then key) out of core: buckets
    interleave the key space, and a database applying the changes (``load``) does far
    better in key order. DuckDB sorts, held to ``_SORT_MEMORY`` and spilling to ``work``."""
    import duckdb

    assert changes.path is not None
    target = work / "sorted.arrows"
    spill = work / "sort-spill"
    spill.mkdir(exist_ok=True)
    con = duckdb.connect()
    try:
        for setting in (
            f"SET memory_limit = '{_SORT_MEMORY}'",
            f"SET temp_directory = '{spill.as_posix()}'",
            "SET TimeZone = 'UTC'",
        ):
            con.execute(setting)
        con.register("netted", pa.ipc.open_stream(pa.OSFile(str(changes.path), "rb")))
        by = ", ".join('"' + c.replace('"', '""') + '"' for c in order)
        reader = con.sql(f"SELECT * FROM netted ORDER BY {by}").to_arrow_reader(  # noqa: S608
            changes.batch_rows
        )
        with pa.ipc.new_stream(str(target), reader.schema, options=_SPOOL) as writer:
            for batch in reader:
                writer.write_batch(batch)
        schema = reader.schema
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    changes.path.unlink()
    changes.path, changes.schema = target, schema
    return changes


def net_per_key(feed: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """A change feed (every change of some keys) netted: the rows a merge rewrote unchanged
    dropped, then each key's last change with a delete flag."""
    return (
        net_changes(feed)
        .filter(pl.col("_change_type") != "update_preimage")
        .with_columns(pl.col("_change_type").is_in(UPSERT_TYPES).alias("_ml_upsert"))
        # a key's last change wins; inside one commit an insert beats a delete (overwrite)
        .sort(["_commit_version", "_ml_upsert"], maintain_order=True)
        .unique(subset=key, keep="last", maintain_order=True)
        .with_columns((~pl.col("_ml_upsert")).alias(FLAG))
        .drop([*_CDF, "_ml_upsert"], strict=False)
    )


def _plain(schema: pa.Schema) -> pa.Schema:
    """``schema`` with view types as plain ones (pyarrow's kernels lack some view kernels)."""
    views = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}
    return pa.schema([f.with_type(views.get(f.type, f.type)) for f in schema])


def _as_plain(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` in ``schema`` (:func:`_plain` of its own): view columns converted by polars,
    which holds text as views itself; an arrow cast would import pyarrow.compute (about
    0.3 s of a nightly load)."""
    views = [
        i for i, (c, f) in enumerate(zip(batch.columns, schema, strict=True)) if c.type != f.type
    ]
    plain = pl.from_arrow(batch.select(views)).to_arrow(compat_level=pl.CompatLevel.oldest())
    columns = list(batch.columns)
    for j, i in enumerate(views):
        columns[i] = plain.column(j).combine_chunks()
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _frame(batches: list[pa.RecordBatch], schema: pa.Schema) -> pl.DataFrame:
    out = pl.from_arrow(pa.Table.from_batches(batches, schema))
    assert isinstance(out, pl.DataFrame)
    return out


def _upserts(table: pa.Table) -> int:
    flags = pl.from_arrow(table.select([FLAG]))  # pl.Series(arrow) imports pyarrow.compute
    return table.num_rows - int(flags.get_column(FLAG).sum() or 0)


@dataclass
class _Spool:
    """The feed's batches: held while they fit one bucket, then all of them on disk."""

    target: Path
    limit: int
    rows: int = 0
    schema: pa.Schema | None = None
    held: list[pa.RecordBatch] = field(default_factory=list)
    path: Path | None = None
    _writer: pa.ipc.RecordBatchStreamWriter | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.rows += batch.num_rows
        self.held.append(batch)
        if self._writer is None and self.rows > self.limit:
            self.path = self.target
            self._writer = pa.ipc.new_stream(str(self.path), self.schema, options=_SPOOL)
        if self._writer is not None and sum(b.num_rows for b in self.held) >= _WRITE_ROWS:
            self._flush()

    def _flush(self) -> None:
        """Write what is held as one batch (the feed's batches are small)."""
        assert self._writer is not None
        if self.held:
            table = pa.Table.from_batches(self.held, self.schema).combine_chunks()
            self._writer.write_table(table)
        self.held = []

    def close(self) -> None:
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None

    def discard(self) -> None:
        self.held = []
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _split(spool: Path, key: list[str], buckets: int, work: Path) -> list[Path]:
    """The spooled feed split into ``buckets`` files by a hash of ``key``, order kept."""
    paths = [work / f"bucket-{i:04d}.arrows" for i in range(buckets)]
    reader = pa.ipc.open_stream(pa.OSFile(str(spool), "rb"))
    writers = [pa.ipc.new_stream(str(p), reader.schema, options=_SPOOL) for p in paths]
    try:
        for batch in reader:
            keys = pl.from_arrow(pa.Table.from_batches([batch]).select(key))
            assert isinstance(keys, pl.DataFrame)
            which = keys.select(pl.struct(key).hash(_SEED) % buckets).to_series().to_numpy()
            order = np.argsort(which, kind="stable")
            bounds = np.searchsorted(which[order], np.arange(buckets + 1))
            for i in range(buckets):
                lo, hi = bounds[i], bounds[i + 1]
                if hi > lo:
                    writers[i].write_batch(batch.take(pa.array(order[lo:hi])))
    finally:
        for w in writers:
            w.close()
    return paths


__all__ = ["BOUNDS", "FLAG", "Bounds", "Changes", "net_per_key", "read_changes"]
