"""Verified reads of a local table's snapshot on ``pyarrow.parquet`` alone: a lazy polars scan
over exactly the snapshot's data files, each read with its page checksums verified.

``pyarrow.dataset`` imports pandas (half a second or more of a fresh process), so it is left
to what needs it (:mod:`.verified`: object stores, DuckDB, tables whose protocol asks more of
a reader than plain parquet files). Files are pruned from the Delta log before any is opened:
the predicate polars pushes into the scan is read for the conjunction of simple terms it holds
(a column compared with a constant: ``==``, ``<``, ``<=``, ``>``, ``>=``, ``is_in``,
``is_between``), and a file whose partition values or key statistics (the min/max of
``symbol`` and ``ts``, without nulls) exclude one of them is skipped. What is read is filtered
by polars itself with the whole predicate, so the rows returned never depend on the pruning;
a predicate of partition columns alone is decided once per file, from its partition values.
A file is read one row group at a time; row groups are not pruned (the lake writes one per
file). The next file is read on a second thread while one is handed over (:func:`_ahead`).
"""

from __future__ import annotations

import io
import json
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from marketlake.lake.runs import code_runs
from marketlake.lake.verified import STATS, failed

# comparison operators of polars' expression tree, and each one with its operands swapped
_SWAPPED = {"Eq": "Eq", "Lt": "Gt", "LtEq": "GtEq", "Gt": "Lt", "GtEq": "LtEq"}
_AND = ("And", "LogicalAnd")
_ROWS = "__rows"  # the placeholder column of a read that needs no stored column
READ_AHEAD = 2  # files read at once by a scan (the next on a thread of its own)
POOLED_ROWS = 65_536  # row groups of at least this many rows are decoded on arrow's threads

Term = tuple[str, str, Any]  # (column, operator or "in", constant or sorted constants)


@dataclass(frozen=True)
class DataFile:
    """One data file of a snapshot: its path under the table, its partition values (typed)
    and the [min, max] the log proves for some columns (partition values included)."""

    path: str
    partition: dict[str, Any]
    ranges: dict[str, tuple[Any, Any]]

    def may_hold(self, terms: list[Term]) -> bool:
        """False only when a term excludes every row the file can hold."""
        for col, op, value in terms:
            bounds = self.ranges.get(col)
            if bounds is None:
                continue
            try:
                if not _overlaps(bounds, op, value):
                    return False
            except TypeError:  # a constant of another type than the column's: keep the file
                continue
        return True


def _overlaps(bounds: tuple[Any, Any], op: str, value: Any) -> bool:
    lo, hi = bounds
    if op == "in":
        i = bisect_left(value, lo)
        return i < len(value) and value[i] <= hi
    if op == "Eq":
        return lo <= value <= hi
    if op == "Gt":
        return hi > value
    if op == "GtEq":
        return hi >= value
    if op == "Lt":
        return lo < value
    return lo <= value  # LtEq


def data_files(dt: DeltaTable, schema: pl.Schema) -> list[DataFile]:
    """The snapshot's data files with what the log tells of their contents (read through
    polars: ``pyarrow.table`` of the log's actions imports pandas)."""
    adds = pl.DataFrame(dt.get_add_actions(flatten=True))
    parts = list(dt.metadata().partition_columns)
    values = {}
    for p in parts:
        col = f"partition.{p}"
        raw = adds.get_column(col) if col in adds.columns else pl.repeat(None, adds.height)
        dtype = schema[p] if p in schema else pl.String
        values[p] = raw.cast(pl.String if dtype == pl.Categorical else dtype).to_list()
    stats = {}
    for c in STATS:
        cols = (f"min.{c}", f"max.{c}", f"null_count.{c}")
        if c in schema and all(k in adds.columns for k in cols):
            stats[c] = [adds.get_column(k).to_list() for k in cols]
    out = []
    for i, path in enumerate(adds.get_column("path").to_list()):
        partition = {p: values[p][i] for p in parts}
        ranges = {p: (v, v) for p, v in partition.items() if v is not None}
        for c, (lows, highs, nulls) in stats.items():
            lo, hi = lows[i], highs[i]
            if lo is None or hi is None or nulls[i] != 0:
                continue
            if isinstance(lo, str) and (len(lo) >= 32 or len(hi) >= 32):
                continue  # possibly truncated statistics
            if schema[c] == pl.Datetime:
                hi = hi + timedelta(milliseconds=1)  # statistics keep milliseconds
            ranges[c] = (lo, hi)
        out.append(DataFile(unquote(path), partition, ranges))
    return out


