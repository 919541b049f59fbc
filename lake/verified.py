"""Reads that verify parquet page checksums: a damaged page is an error naming the table and
the file, never wrong numbers.

polars' and DuckDB's parquet readers do not check page CRCs, pyarrow's does
(``page_checksum_verification``). So the lake's reads go through pyarrow over exactly the
snapshot's files with verification on: a local table of plain parquet files is scanned with
``pyarrow.parquet`` alone (:mod:`.local_reads`); otherwise, and for DuckDB, a pyarrow dataset
is built (``pyarrow.dataset`` is imported only then: it imports pandas), handed to polars
(projection and predicates pushed down to pyarrow) or registered with DuckDB. Files written
without checksums (none of ours; older files) are read unchecked, as pyarrow does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from marketlake.errors import LakeCorruptError, LakeError
from marketlake.lake._errors import _DAMAGE, first_line
from marketlake.lake.location import LakeLocation, storage_errors
from marketlake.lake.writes import CHECKSUM_MARK

if TYPE_CHECKING:
    import pyarrow.dataset as pds

STATS = ("symbol", "ts")  # the key columns reads filter on
CODES = pa.int32()  # the index type of string columns read as dictionaries


def dataset(
    location: LakeLocation, name: str, dt: DeltaTable, dictionary: tuple[str, ...] = ()
) -> pds.FileSystemDataset:
    """The snapshot ``dt`` of table ``name`` as a pyarrow dataset that verifies page CRCs;
    the string columns ``dictionary`` are read as dictionaries (their values decoded once per
    page, not once per row: a symbol column read this way costs a third).

    Each file's guarantee (what lets a filter skip it unopened) is built here from the log:
    its partition values, and the min/max of key columns its statistics hold without nulls.
    (delta-rs' own dataset turns a missing statistic into ``>= null``, which makes any filter
    on that column skip the file.) A local table's fragments are made from the log's paths
    directly: delta-rs' dataset would build partition expressions for every file only for
    them to be replaced here."""
    import pyarrow.dataset as pds
    import pyarrow.fs as pafs

    adds = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    if location.is_local and readable(dt):  # pyarrow's own file system: no Python reads
        fs = pafs.SubTreeFileSystem(str(location.path / name), pafs.LocalFileSystem())
        schema = pa.schema(dt.schema().to_arrow())
        paths = [unquote(f["path"]) for f in adds]
    else:
        base = dt.to_pyarrow_dataset()
        schema, fs = base.schema, base.filesystem
        paths = [f.path for f in base.get_fragments()]
    guarantees = _guarantees(adds, dt.metadata().partition_columns, schema)
    options = pds.ParquetFragmentScanOptions(pre_buffer=True, page_checksum_verification=True)
    fmt = pds.ParquetFileFormat(
        read_options=pds.ParquetReadOptions(dictionary_columns=set(dictionary)),
        default_fragment_scan_options=options,
    )
    for c in dictionary:
        i = schema.get_field_index(c)
        schema = schema.set(i, schema.field(i).with_type(pa.dictionary(CODES, pa.string())))
    fragments = [
        fmt.make_fragment(
            p,
            filesystem=fs,
            partition_expression=guarantees.get(unquote(p.lstrip("/")), pds.scalar(True)),
        )
        for p in paths
    ]
    return pds.FileSystemDataset(fragments, schema, fmt, fs)


def readable(dt: DeltaTable) -> bool:
    """Whether the table's protocol asks nothing of a reader beyond plain parquet files (else
    delta-rs' own dataset is built, which refuses what it cannot read)."""
    proto = dt.protocol()
    features = set(proto.reader_features or ())
    return proto.min_reader_version <= 3 and not features & {"columnMapping", "deletionVectors"}


