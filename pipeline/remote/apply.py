"""The remote side of a push: one table's spooled batch applied to the lake as ONE commit.

The batch (an IPC stream spooled to disk while it arrived) carries every changed row of the
source's table since the version the remote last acknowledged, each flagged ``_ml_delete``
when the source deleted its key; a ``snapshot`` batch carries the whole table instead (the
source's change feed could not serve the range, or this is the first push).

* The commit records ``push_source``, ``push_table_id`` (the source table's Delta id) and the
  version range in its metadata. A batch whose range the history already holds (a push the
  remote committed but whose acknowledgement was lost) commits nothing and changes 0 rows.
* Into an empty table the rows are appended, streamed from the spool into data files in
  bounded memory (:mod:`.files`). A change batch is one merge of
  :mod:`marketlake.lake.merges` (checksummed files), or of :mod:`.spilled` when it is too
  large for memory (out of core, same counts, one commit): it inserts new keys, updates rows
  whose values differ (so a re-applied batch is a no-op) and deletes flagged keys. A snapshot
  into a table that holds rows makes the table equal to it (:mod:`.snapshot`): streamed into
  checksummed files, compared partition by partition in bounded memory, only partitions that
  differ swapped, keys the snapshot lacks deleted.
* Columns the source grew (a new indicator) are added first by a metadata-only commit.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, Field
from deltalake.schema import Schema as DeltaSchema

from marketlake.errors import ValidationError
from marketlake.lake import merges, writes
from marketlake.lake._errors import lake_errors
from marketlake.lake.batches import conform
from marketlake.lake.location import LakeLocation
from marketlake.lake.scratch import Scratch
from marketlake.lake.tables import TableDef
from marketlake.pipeline.remote import spilled
from marketlake.pipeline.remote.files import FileWriter
from marketlake.pipeline.remote.snapshot import apply_snapshot
from marketlake.pipeline.remote.spilled import Bounds
from marketlake.pipeline.remote.wire import FLAG, read_file

log = logging.getLogger("marketlake.push")

HISTORY_LIMIT = 500  # commits searched for an earlier application of the same batch
MODES = ("changes", "snapshot")


@dataclass(frozen=True)
class PushBatch:
    """What the source says about one table's batch (query parameters of the request)."""

    table: str
    source: str
    source_table_id: str
    from_version: int | None  # the last acknowledged version (None: snapshot)
    to_version: int
    mode: str
    rows: int


@dataclass
class Applied:
    """What applying one batch did to the remote's lake table."""

    table: str
    version: int
    table_id: str
    mode: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    rows: int = 0
    already_applied: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def applied_before(dt: DeltaTable, batch: PushBatch) -> int | None:
    """The highest ``push_to`` recorded for this source table in recent history."""
    best: int | None = None
    with lake_errors("read the history of", batch.table):
        history = dt.history(HISTORY_LIMIT)
    for commit in history:
        if (
            commit.get("push_source") == batch.source
            and commit.get("push_table_id") == batch.source_table_id
        ):
            to = int(commit.get("push_to", -1))
            best = to if best is None else max(best, to)
    return best


@dataclass
class _Scope:
    """What one pass over the spool found: its schema, the partition values and key ranges
    it touches (as :func:`marketlake.lake.merges.candidates` takes them), whether it deletes."""

    schema: pa.Schema
    parts: dict[str, set]
    ranges: dict[str, tuple[Any, Any]]
    deletes: bool