def terms(predicate: pl.Expr | None) -> list[Term]:
    """The terms of ``predicate``'s top-level conjunction that compare a column with a
    constant (others, and any part of an ``or``, are left out: they prune nothing)."""
    if predicate is None:
        return []
    try:
        tree = json.loads(predicate.meta.serialize(format="json"))
    except Exception:  # a tree polars cannot write as JSON: no pruning
        return []
    out: list[Term] = []
    _collect(tree, out)
    return out


def _collect(node: Any, out: list[Term]) -> None:
    if not isinstance(node, dict) or len(node) != 1:
        return
    kind, body = next(iter(node.items()))
    if kind == "BinaryExpr" and isinstance(body, dict):
        op = body.get("op")
        if op in _AND:
            _collect(body.get("left"), out)
            _collect(body.get("right"), out)
        elif op in _SWAPPED:
            for col_node, const_node, o in (
                (body.get("left"), body.get("right"), op),
                (body.get("right"), body.get("left"), _SWAPPED[op]),
            ):
                col, value = _column(col_node), _constant(const_node)
                if col is not None and value is not None and len(value) == 1:
                    out.append((col, o, value[0]))
    elif kind == "Function" and isinstance(body, dict):
        fn, args = body.get("function"), body.get("input") or []
        test = fn.get("Boolean") if isinstance(fn, dict) else None
        if not isinstance(test, dict) or not args:
            return
        col = _column(args[0])
        if col is None:
            return
        if "IsIn" in test and len(args) == 2:
            value = _constant(args[1])
            if value is not None:
                try:
                    out.append((col, "in", sorted(value)))
                except TypeError:  # constants that do not order
                    pass
        elif "IsBetween" in test and len(args) == 3:
            closed = (test["IsBetween"] or {}).get("closed")
            lo, hi = _constant(args[1]), _constant(args[2])
            if lo is not None and len(lo) == 1:
                out.append((col, "GtEq" if closed in ("Both", "Left") else "Gt", lo[0]))
            if hi is not None and len(hi) == 1:
                out.append((col, "LtEq" if closed in ("Both", "Right") else "Lt", hi[0]))


def _column(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("Column"), str) and len(node) == 1:
        return node["Column"]
    return None


def _constant(node: Any) -> list[Any] | None:
    """The non-null values of a literal (a list literal's elements), else None."""
    if not (isinstance(node, dict) and len(node) == 1 and "Literal" in node):
        return None
    try:
        expr = pl.Expr.deserialize(io.StringIO(json.dumps(node)), format="json")
        values = pl.select(expr).to_series()
    except Exception:  # a literal polars cannot read back: no pruning on it
        return None
    if isinstance(values.dtype, pl.List | pl.Array):
        values = values.explode()
    return [v for v in values.to_list() if v is not None]


def schema_of(dt: DeltaTable, dictionary: tuple[str, ...] = ()) -> pl.Schema:
    """The snapshot's columns as polars types, ``dictionary`` ones as Categorical."""
    arrow = pa.schema(dt.schema().to_arrow())
    schema = pl.from_arrow(pa.Table.from_batches([], schema=arrow)).schema
    return pl.Schema({c: pl.Categorical() if c in dictionary else t for c, t in schema.items()})


def scan(root: Path, name: str, dt: DeltaTable, dictionary: tuple[str, ...] = ()) -> pl.LazyFrame:
    """A lazy polars scan of the snapshot ``dt`` of the table under ``root`` that verifies
    page checksums as it reads (a damaged file is a :class:`LakeCorruptError` naming it); the
    string columns ``dictionary`` read as Categorical (their values decoded once per page,
    not once per row)."""
    from polars.io.plugins import register_io_source

    schema = schema_of(dt, dictionary)
    files = data_files(dt, schema)

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, _batch
    ) -> Iterator[pl.DataFrame]:
        return _frames(root, name, files, schema, dictionary, with_columns, predicate, n_rows)

    return register_io_source(source, schema=schema)


