"""The ``Lake`` facade: one object that opens, reads and writes the lake's Delta tables.

Every write is one Delta commit carrying ``run_id`` and ``stage`` in its commit metadata and
pinned to the snapshot it read. The work lives in job-sized modules: :mod:`.writes` (appends
with page-checksummed files), :mod:`.overlap` (the proof that a batch is new), :mod:`.merges`
(upserts, replaces, deletes), :mod:`.frames` (casts, dedupe, file statistics). Foreign errors
become :class:`LakeError` where they enter (:mod:`._errors`); a data file whose size differs
from what the log recorded is reported by name before any reader can panic on it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from marketlake.errors import LakeConflictError, LakeCorruptError, LakeError
from marketlake.lake import evolve, frames, merges, verified, writes
from marketlake.lake._errors import CommitConflict, lake_errors
from marketlake.lake.frames import dedupe
from marketlake.lake.location import LakeLocation
from marketlake.lake.overlap import may_overlap, suspects
from marketlake.lake.paths import ensure_home
from marketlake.lake.rewrites import Rewrite
from marketlake.lake.tables import TABLES, TableDef, polars_schema
from marketlake.lake.writes import TABLE_CONFIG, commit_properties

# a commit (``00000000000000000012.json``) or checkpoint file of a table's log
_LOG_FILE = re.compile(r"^(\d{20})\.(?:json|checkpoint\.parquet|checkpoint\.\d+\.\d+\.parquet)$")
# symbol lists up to this long filter inside a scan (file statistics skip the files without
# them); a longer list is applied to what was read (every file holds some of its symbols)
PUSHED_SYMBOLS = 64
ATTEMPTS = 5  # commits refused because another writer committed first, before giving up

__all__ = ["Lake", "PUSHED_SYMBOLS", "WriteResult", "Written", "TABLE_CONFIG", "dedupe"]


@dataclass(frozen=True)
class Written:
    """Data files written ahead of their commit (:meth:`Lake.write_ahead`): their rows
    and add actions."""

    table: str
    rows: int
    adds: list


@dataclass(frozen=True)
class WriteResult:
    """What one write did to one table."""

    table: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    version: int | None = None

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.table,
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.deleted + other.deleted,
            other.version if other.version is not None else self.version,
        )

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted


class Lake:
    """The lake under ``home/lake``, or at ``location`` (a local directory or an object-store
    URI): one Delta table per :data:`lake.tables.TABLES` entry."""

    def __init__(
        self, home: Path, *, create: bool = True, location: LakeLocation | None = None
    ) -> None:
        self.home = Path(home)
        if create:
            ensure_home(self.home)
        self.location = location or LakeLocation.local(self.home / "lake")

    @property
    def root(self) -> Path | LakeLocation:
        """The lake's directory (a local lake), else its location: the tables and the writer
        lock live here."""
        return self.location.path if self.location.is_local else self.location

    # -- tables -----------------------------------------------------------------
    def path(self, name: str) -> Path:
        """The table's local directory (a local lake only)."""
        self._known(name)
        return self.location.path / name

    def uri(self, name: str) -> str:
        """The table's URI (a local path, or ``s3://bucket/prefix/<table>``)."""
        self._known(name)
        return self.location.table_uri(name)

    @staticmethod
    def _known(name: str) -> None:
        if name not in TABLES:
            raise LakeError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(
            self.uri(name), storage_options=self.location.storage_options
        )

    def _open(self, name: str, version: int | None = None) -> DeltaTable | None:
        uri = self.uri(name)
        try:
            with lake_errors("open lake table", name):
                return DeltaTable(
                    uri, version=version, storage_options=self.location.storage_options
                )
        except LakeError as exc:
            if isinstance(exc.__cause__, TableNotFoundError):
                return None
            raise

    def table(self, name: str, version: int | None = None) -> DeltaTable | None:
        """The Delta table (its data files checked against the log), or None when nothing
        was ever written to it."""
        dt = self._open(name, version)
        if dt is not None:
            self.check_files(name, dt)
        return dt

    def check_files(self, name: str, dt: DeltaTable | None = None) -> int:
        """Raise :class:`LakeCorruptError` naming the first data file of the snapshot that is
        missing or whose size differs from the one its commit recorded (a truncated file);
        returns the number of files checked. Cheap: one ``stat`` per file, no reads."""
        dt = dt if dt is not None else self._open(name)
        if dt is None:
            return 0
        with lake_errors("list files of", name):
            adds = dt.get_add_actions(flatten=True)
            paths = adds.column("path").to_pylist()
            sizes = adds.column("size_bytes").to_pylist()
        remote = None if self.location.is_local else self.location.list(name)
        # a plain string join: a Path per file cost more than its stat
        root = os.path.join(self.path(name), "") if remote is None else ""
        for rel, size in zip(paths, sizes, strict=True):
            rel = unquote(rel)
            try:
                actual = os.stat(root + rel).st_size if remote is None else remote[rel]
            except (FileNotFoundError, KeyError):
                raise LakeCorruptError(
                    f"lake table {name}: data file {rel} is missing", table=name, file=rel
                ) from None
            if actual != size:
                raise LakeCorruptError(
                    f"lake table {name}: data file {rel} is damaged ({actual} bytes, the log "
                    f"recorded {size}); run `marketlake maintain --verify`",
                    table=name,
                    file=rel,
                )
        return len(paths)

    def version(self, name: str) -> int | None:
        """The table's latest version, None when nothing was ever written to it. On a local
        lake the newest commit (or checkpoint) file in its log says it: one directory
        listing, where opening the table would load its snapshot."""
        if self.location.is_local:
            try:
                names = os.listdir(self.path(name) / "_delta_log")
            except FileNotFoundError:
                return None
            found = [int(m.group(1)) for n in names if (m := _LOG_FILE.match(n))]
            if found:
                return max(found)
        dt = self._open(name)
        return None if dt is None else dt.version()

    # -- conversion ---------------------------------------------------------------
    def to_arrow(self, tdef: TableDef, frame: pl.DataFrame) -> pa.Table:
        return frames.to_arrow(tdef, frame)

    def to_polars(self, tdef: TableDef, frame: pl.DataFrame) -> pl.DataFrame:
        return frames.to_polars(tdef, frame)

    # -- writes ---------------------------------------------------------------------
    def may_overlap(
        self,
        name: str,
        frame: pl.DataFrame,
        timeframe: str | None = None,
        *,
        version: int | None = None,
    ) -> bool:
        """False only when the table's file statistics (at ``version``, default the latest)
        prove that no row of ``frame`` can already exist: then a blind append is safe."""
        return may_overlap(self.table(name, version), TABLES[name], frame, timeframe)

    def overlap_suspects(
        self,
        name: str,
        frame: pl.DataFrame,
        timeframe: str | None = None,
        *,
        version: int | None = None,
        symbols: tuple[str, str] | None = None,
    ) -> set[str] | None:
        """The symbols of ``frame`` the table's file statistics (at ``version``) cannot prove
        absent; rows of every other symbol are new. None: nothing can be proven.
        ``symbols``: the frame's least and greatest symbol, when the caller knows them."""
        return suspects(self.table(name, version), TABLES[name], frame, timeframe, symbols)

    def append(
        self,
        name: str,
        frame: pl.DataFrame,
        *,
        run_id: str,
        stage: str,
        metadata: dict[str, str] | None = None,
    ) -> WriteResult:
        """Blind append (only for rows provably absent from the table), one commit. Files are
        invisible until the commit: a crash leaves only unreferenced files ``maintain``
        removes."""
        return self.upsert(
            name, frame, run_id=run_id, stage=stage, assume_new=True, metadata=metadata
        )

    def upsert(
        self,
        name: str,
        frame: pl.DataFrame,
        *,
        run_id: str,
        stage: str,
        assume_new: bool = False,
        metadata: dict[str, str] | None = None,
        read_version: int | None = None,
    ) -> WriteResult:
        """MERGE ``frame`` on the table key as one commit.

        Rows whose value columns equal the stored ones are left untouched (and counted as
        unchanged). Duplicate keys inside ``frame`` keep the last row. ``assume_new`` is the
        caller's proof that no key exists at ``read_version`` (default: the latest version):
        then a blind append is committed on top of exactly that version, and should another
        writer have committed since, the write falls back to a MERGE on a fresh read.
        """
        tdef = TABLES[name]
        if frame.is_empty():
            return WriteResult(name)
        evolved, checked = self._evolve(name, run_id=run_id, stage=stage)
        if evolved:
            assume_new = False  # the proof was for a version before the new columns
        if not assume_new:
            frame = dedupe(frame, list(tdef.key))
        props = commit_properties(run_id, stage, metadata)
        for attempt in range(ATTEMPTS):
            dt = self._reopen(name, read_version if assume_new else None, checked)
            checked = None  # a retry reads afresh
            try:
                if dt is None or assume_new or not may_overlap(dt, tdef, frame):
                    rows = self._append(tdef, dt, frame, props)
                    return WriteResult(name, inserted=rows, version=self.version(name))
                ins, upd, same, _ = merges.merge_upsert(dt, self.location, tdef, frame, props)
                return WriteResult(name, ins, upd, same, 0, self.version(name))
            except CommitConflict:
                if assume_new:  # the proof was for a snapshot that is no longer the latest
                    frame, assume_new = dedupe(frame, list(tdef.key)), False
                time.sleep(0.05 * (attempt + 1))
        raise LakeConflictError(
            f"write to {name} failed: other writers committed first {ATTEMPTS} times"
        )

    def write_ahead(self, name: str, frame: pl.DataFrame) -> Written:
        """Write ``frame`` as new data files of the table, not committed: invisible until
        :meth:`commit_written` names them (a crash before leaves only files ``maintain``
        removes). A bulk load writes the next batch's files while the previous commits."""
        rows, adds = writes.write_files(self.location, TABLES[name], frame)
        return Written(name, rows, adds)

    def commit_written(
        self, written: Written, *, run_id: str, stage: str, read_version: int | None
    ) -> WriteResult | None:
        """Commit files of :meth:`write_ahead`, whose rows the caller proved absent at
        ``read_version``, as one blind append on top of exactly that version. None when it
        cannot be (the table gained columns, or another writer committed since): the files
        are removed and the caller writes its rows again."""
        name = written.table
        tdef = TABLES[name]
        try:
            evolved, checked = self._evolve(name, run_id=run_id, stage=stage)
            if evolved:
                raise CommitConflict(f"{name}: columns added since the files were written")
            dt = self._reopen(name, read_version, checked)
            if dt is None:
                dt = writes.create(self.uri(name), tdef, self.location.storage_options)
            writes.commit_files(dt, tdef, written.adds, commit_properties(run_id, stage))
        except CommitConflict:
            self.discard(written)
            return None
        except BaseException as exc:
            self.discard(written, exc)
            raise
        return WriteResult(name, inserted=written.rows, version=self.version(name))

    def discard(self, written: Written, error: BaseException | None = None) -> None:
        """Remove files of :meth:`write_ahead` that will not be committed; after ``error``
        raised by a commit attempt, only those the table does not reference
        (:func:`~marketlake.lake.writes.remove_unless_committed`)."""
        rels = [a.path for a in written.adds]
        if error is None:
            writes.remove_files(self.location, written.table, rels)
        else:
            writes.remove_unless_committed(self.location, written.table, rels, error)

    def evolve(self, name: str, *, run_id: str, stage: str) -> bool:
        """Add the nullable columns the table's definition gained since it was created, in
        one metadata-only commit (no rewrite; old files read them as null), or, when data an
        older release kept elsewhere moves into them, in the one commit that moves it; whether
        it did. Writers call it before writing; the caller holds the writer lock."""
        return self._evolve(name, run_id=run_id, stage=stage)[0]

    def _evolve(self, name: str, *, run_id: str, stage: str) -> tuple[bool, DeltaTable | None]:
        """:meth:`evolve`, and when it committed nothing the latest snapshot it checked
        (the caller's write starts from it instead of opening the table again: each open
        reads the whole log)."""
        tdef = TABLES[name]
        if tdef.evolving:
            return False, None  # columns of their own, merged by each write
        for attempt in range(ATTEMPTS):
            dt = self.table(name)
            if dt is None:
                return False, None
            missing = [f.name for f in evolve.missing_fields(dt, tdef)]
            if not missing:
                return False, dt
            try:
                moves = any((name, c) in evolve.MOVES for c in missing)  # small tables only
                raw = self._read_raw(name, dt) if moves else self.empty(name)
                moved = evolve.moved_rows(raw, tdef, missing)
                if moved.is_empty():
                    evolve.add_missing_columns(dt, tdef, run_id=run_id, stage=stage)
                else:  # the columns and the data moved into them: one commit
                    props = commit_properties(
                        run_id, stage, {"schema_evolution": ",".join(missing)}
                    )
                    table = evolve.with_rows(raw, moved, tdef)
                    merges.move_into_columns(dt, self.location, tdef, table, props)
                return True, None
            except CommitConflict:
                time.sleep(0.05 * (attempt + 1))
        raise LakeConflictError(f"adding columns to {name} failed: other writers committed first")

    def _reopen(
        self, name: str, version: int | None, checked: DeltaTable | None
    ) -> DeltaTable | None:
        """The table at ``version`` (None: the latest): ``checked`` (a snapshot just opened
        and checked, at the latest version then) when it is that version, else opened."""
        if checked is not None and version in (None, checked.version()):
            return checked
        return self.table(name, version)

    def _read_raw(self, name: str, dt: DeltaTable) -> pl.DataFrame:
        """The table at ``dt``'s version in its current shape (missing columns null), with
        nothing moved."""
        with lake_errors("read lake table", name):
            scan = verified.scan(self.location, name, dt)
            return evolve.conform(scan, TABLES[name]).collect()

    def _append(self, tdef: TableDef, dt: DeltaTable | None, frame: pl.DataFrame, props) -> int:
        uri, options = self.uri(tdef.name), self.location.storage_options
        if tdef.evolving:
            return writes.append_evolving(dt, self.location, tdef, frame, props)
        if dt is None:
            dt = writes.create(uri, tdef, options)
        return writes.append_files(dt, self.location, tdef, frame, props)

    def replace(
        self, name: str, frame: pl.DataFrame, *, scope: pl.DataFrame, run_id: str, stage: str
    ) -> WriteResult:
        """Make the rows matching ``scope`` (e.g. one symbol and timeframe) equal ``frame``,
        in one commit: new rows inserted, changed rows updated, rows ``frame`` lacks deleted.

        Used when a provider re-adjusted a symbol's whole history (a split or dividend).
        """
        tdef = TABLES[name]
        key = list(tdef.key)
        frame = frame.unique(subset=key, keep="last", maintain_order=True)
        self.evolve(name, run_id=run_id, stage=stage)
        props = commit_properties(run_id, stage)
        for attempt in range(ATTEMPTS):
            dt = self.table(name)
            if dt is None:
                return self.append(name, frame, run_id=run_id, stage=stage)
            stale = (
                self.scan(name, dt.version())
                .select([*key, *[p for p in tdef.partitions if p not in key]])
                .join(scope.lazy(), on=scope.columns, how="semi")
                .join(frame.select(key).lazy(), on=key, how="anti")
            )
            with lake_errors("read", name):
                stale = stale.collect()
            try:
                ins, upd, same, gone = merges.merge_replace(
                    dt, self.location, tdef, frame, stale, props
                )
                return WriteResult(name, ins, upd, same, gone, self.version(name))
            except CommitConflict:
                time.sleep(0.05 * (attempt + 1))
        raise LakeConflictError(f"replace in {name} failed: other writers committed first")

    def rewrite(self, name: str, column: str, value: str) -> Rewrite:
        """A :class:`~marketlake.lake.rewrites.Rewrite` of every partition of ``name`` whose
        ``column`` is ``value``: write batches, then commit (one commit) or abandon."""
        tdef = TABLES[name]
        return Rewrite(self.table(name), self.location, tdef, column, value)

    def delete_keys(self, name: str, keys: pl.DataFrame, *, run_id: str, stage: str) -> int:
        """Delete the rows whose key is in ``keys`` (one commit, keys bound as data)."""
        tdef = TABLES[name]
        props = commit_properties(run_id, stage)
        for attempt in range(ATTEMPTS):
            dt = self.table(name)
            if dt is None or keys.is_empty():
                return 0
            try:
                return merges.merge_delete(dt, self.location, tdef, keys, props)
            except CommitConflict:
                time.sleep(0.05 * (attempt + 1))
        raise LakeConflictError(f"{name}: key delete failed, other writers committed first")

    def mark(self, name: str, *, run_id: str, stage: str, metadata: dict[str, str]) -> None:
        """An empty commit that only records ``metadata`` (e.g. a watermark)."""
        dt = self._open(name)
        if dt is not None:
            writes.mark(dt, name, commit_properties(run_id, stage, metadata, pinned=False))

    # -- reads ------------------------------------------------------------------------
    def empty(self, name: str) -> pl.DataFrame:
        # from the polars schema: pyarrow's ``empty_table`` imports pandas (~1 s cold)
        return pl.DataFrame(schema=polars_schema(name))

    def scan(
        self, name: str, version: int | None = None, *, dictionary: tuple[str, ...] = ()
    ) -> pl.LazyFrame:
        """A lazy polars scan of the table (an empty frame of the right schema if absent);
        its data files are checked against the log first, and every page read is checked
        against its checksum (a damaged file is a :class:`LakeCorruptError` naming it).
        String columns in ``dictionary`` read as Categorical (far cheaper for a column of few
        distinct values, such as ``symbol``, when the caller groups by it)."""
        dt = self.table(name, version)
        if dt is None:
            return self.empty(name).lazy()
        with lake_errors("read lake table", name):
            scan = verified.scan(self.location, name, dt, dictionary)
        tdef = TABLES[name]
        if tdef.evolving:
            return scan
        added = [f.name for f in evolve.missing_fields(dt, tdef)]
        scan = evolve.conform(scan, tdef)
        if any((name, c) in evolve.MOVES for c in added):  # small tables only
            with lake_errors("read lake table", name):
                return evolve.with_moves(scan.collect(), tdef, added).lazy()
        return scan

    def distinct(
        self, name: str, column: str, by: str, version: int | None = None
    ) -> pl.DataFrame | None:
        """The distinct (``by``, ``column``) pairs of the table's rows, ``by`` a partition
        column and ``column`` a text one (the series of ``ohlcv``: timeframe and symbol), read
        without a query over every row; None when only a query can tell (an object store, a
        file needing more than plain parquet, a null value)."""
        dt = self.table(name, version)
        if dt is None:
            return self.empty(name).select(by, column)
        if not self.location.is_local or not verified.readable(dt):
            return None
        from marketlake.lake import local_reads

        with lake_errors("read lake table", name):
            found = local_reads.distinct(self.location.path / name, name, dt, column, by)
        if found is None:
            return None
        schema = polars_schema(name)
        return pl.DataFrame(
            {
                by: [k for k, v in found.items() for _ in v],
                column: [x for v in found.values() for x in v],
            },
            schema={by: schema[by], column: schema[column]},
        )

    def dataset(self, name: str, version: int | None = None) -> verified.Checked | None:
        """The table's snapshot as a pyarrow dataset whose batches verify page checksums
        (a damaged file is a :class:`LakeCorruptError` naming it); None when absent."""
        dt = self.table(name, version)
        if dt is None:
            return None
        with lake_errors("open lake table", name):
            return verified.Checked(name, verified.dataset(self.location, name, dt))

    def read(self, name: str, version: int | None = None) -> pl.DataFrame:
        scan = self.scan(name, version)
        with lake_errors("read lake table", name):
            return scan.collect()

    def changes(
        self, name: str, starting_version: int, ending_version: int | None = None
    ) -> pl.DataFrame:
        """The change data feed between two versions (inclusive), without rows a merge
        rewrote unchanged (:func:`~marketlake.lake.merges.net_changes`)."""
        dt = self.table(name)
        if dt is None:
            return self.empty(name)
        verified.check_versions(self.location, name, starting_version, ending_version)
        with lake_errors("read the change feed of", name):
            reader = dt.load_cdf(
                starting_version=starting_version,
                ending_version=ending_version,
                allow_out_of_range=True,
            )
            return merges.net_changes(pl.DataFrame(reader))  # pa.table imports pandas

    def history(self, name: str, limit: int | None = None) -> list[dict]:
        dt = self._open(name)
        if dt is None:
            return []
        with lake_errors("read the history of", name):
            return dt.history(limit)