def _scan(path: Path, tdef: TableDef, declared: int) -> _Scope:
    """One pass over the spool; the row count must equal what the source declared."""
    reader = read_file(path)
    parts: dict[str, set] = {p: set() for p in tdef.partitions}
    ranges: dict[str, tuple[Any, Any]] = {}
    nulls: set[str] = set()
    ranged = [k for k in tdef.key if k not in tdef.partitions]
    rows, deletes = 0, False
    for batch in reader:
        rows += batch.num_rows
        for p in tdef.partitions:
            parts[p].update(batch.column(p).unique().to_pylist())
        keys = pl.from_arrow(pa.Table.from_batches([batch]).select(ranged))
        assert isinstance(keys, pl.DataFrame)
        for k in ranged:
            col = keys.get_column(k)
            if col.null_count():
                nulls.add(k)
            elif len(col):
                lo, hi = col.min(), col.max()
                if k in ranges:
                    lo, hi = min(lo, ranges[k][0]), max(hi, ranges[k][1])
                ranges[k] = (lo, hi)
        if batch.schema.get_field_index(FLAG) >= 0:
            deletes = deletes or bool(pa.compute.any(batch.column(FLAG)).as_py())
    if rows != declared:
        raise ValidationError(
            f"{tdef.name}: the body holds {rows} rows, the source sent {declared}"
        )
    return _Scope(
        reader.schema,
        parts,
        {k: r for k, r in ranges.items() if k not in nulls},
        deletes,
    )


def _grow(dt: DeltaTable, tdef: TableDef, incoming: pa.Schema) -> pa.Schema:
    """Add the columns the batch has and the table lacks (evolving tables only)."""
    have = set(pa.schema(dt.schema().to_arrow()).names)
    new = [f for f in incoming if f.name not in have and f.name != FLAG]
    if new:
        if not tdef.evolving:
            raise ValidationError(
                f"{tdef.name}: the batch has columns the table lacks: "
                + ", ".join(f.name for f in new)
            )
        with lake_errors("add columns to", tdef.name):
            fields = DeltaSchema.from_arrow(pa.schema(new)).fields
            dt.alter.add_columns([Field(f.name, f.type, nullable=True) for f in fields])
            dt.update_incremental()
    return pa.schema(dt.schema().to_arrow())


def apply_push(
    dt: DeltaTable | None,
    location: LakeLocation,
    tdef: TableDef,
    batch: PushBatch,
    spool: Path,
    props_for,
    work: Path | None = None,
    bounds: Bounds | None = None,
) -> Applied:
    """Apply ``spool`` (the batch's IPC stream) to the table ``tdef.name`` of the lake at
    ``location`` (``dt``, or None when it does not exist yet) as one commit; a batch with a
    ``source`` is skipped when the history shows it applied already.

    ``props_for(metadata)`` builds the commit properties; the caller holds the writer lock
    and may lend ``work`` (a scratch directory for spills; else one is made); ``bounds``
    bound a large change batch's merge."""
    if batch.mode not in MODES:
        raise ValidationError(f"mode must be one of {', '.join(MODES)}, got {batch.mode!r}")
    meta = {
        "push_source": batch.source,
        "push_table_id": batch.source_table_id,
        "push_from": "" if batch.from_version is None else str(batch.from_version),
        "push_to": str(batch.to_version),
        "push_mode": batch.mode,
    }
    if dt is not None and batch.source:
        done = applied_before(dt, batch)
        if done is not None and done >= batch.to_version:
            return Applied(
                tdef.name,
                dt.version(),
                dt.metadata().id,
                batch.mode,
                rows=batch.rows,
                unchanged=batch.rows,
                already_applied=True,
            )
    scope = _scan(spool, tdef, batch.rows)
    uri, options = location.table_uri(tdef.name), location.storage_options
    if dt is None:
        dt = writes.create(uri, tdef, options)
    schema = _grow(dt, tdef, scope.schema)
    empty = dt.get_add_actions().num_rows == 0
    props = props_for(meta)
    with ExitStack() as stack:
        if work is None:
            work = stack.enter_context(Scratch("apply"))
        if empty and not scope.deletes:
            rows = _append(dt, location, tdef, schema, spool, batch.rows, props, work)
            res = Applied(tdef.name, 0, "", batch.mode, inserted=rows, rows=rows)
        elif batch.mode == "changes":
            res = _merge_changes(
                dt, location, tdef, schema, spool, batch, props, scope, work, bounds
            )
        else:
            res = _snapshot(dt, location, tdef, schema, spool, batch, props)
    with lake_errors("read", tdef.name):
        dt = DeltaTable(uri, storage_options=options)
    res.version, res.table_id = dt.version(), dt.metadata().id
    return res


