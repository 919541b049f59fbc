"""A pushed change batch merged in bounded memory, still as ONE commit.

:mod:`marketlake.lake.merges` joins a batch with the files that may hold its keys in memory:
right for a day of bars, not for a whole-history re-adjustment, where every row of the table
changes. Here DuckDB does the same joins out of core (``memory_limit``, spilling to the push's
scratch directory): the spooled batch and the rows of the candidate files (read file by file
in bounded batches, pages verified) become DuckDB tables; the matched keys say which files
hold a changed or deleted row; the rows of those files that stay, the updated rows and the
new rows stream out, ordered by partition and key, into new data files
(:class:`~marketlake.pipeline.remote.files.FileWriter`: bounded buffers, page checksums).
The counts, the commit's metadata and its single commit pinned to the version read are those
of the in-memory merge: a matched row changes only when a value column is distinct, so a
re-applied batch changes nothing and commits nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable

from marketlake.lake._errors import lake_errors
from marketlake.lake.batches import READ_BUFFER, conform
from marketlake.lake.location import LakeLocation
from marketlake.lake.tables import TableDef
from marketlake.lake.verified import damaged
from marketlake.lake.writes import commit_swap, remove_files
from marketlake.pipeline.remote.files import BOUNDS as FILE_BOUNDS
from marketlake.pipeline.remote.files import Bounds as FileBounds
from marketlake.pipeline.remote.files import FileWriter
from marketlake.pipeline.remote.wire import FLAG

_FILE = "_ml_file"


def q(name: str) -> str:
    """``name`` as a quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Bounds:
    """A batch (or its candidate files) above ``memory_rows`` rows merges out of core, with
    DuckDB held to ``memory_limit``; rows move in batches of ``batch_rows``; the files
    written follow ``files``."""

    memory_rows: int = 250_000
    memory_limit: str = "256MB"
    threads: int = 2
    batch_rows: int = 65_536
    files: FileBounds = FILE_BOUNDS


BOUNDS = Bounds()


def merge_spilled(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    source: pa.RecordBatchReader,
    files: list[dict[str, Any]],
    props: CommitProperties,
    work: Path,
    bounds: Bounds | None = None,
) -> tuple[int, int, int, int]:
    """Upsert the rows of ``source`` (unique keys, the table's schema plus ``_ml_delete``)
    and delete its flagged keys, in one commit on top of ``dt``; ``files`` are the add
    actions (flattened) that may hold its keys. (inserted, updated, unchanged, deleted)."""
    bounds = bounds or BOUNDS
    schema = pa.schema(dt.schema().to_arrow())
    with lake_errors("merge into", tdef.name), _duck(work, bounds) as con:
        con.register("incoming", source)
        con.execute("CREATE TABLE src AS SELECT * FROM incoming")
        con.unregister("incoming")
        _load_target(con, location, tdef, schema, files, bounds)
        return _merge(con, dt, location, tdef, schema, files, props, work, bounds)


class _duck:
    """A DuckDB database in ``work`` held to the bounds (spilling under ``work``)."""

    def __init__(self, work: Path, bounds: Bounds) -> None:
        self.path = work / "merge.duckdb"
        self.con = duckdb.connect(str(self.path))
        spill = work / "spill"
        spill.mkdir(exist_ok=True)
        for setting in (
            f"SET memory_limit = '{bounds.memory_limit}'",
            f"SET threads = {int(bounds.threads)}",
            f"SET temp_directory = '{spill.as_posix()}'",
            "SET preserve_insertion_order = false",
            "SET TimeZone = 'UTC'",
        ):
            self.con.execute(setting)

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def __exit__(self, *exc: object) -> None:
        self.con.close()
        self.path.unlink(missing_ok=True)
        Path(f"{self.path}.wal").unlink(missing_ok=True)


def _load_target(
    con: duckdb.DuckDBPyConnection,
    location: LakeLocation,
    tdef: TableDef,
    schema: pa.Schema,
    files: list[dict[str, Any]],
    bounds: Bounds,
) -> None:
    """The candidate files' rows (partition values as columns, ``_ml_file`` their index)."""
    tschema = schema.append(pa.field(_FILE, pa.int32()))
    con.register("empty", tschema.empty_table())
    con.execute("CREATE TABLE tgt AS SELECT * FROM empty")
    con.unregister("empty")
    for i, f in enumerate(files):
        for batch in _file_batches(location, tdef, f, bounds.batch_rows):
            for p in tdef.partitions:
                value = pa.scalar(f.get(f"partition.{p}"), pa.string())
                batch = batch.append_column(p, pa.repeat(value, batch.num_rows))
            batch = batch.append_column(_FILE, pa.repeat(pa.scalar(i, pa.int32()), batch.num_rows))
            part = next(conform([batch], tschema))
            con.register("part", part)
            con.execute("INSERT INTO tgt SELECT * FROM part")
            con.unregister("part")