def _frames(
    root: Path,
    name: str,
    files: list[DataFile],
    schema: pl.Schema,
    dictionary: tuple[str, ...],
    with_columns: list[str] | None,
    predicate: pl.Expr | None,
    n_rows: int | None,
) -> Iterator[pl.DataFrame]:
    """What polars asks of the scan: the ``with_columns`` of the rows ``predicate`` keeps
    (at most ``n_rows``), frame by frame, from the files the predicate's terms may hold."""
    wanted = list(schema) if with_columns is None else list(with_columns)
    need = list(wanted)
    if predicate is not None:
        need += [c for c in predicate.meta.root_names() if c not in need]
    found = terms(predicate)
    on_partitions = predicate is not None and set(predicate.meta.root_names()) <= set(
        files[0].partition if files else ()
    )

    def frames_of(f: DataFile) -> list[pl.DataFrame]:
        # a predicate of partition columns alone holds for every row of a file or none
        keep = predicate
        if on_partitions and _holds(predicate, f, schema):
            keep = None
        out = []
        for frame in read_file(root, name, f, need, schema, dictionary):
            if keep is not None:
                frame = frame.filter(keep)
            out.append(frame.select(wanted))
        return out

    left = n_rows
    sent = False
    for got in _ahead(frames_of, [f for f in files if f.may_hold(found)]):
        for frame in got:
            if left is not None:
                frame = frame.head(left)
                left -= frame.height
            if frame.height:
                sent = True
                yield frame
        if left is not None and left <= 0:
            break
    if not sent:
        yield pl.DataFrame(schema={c: schema[c] for c in wanted})


def _holds(predicate: pl.Expr, f: DataFile, schema: pl.Schema) -> bool:
    """Whether ``predicate`` (of partition columns only) is true for ``f``'s partition values,
    so that its rows need no filtering (a full read of a timeframe filtered row by row on a
    value every row shares cost a tenth of the read)."""
    try:
        values = pl.DataFrame(
            {c: [f.partition[c]] for c in predicate.meta.root_names()},
            schema={
                c: pl.String if schema[c] == pl.Categorical else schema[c]
                for c in predicate.meta.root_names()
            },
        )
        return bool(values.select(predicate.fill_null(False)).item())
    except Exception:  # noqa: BLE001 -- cannot tell: filter the rows as before
        return False


def _ahead(read: Callable[[DataFile], list[pl.DataFrame]], files: list[DataFile]):
    """``read(f)`` of each file in order, the next file read on a second thread while this
    one is (pyarrow's decoding and checksums, and polars, release the GIL: a read of many
    files takes about half the wall time). At most :data:`READ_AHEAD` files are read ahead
    of the consumer, and none when it stops early."""
    if len(files) < 2:
        yield from map(read, files)
        return
    with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
        pending: deque[Future] = deque()
        try:
            for f in files:
                pending.append(pool.submit(read, f))
                if len(pending) > READ_AHEAD:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def read_file(
    root: Path,
    name: str,
    f: DataFile,
    columns: list[str],
    schema: pl.Schema,
    dictionary: tuple[str, ...] = (),
) -> Iterator[pl.DataFrame]:
    """The ``columns`` of data file ``f`` in the table's types, one frame per row group, page
    checksums verified: partition columns from its values, columns the file predates as
    nulls."""
    codes = [c for c in dictionary if c not in f.partition]
    try:
        try:
            pf = pq.ParquetFile(
                root / f.path, page_checksum_verification=True, read_dictionary=codes or None
            )
        except KeyError:  # a dictionary column the file predates
            pf = pq.ParquetFile(root / f.path, page_checksum_verification=True)
            codes = [c for c in codes if c in pf.schema_arrow.names]
            pf = pq.ParquetFile(
                root / f.path, page_checksum_verification=True, read_dictionary=codes or None
            )
        have = set(pf.schema_arrow.names)
        stored = [c for c in columns if c in have and c not in f.partition]
    except (OSError, pa.ArrowException) as exc:
        raise failed(name, f.path, exc) from exc
    for group in range(pf.num_row_groups):
        try:
            rows = pf.metadata.row_group(group).num_rows
            if stored:
                # a small row group on this thread: handing its columns to arrow's pool
                # costs more than decoding them (a 742-row file of 40 columns: 1.7 against
                # 2.2 ms)
                table = pf.read_row_group(group, columns=stored, use_threads=rows >= POOLED_ROWS)
                frame = pl.from_arrow(table)
            else:  # partition columns or nulls only: the rows, with nothing read
                frame = pl.select(pl.repeat(None, rows, dtype=pl.Null).alias(_ROWS))
        except (OSError, pa.ArrowException) as exc:
            raise failed(name, f.path, exc) from exc
        assert isinstance(frame, pl.DataFrame)
        yield frame.with_columns(_conformed(frame, f, columns, schema)).select(columns)