def _guarantees(
    adds: list[dict[str, Any]], parts: list[str], schema: pa.Schema
) -> dict[str, pds.Expression]:
    import pyarrow.dataset as pds

    out: dict[str, pds.Expression] = {}
    for f in adds:
        terms = []
        for p in parts:
            v = f.get(f"partition.{p}")
            field = pds.field(p)
            terms.append(
                field.is_null() if v is None else field == pa.scalar(v, schema.field(p).type)
            )
        for c in STATS:
            lo, hi, nulls = f.get(f"min.{c}"), f.get(f"max.{c}"), f.get(f"null_count.{c}")
            if c not in schema.names or lo is None or hi is None or nulls != 0:
                continue
            if isinstance(lo, str) and (len(lo) >= 32 or len(hi) >= 32):
                continue  # possibly truncated statistics
            typ = schema.field(c).type
            if pa.types.is_timestamp(typ):
                hi = hi + timedelta(milliseconds=1)  # statistics keep milliseconds
            terms.append(
                (pds.field(c) >= pa.scalar(lo, typ)) & (pds.field(c) <= pa.scalar(hi, typ))
            )
        expr = pds.scalar(True)
        for t in terms:
            expr = expr & t
        out[unquote(f["path"])] = expr
    return out


def failed(name: str, path: str, exc: BaseException) -> LakeError:
    """The error for ``exc`` raised reading data file ``path`` of table ``name``: damage
    (checksum, truncation...) is a :class:`LakeCorruptError`, anything else a LakeError."""
    if _DAMAGE.search(str(exc)):
        return damaged(name, path, exc)
    rel = unquote(path.lstrip("/"))
    return LakeError(f"read lake table {name} failed (data file {rel}): {first_line(exc)}")


def damaged(name: str, path: str, exc: BaseException) -> LakeCorruptError:
    rel = unquote(path.lstrip("/"))
    return LakeCorruptError(
        f"lake table {name}: data file {rel} is damaged: {first_line(exc)}; "
        "run `marketlake maintain --verify`",
        table=name,
        file=rel,
    )


class Checked:
    """A dataset whose scans go file by file, so a damaged page names its file; what
    ``polars.scan_pyarrow_dataset`` and DuckDB call (``schema``, ``to_batches``, ``scanner``)
    is all it offers."""

    def __init__(self, name: str, ds: pds.FileSystemDataset) -> None:
        self.name, self.ds, self.schema = name, ds, ds.schema

    def to_batches(
        self, columns: list[str] | None = None, filter: Any = None, **kw: Any
    ) -> Iterator[pa.RecordBatch]:
        # fragments carry their partition values and key statistics as guarantees: files
        # the filter excludes are never opened
        for frag in self.ds.get_fragments(filter=filter):
            sent = False
            try:
                try:
                    for batch in frag.to_batches(
                        schema=self.schema, columns=columns, filter=filter, **kw
                    ):
                        sent = True
                        yield batch
                except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    if filter is None or sent:
                        raise
                    # a file whose physical types differ from the table's (delta-rs writes
                    # strings as string_view): filter after reading it in the table's types
                    table = frag.to_table(schema=self.schema).filter(filter)
                    yield from (table if columns is None else table.select(columns)).to_batches()
            except (OSError, pa.ArrowException) as exc:
                raise failed(self.name, frag.path, exc) from exc

    def to_table(self, **kw: Any) -> pa.Table:
        return pa.Table.from_batches(list(self.to_batches(**kw)), schema=_projected(self, kw))

    def count_rows(self) -> int:
        return self.ds.count_rows()


def _projected(ds: Checked, kw: dict[str, Any]) -> pa.Schema:
    cols = kw.get("columns")
    return ds.schema if cols is None else pa.schema([ds.schema.field(c) for c in cols])


def find_damage(location: LakeLocation, name: str, dt: DeltaTable) -> LakeCorruptError | None:
    """The error naming the first data file of the snapshot whose pages fail their checksums
    (or that cannot be read at all), else None: every file read once."""
    for frag in dataset(location, name, dt).get_fragments():
        try:
            for _ in frag.to_batches(batch_size=1 << 20):
                pass
        except (OSError, pa.ArrowException) as exc:
            return damaged(name, frag.path, exc)  # verify: anything unreadable is damage
    return None


def scan(
    location: LakeLocation, name: str, dt: DeltaTable, dictionary: tuple[str, ...] = ()
) -> pl.LazyFrame:
    """A lazy polars scan of the snapshot that verifies page CRCs as it reads (the string
    columns ``dictionary`` as Categorical: see :func:`dataset`): with ``pyarrow.parquet``
    alone for a local table of plain parquet files, else through a pyarrow dataset."""
    if location.is_local and readable(dt):
        from marketlake.lake import local_reads

        return local_reads.scan(location.path / name, name, dt, dictionary)
    checked = Checked(name, dataset(location, name, dt, dictionary))
    return pl.scan_pyarrow_dataset(checked, batch_size=1 << 20)  # type: ignore[arg-type]