def _file_batches(
    location: LakeLocation, tdef: TableDef, f: dict[str, Any], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """The rows of add action ``f``'s data file in batches, pages verified."""
    rel = unquote(f["path"])
    key = f"{tdef.name}/{rel}"
    try:
        source = location.path / key if location.is_local else pa.BufferReader(location.get(key))
        pf = pq.ParquetFile(
            source, pre_buffer=False, buffer_size=READ_BUFFER, page_checksum_verification=True
        )
        yield from pf.iter_batches(batch_size=batch_rows, use_threads=False)
    except (OSError, pa.ArrowException) as exc:
        raise damaged(tdef.name, rel, exc) from exc


def _merge(
    con: duckdb.DuckDBPyConnection,
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    schema: pa.Schema,
    files: list[dict[str, Any]],
    props: CommitProperties,
    work: Path,
    bounds: Bounds,
) -> tuple[int, int, int, int]:
    key = list(tdef.key)
    skip = {*tdef.key, *tdef.partitions, *tdef.bookkeeping}
    values = [c for c in schema.names if c not in skip]
    # every name below is quoted by q() (table columns), so the SQL texts are safe
    on = " AND ".join(f"s.{q(k)} = t.{q(k)}" for k in key)
    distinct = " OR ".join(f"s.{q(c)} IS DISTINCT FROM t.{q(c)}" for c in values) or "FALSE"
    # m: every source row matched with the target row of its key, and what becomes of it
    con.execute(
        f"CREATE TABLE m AS SELECT s.rowid AS srow, t.rowid AS trow, t.{_FILE} AS f, "  # noqa: S608
        f"s.{q(FLAG)} AS del, (NOT s.{q(FLAG)} AND ({distinct})) AS chg "
        f"FROM src s JOIN tgt t ON {on}"
    )
    rows, inserted = con.execute(
        f"SELECT count(*) FILTER (WHERE NOT {q(FLAG)}), "  # noqa: S608
        f"count(*) FILTER (WHERE NOT {q(FLAG)} AND rowid NOT IN (SELECT srow FROM m)) "
        "FROM src"
    ).fetchone()
    updated, deleted = con.execute(
        "SELECT count(*) FILTER (WHERE chg), count(*) FILTER (WHERE del) FROM m"
    ).fetchone()
    con.execute("CREATE TABLE touched AS SELECT DISTINCT f FROM m WHERE del OR chg")
    touched = [r[0] for r in con.execute("SELECT f FROM touched ORDER BY f").fetchall()]
    if not inserted and not touched:
        return 0, 0, rows, 0

    cols = ", ".join(q(c) for c in schema.names)
    scols = ", ".join(f"s.{q(c)}" for c in schema.names)
    order = [c for c in ("symbol", "timeframe", "ts") if c in key] or key
    by = ", ".join(q(c) for c in [*tdef.partitions, *order])
    result = con.sql(
        f"SELECT {cols} FROM tgt WHERE {_FILE} IN (SELECT f FROM touched) "  # noqa: S608
        f"AND rowid NOT IN (SELECT trow FROM m WHERE del OR chg) "
        f"UNION ALL SELECT {scols} FROM src s JOIN m ON s.rowid = m.srow WHERE m.chg "
        f"UNION ALL SELECT {scols} FROM src s WHERE NOT s.{q(FLAG)} "
        f"AND s.rowid NOT IN (SELECT srow FROM m) "
        f"ORDER BY {by}"
    )
    out = FileWriter(location, tdef, schema, bounds.files, staging=work / "staging")
    adds = out.write_all(conform(result.to_arrow_reader(bounds.batch_rows), schema))
    try:
        meta = {
            "merge": "replace",
            "merge_inserted": str(inserted),
            "merge_updated": str(updated),
            "merge_deleted": str(deleted),
        }
        props = CommitProperties(
            custom_metadata={**(props.custom_metadata or {}), **meta},
            max_commit_retries=props.max_commit_retries,
        )
        commit_swap(dt, tdef, [files[i] for i in touched], adds, props)
    except BaseException:
        remove_files(location, tdef.name, [a.path for a in adds])
        raise
    return inserted, updated, rows - inserted - updated, deleted


__all__ = ["BOUNDS", "Bounds", "merge_spilled"]