def _append(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    schema: pa.Schema,
    spool: Path,
    declared: int,
    props,
    work: Path,
) -> int:
    """Stream the spool into the (empty) table as one append commit, written in bounded
    memory (:mod:`.files`); nothing is committed unless every declared row was read."""
    out = FileWriter(location, tdef, schema, staging=work / "staging")
    with lake_errors("append to", tdef.name):
        adds = out.write_all(conform(read_file(spool), schema))
    try:
        if out.rows != declared:
            raise ValidationError(f"{tdef.name}: read {out.rows} rows, the source sent {declared}")
        writes.commit_files(dt, tdef, adds, props)
    except BaseException:
        writes.remove_files(location, tdef.name, [a.path for a in adds])
        raise
    return out.rows


def _merge_changes(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    schema: pa.Schema,
    spool: Path,
    batch: PushBatch,
    props,
    scope: _Scope,
    work: Path,
    bounds: Bounds | None,
) -> Applied:
    """A change batch as one merge, written with page checksums like every local merge
    (only files holding a changed or deleted key are rewritten): in memory
    (:mod:`marketlake.lake.merges`) when the batch and the files that may hold its keys are
    small, else out of core (:mod:`.spilled`), with the same counts and one commit."""
    bounds = bounds or spilled.BOUNDS
    with lake_errors("read", tdef.name):
        files = merges.candidates(
            dt,
            {p: {str(v) for v in vs} for p, vs in scope.parts.items() if None not in vs},
            scope.ranges,
        )
    held = sum(int(f.get("num_records") or 0) for f in files)
    if batch.rows > bounds.memory_rows or held > bounds.memory_rows:
        log.info(
            "%s: merging %d rows into files holding %d out of core", tdef.name, batch.rows, held
        )
        source = _flagged(spool, schema)
        counts = spilled.merge_spilled(dt, location, tdef, source, files, props, work, bounds)
        ins, upd, _, dele = counts
        return _counted(tdef, batch, ins, upd, dele)
    frame = pl.from_arrow(_flagged(spool, schema).read_all())
    assert isinstance(frame, pl.DataFrame)
    rows = frame.filter(~pl.col(FLAG)).drop(FLAG)
    gone = frame.filter(pl.col(FLAG)).select(list(tdef.key))
    ins, upd, _, dele = merges.merge_replace(dt, location, tdef, rows, gone, props)
    return _counted(tdef, batch, ins, upd, dele)


def _snapshot(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    schema: pa.Schema,
    spool: Path,
    batch: PushBatch,
    props,
) -> Applied:
    """A snapshot batch into a table that holds rows: the table made equal to it (keys the
    snapshot lacks or flags deleted), streamed in bounded memory with page checksums, one
    commit (:mod:`.snapshot`)."""
    rows = (
        b.filter(pa.compute.invert(b.column(FLAG))).drop_columns([FLAG])
        for b in _flagged(spool, schema)
    )
    c = apply_snapshot(dt, location, tdef, schema, rows, props)
    return Applied(
        tdef.name,
        0,
        "",
        batch.mode,
        c.inserted,
        c.updated,
        c.deleted,
        unchanged=c.unchanged,
        rows=batch.rows,
    )


def _counted(tdef: TableDef, batch: PushBatch, ins: int, upd: int, dele: int) -> Applied:
    """A merged batch's counts (version and table id are filled in after the commit)."""
    unchanged = max(batch.rows - ins - upd - dele, 0)
    return Applied(
        tdef.name, 0, "", batch.mode, ins, upd, dele, unchanged=unchanged, rows=batch.rows
    )


def _flagged(spool: Path, schema: pa.Schema) -> pa.RecordBatchReader:
    """The spooled batch in ``schema`` plus its delete flag (false where the sender had none)."""
    flagged = schema.append(pa.field(FLAG, pa.bool_()))
    return pa.RecordBatchReader.from_batches(flagged, _with_flag(read_file(spool), flagged))


def _with_flag(reader, schema: pa.Schema):
    """Batches in ``schema``: the data columns cast, ``_ml_delete`` false where absent."""
    for b in conform(reader, schema):
        flag = b.column(FLAG)
        if flag.null_count:
            flag = pa.compute.fill_null(flag, False)
            b = b.set_column(b.schema.get_field_index(FLAG), FLAG, flag)
        yield b