__all__ = [
    "Checked",
    "dataset",
    "damaged",
    "failed",
    "find_damage",
    "open_file",
    "readable",
    "scan",
]


MISSING = "file is missing"


def verify_file(location: LakeLocation, key: str) -> dict[str, Any] | None:
    """Read every row group of the data file ``key`` with page checksums verified: None when
    it reads, else the failing row group and reason (a missing file says so)."""
    import pyarrow.parquet as pq

    group: int | None = None
    try:
        source = location.path / key if location.is_local else pa.BufferReader(location.get(key))
        pf = pq.ParquetFile(source, page_checksum_verification=True)
        for group in range(pf.num_row_groups):
            pf.read_row_group(group)
    except FileNotFoundError:
        return {"row_group": None, "reason": MISSING}
    except (OSError, pa.ArrowException, ValueError) as exc:
        return {"row_group": group, "reason": first_line(exc)}
    return None


def open_file(location: LakeLocation, key: str):
    """The data file ``key`` as a ``pyarrow.parquet.ParquetFile`` whose reads verify page
    checksums; on an object store it reads ranges (a file is never held whole)."""
    import pyarrow.parquet as pq

    if location.is_local:
        return pq.ParquetFile(location.path / key, page_checksum_verification=True)
    import obstore

    with storage_errors("read", key):
        reader = obstore.open_reader(location.store(), key)
    source = pa.PythonFile(_Ranged(reader), mode="r")
    return pq.ParquetFile(source, page_checksum_verification=True)


class _Ranged:
    """obstore's ranged reader with the file attributes pyarrow asks for."""

    closed = False

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def read(self, n: int | None = -1) -> bytes:
        return bytes(self._reader.read() if n is None or n < 0 else self._reader.read(n))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._reader.seek(offset, whence)

    def tell(self) -> int:
        return self._reader.tell()

    def close(self) -> None:
        self._reader.close()
        self.closed = True


def checksummed(location: LakeLocation, key: str) -> bool:
    """Whether the data file ``key`` carries the footer mark of a file written with page
    checksums (:data:`~marketlake.lake.writes.CHECKSUM_MARK`); only the footer is read."""
    import pyarrow.parquet as pq

    if location.is_local:
        meta = pq.read_metadata(location.path / key)
    else:  # the file's tail only: its footer and the footer's length
        import obstore

        with storage_errors("read", key):
            store = location.store()
            size = int(obstore.head(store, key)["size"])
            tail = bytes(obstore.get_range(store, key, start=max(0, size - 65536), end=size))
            need = int.from_bytes(tail[-8:-4], "little") + 8 if len(tail) >= 8 else 8
            if need > len(tail) and need <= size:
                tail = bytes(obstore.get_range(store, key, start=size - need, end=size))
        meta = pq.read_metadata(pa.BufferReader(tail[-need:]))
    kv = meta.metadata or {}
    return all(kv.get(k.encode()) == v.encode() for k, v in CHECKSUM_MARK.items())


def check_versions(location: LakeLocation, name: str, first: int, last: int | None) -> None:
    """Verify the page checksums of every data and change file that commits ``first`` ..
    ``last`` (inclusive; None = the latest) added, before the change feed reads them:
    delta-rs reads those files without checking CRCs, so a damaged page would reach a
    consumer as wrong numbers. Raises :class:`LakeCorruptError` naming the first damaged
    file; a file or commit missing from the log is left to the feed itself to report."""
    import json

    log = f"{name}/_delta_log"
    commits = sorted(k for k in location.list(log) if k.endswith(".json") and "/" not in k)
    for commit in commits:
        version = int(commit.split(".", 1)[0])
        if version < first or (last is not None and version > last):
            continue
        for line in location.get(f"{log}/{commit}").decode().splitlines():
            action = json.loads(line) if line.strip() else {}
            for kind in ("add", "cdc"):
                if kind not in action:
                    continue
                rel = unquote(action[kind]["path"])
                problem = verify_file(location, f"{name}/{rel}")
                if problem is not None and problem["reason"] != MISSING:
                    raise damaged(name, rel, RuntimeError(problem["reason"]))