def distinct(
    root: Path, name: str, dt: DeltaTable, column: str, by: str
) -> dict[Any, list[str]] | None:
    """The distinct values of the text column ``column`` in the rows of each value of the
    partition column ``by`` (sorted), page checksums verified; None when a value is null (the
    caller's query says what then). Each file's column is read as a dictionary and listed run
    by run: a lake file is sorted by its key, so its values come in a few thousand runs, where
    a query decodes and compares every row (the series of 5M bars: 18 against 73 ms)."""
    schema = schema_of(dt)
    files = data_files(dt, schema)
    if any(by not in f.partition for f in files):
        return None

    def values(f: DataFile) -> set[str] | None:
        try:
            pf = pq.ParquetFile(
                root / f.path, page_checksum_verification=True, read_dictionary=[column]
            )
            found: set[str] = set()
            for group in range(pf.num_row_groups):
                rows = pf.metadata.row_group(group).num_rows
                read = pf.read_row_group(group, columns=[column], use_threads=rows >= POOLED_ROWS)
                for chunk in read.column(0).chunks:
                    if chunk.null_count:
                        return None
                    codes = _codes(chunk)
                    if not len(codes):
                        continue
                    names = chunk.dictionary.to_pylist()
                    found.update(names[i] for i in set(codes[code_runs(codes)[0]].tolist()))
            return found
        except (OSError, pa.ArrowException) as exc:
            raise failed(name, f.path, exc) from exc

    out: dict[Any, set[str]] = {}
    for f, got in zip(files, _ahead(values, files), strict=True):
        if got is None:
            return None
        out.setdefault(f.partition[by], set()).update(got)
    return {k: sorted(v) for k, v in out.items()}


def _codes(chunk: pa.DictionaryArray) -> np.ndarray:
    """A dictionary array's indices as numpy, zero-copy (arrow's ``to_numpy`` imports pandas
    on first use: a third of a second of a fresh process)."""
    indices = chunk.indices
    dtype = np.dtype(f"int{indices.type.bit_width}")
    data = np.frombuffer(indices.buffers()[1], dtype=dtype)
    return data[indices.offset : indices.offset + len(indices)]


def _conformed(frame: pl.DataFrame, f: DataFile, columns: list[str], schema: pl.Schema):
    """Expressions bringing ``frame`` (read from ``f``) to the table's ``columns``."""
    # the frame's schema once: polars builds it anew on each access (about 50 us; a
    # 40-column file read spent 1.7 ms here, more than reading it)
    have = frame.schema
    exprs = []
    for c in columns:
        dtype = schema[c]
        if c in f.partition:
            base = pl.String if dtype == pl.Categorical else dtype
            exprs.append(pl.lit(f.partition[c], dtype=base).cast(dtype).alias(c))
        elif c not in have:
            exprs.append(pl.lit(None, dtype=dtype).alias(c))
        elif have[c] != dtype:
            exprs.append(pl.col(c).cast(dtype))
    return exprs
