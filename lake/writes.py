"""Appends: parquet files written by us (with page checksums), then one Delta commit.

Every commit here is pinned to the snapshot the caller read (``max_commit_retries=0``): if
another writer committed a version in between, delta-rs refuses the commit (a blind append is
never a conflict to Delta, so it would otherwise land beside the other writer's rows) and
:class:`CommitConflict` tells the caller to read again. Files of a refused commit are removed;
after any other error a commit may still have landed (delta-rs runs post-commit hooks, an
interrupt can arrive after the log entry is written), so :func:`remove_unless_committed`
keeps the files the table's latest snapshot references.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import accumulate
from typing import Any
from urllib.parse import unquote

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction

from marketlake.errors import LakeError
from marketlake.lake._errors import CommitConflict, lake_errors
from marketlake.lake.frames import STATS_COLUMNS, file_stats, to_polars, typed
from marketlake.lake.location import LakeLocation
from marketlake.lake.tables import (
    TABLES,
    TableDef,
    period_of_code,
    single_timeframe,
    with_period,
    with_period_code,
)

TABLE_CONFIG = {"delta.enableChangeDataFeed": "true"}
_SAFE_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# every parquet file we write carries page CRCs, so damage is detected, not read as prices
PARQUET_OPTIONS = {
    "compression": "zstd",
    "write_page_checksum": True,
    "write_statistics": True,
    # values handed to the column writers 64k at a time, not 1k: the same pages and files,
    # 3-7% less CPU to encode them (fewer calls through the level and value encoders)
    "write_batch_size": 65536,
}
# footer key-value metadata of every file written with page CRCs: ``maintain`` rewrites any
# live file without it (one written by another tool, or by delta-rs' own writer)
CHECKSUM_MARK = {"marketlake.page_crc": "1"}


def literal(value: str) -> str:
    """A partition value as a SQL literal; only values from fixed vocabularies pass."""
    if not _SAFE_PARTITION_VALUE.match(value):
        raise LakeError(f"refusing unsafe partition value {value!r}")
    return "'" + value + "'"


def commit_properties(
    run_id: str, stage: str, extra: dict[str, str] | None = None, *, pinned: bool = True
) -> CommitProperties:
    """Commit metadata (run id, stage, extras); ``pinned``: fail rather than commit on top of
    versions this write did not read."""
    return CommitProperties(
        custom_metadata={"run_id": run_id, "stage": stage, **(extra or {})},
        max_commit_retries=0 if pinned else None,
    )


# rows of a frame written as new files gathered into partition order at a time
GATHER_ROWS = 250_000
Part = tuple[tuple, Callable[[], pl.DataFrame]]
Span = tuple[tuple, int, int]  # a partition's values, its first row and its number of rows


def _parts(
    tdef: TableDef, frame: pl.DataFrame, leave: Collection[str] = ()
) -> tuple[pl.DataFrame, list[Span], pl.Series | None]:
    """The frame's data columns in the table's schema, without ``leave`` (columns of one
    value: nothing to gather), each partition's values and rows, and the row numbers that
    put the rows in partition order (None: they already are; see :func:`grouping`)."""
    parts = list(tdef.partitions)
    if "period" in parts and "period" not in frame.columns:
        # partition on an integer code; the period string exists only in the paths
        frame = with_period_code(frame).with_columns(pl.lit("", pl.String).alias("period"))
        data = to_polars(tdef, frame).drop(leave).with_columns(frame.get_column("_pcode"))
        keys = [p if p != "period" else "_pcode" for p in parts]
        one = single_timeframe(data) if "timeframe" in keys else None
        if one is not None:  # one timeframe: partition on the integer code only
            data = data.drop(parts)
            order, spans = grouping(data, ["_pcode"])
            return data, [((one, period_of_code(k[0])), a, n) for k, a, n in spans], order
        data = data.drop("period")
        order, spans = grouping(data, keys)
        code = keys.index("_pcode")
        named = [
            ((*key[:code], period_of_code(key[code]), *key[code + 1 :]), a, n)
            for key, a, n in spans
        ]
        return data, named, order
    data = to_polars(tdef, frame).drop(leave)
    order, spans = grouping(data, parts)
    return data, spans, order


def _groups(data: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Per value of ``keys`` (in order of first appearance): the first and last row, the
    number of rows and their row numbers (in order)."""
    return (
        data.lazy()
        .select(keys)
        .with_row_index("_row")
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("_row").first().alias("_first"),
            pl.col("_row").last().alias("_last"),
            pl.len().alias("_n"),
            pl.col("_row"),
        )
        .collect()
    )


def split_rows(data: pl.DataFrame, keys: list[str]) -> list[Part]:
    """``data``'s rows per value of ``keys`` (in order of first appearance, rows in order),
    each as a function returning them."""
    if data.is_empty():
        return []
    if not keys:
        return [((), lambda: data)]
    groups = _groups(data, keys)
    if groups.height == 1:
        return [(tuple(groups.row(0)[: len(keys)]), lambda: data)]
    rows = groups.get_column("_row")
    out: list[Part] = []
    for i, (*key, first, last, n) in enumerate(groups.drop("_row").iter_rows()):
        if last - first + 1 == n:  # contiguous: a zero-copy slice
            take = partial(data.slice, first, n)
        else:
            take = partial(data.__getitem__, rows[i])
        out.append((tuple(key), take))
    return out


def grouping(data: pl.DataFrame, keys: list[str]) -> tuple[pl.Series | None, list[Span]]:
    """The row numbers of ``data`` that put the rows of each value of ``keys`` together
    (values in order of first appearance, rows in order within each; None when they already
    are), and each value's first row and number of rows in that order."""
    if data.is_empty():
        return None, []
    if not keys:
        return None, [((), 0, data.height)]
    groups = _groups(data, keys)
    counts = groups.get_column("_n").to_list()
    offsets = [0, *accumulate(counts[:-1])]
    spans = [
        (tuple(key), a, n)
        for key, a, n in zip(groups.select(keys).iter_rows(), offsets, counts, strict=True)
    ]
    firsts, lasts = groups.get_column("_first").to_list(), groups.get_column("_last").to_list()
    together = firsts == offsets and all(
        b - a + 1 == n for a, b, n in zip(firsts, lasts, counts, strict=True)
    )
    return (None if together else groups.get_column("_row").explode()), spans


def _runs(spans: list[Span], rows: int) -> list[list[Span]]:
    """``spans`` (consecutive) in runs of about ``rows`` rows, a span never split."""
    runs: list[list[Span]] = []
    size = 0
    for span in spans:
        if not runs or size >= rows:
            runs.append([])
            size = 0
        runs[-1].append(span)
        size += span[2]
    return runs


def write_files(
    location: LakeLocation, tdef: TableDef, frame: pl.DataFrame
) -> tuple[int, list[AddAction]]:
    """Write ``frame`` as new parquet files under the table at ``location``; returns the rows
    written and the files' add actions. The files stay invisible until a commit names them
    (a crash before it leaves only files ``maintain`` removes). Usable in any process that
    can reach the storage: distributed workers write here and return the add actions.

    Rows already in partition order are made arrow once, each file a zero-copy slice. Rows
    of many small partitions (fewer than ``GATHER_ROWS / 2`` a partition) are gathered into
    partition order a run of partitions at a time (up to ``GATHER_ROWS`` rows, an eighth of
    the frame at most), each run made arrow once and its files zero-copy slices of it, the
    pool's two threads on two runs: a bulk load's batch of hourly bars spans ten years of
    monthly partitions, and converting each of its 121 parts on its own cost a third as
    much again as encoding them, while gathering the whole batch at once faulted in fresh
    pages for a second copy of it (a 4M-row batch: 106k page faults against 35k, and about
    a fifth less peak memory in a ten-year hourly sync). Rows of a few large partitions (a
    year of daily bars each) are gathered at once: runs of them gained nothing and
    balanced the two threads worse (a 10M-row daily import 2-4% slower). Columns
    holding one value on every row (a run id, a provider, a stamp, a flag, a column no row
    has) are left out of the gather and made again for the files: with the partition
    columns they were half of its cost."""
    cols = [c for c in tdef.schema.names if c not in tdef.partitions]
    schema = pa.schema([tdef.schema.field(c) for c in cols])
    written: list[str] = []
    # a column with one value in the whole frame has it in every part: asked once
    # (no floats: their min and max do not tell -0.0 from 0.0)
    have = frame.schema  # once: polars builds it anew on each access
    kinds = [c for c in cols if c in have and _may_hold_one_value(have[c])]
    one = _one_values(frame, kinds) if frame.height >= 1024 else {}
    text = {c for c in one if have[c] == pl.String and schema.field(c).type == pa.string()}
    same = {c: v for c, v in one.items() if c in text}
    # asked by queries, not of the columns: a column made from a literal stays one value
    firsts = frame.select(pl.col(c).head(1) for c in one if c not in text)
    fill = {c: firsts.get_column(c) for c in firsts.columns}
    n = frame.height
    nulls_in = frame.select(pl.col(c).null_count() for c in cols if c in frame)
    nulls = [c for c in cols if n and (nulls_in.get_column(c)[0] if c in frame else n) == n]
    data, parts, order = _parts(tdef, frame, [*one, *nulls])
    body = data.select(c for c in cols if c in data.columns)

    def write(part: Span, table: pa.Table) -> AddAction:
        values, rel = partition_file(tdef.name, tdef.partitions, part[0])
        written.append(rel)
        size, meta = write_file(location, tdef.name, rel, table)
        return AddAction(rel, size, values, int(time.time() * 1000), True, file_stats(meta, table))

    def write_run(run: list[Span]) -> list[AddAction]:
        """The files of ``run``'s partitions, from one gather of their rows."""
        start = run[0][1]
        rows = body[order.slice(start, sum(n for _, _, n in run))]
        table = to_file_arrow(rows, schema, same, fill)
        return [write(part, table.slice(part[1] - start, part[2])) for part in run]

    runs = []  # of many small partitions' scattered rows (a run's rows at most an eighth)
    if order is not None and data.height < len(parts) * GATHER_ROWS // 2:
        runs = _runs(parts, min(GATHER_ROWS, data.height // 8))
    try:
        with lake_errors("append to", tdef.name):
            with ThreadPoolExecutor(max_workers=2) as pool:  # pyarrow releases the GIL
                if runs:
                    adds = [a for run in pool.map(write_run, runs) for a in run]
                elif not parts:
                    adds = []
                else:  # one table; each file a slice of it
                    whole = to_file_arrow(
                        body if order is None else body[order], schema, same, fill
                    )
                    adds = list(pool.map(lambda p: write(p, whole.slice(p[1], p[2])), parts))
    except BaseException:
        remove_files(location, tdef.name, written)
        raise
    return data.height, adds


def write_partitioned(
    location: LakeLocation, tdef: TableDef, frame: pl.DataFrame, columns: dict[str, pa.DataType]
) -> list[AddAction]:
    """Write ``frame`` (its partition columns as strings included) as one new file per
    partition, with the data columns typed by ``columns``; returns their add actions. On an
    error the files written so far are deleted."""
    parts = list(tdef.partitions)
    written: list[str] = []

    def one(item: tuple[tuple, pl.DataFrame]) -> AddAction:
        key, part = item
        values, rel = partition_file(tdef.name, parts, key)
        body = part.drop(parts)
        schema = pa.schema([(c, columns[c]) for c in body.columns])
        written.append(rel)
        table = _in_file_types(body.to_arrow(compat_level=pl.CompatLevel.oldest()), schema)
        size, meta = write_file(location, tdef.name, rel, table)
        return AddAction(rel, size, values, int(time.time() * 1000), True, file_stats(meta, table))

    if frame.is_empty():
        return []
    items = (
        frame.partition_by(parts, as_dict=True, maintain_order=True).items()
        if parts
        else [((), frame)]
    )
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:  # pyarrow's writer releases the GIL
            return list(pool.map(one, items))
    except BaseException:
        remove_files(location, tdef.name, written)
        raise


def to_file_arrow(
    body: pl.DataFrame,
    schema: pa.Schema,
    same: dict[str, Any] | None = None,
    fill: dict[str, pl.Series] | None = None,
) -> pa.Table:
    """``body`` as arrow in ``schema``, except that a text column holding one value on every
    row (a run id, a provider) comes as a one-entry dictionary: nothing is copied per row,
    and the writer stores the entry once and a run of zeros, as it would have after hashing
    every row. Such a file is written without the arrow schema in its footer, so every
    reader sees the column as the text it is (parquet's own types say so). ``same``: those
    columns and values when the caller knows them (the frame ``body`` is a part of); they
    may be left out of ``body``, as may the columns of ``fill`` (a one-row series each,
    its value on every row) and columns that are null on every row."""
    fill = fill or {}
    left_out = [f.name for f in schema if f.name not in body.columns]
    if same is None:
        text = [c for c in body.columns if pa.types.is_string(schema.field(c).type)]
        same = _one_values(body, text) if body.height >= 1024 else {}
    elif body.height < 1024:  # a small part: as text (asking would cost more than it saves)
        same = {c: v for c, v in same.items() if c in left_out}
    else:
        same = {c: v for c, v in same.items() if c in schema.names}
    coded = {} if body.height < 1024 else _run_coded(body, schema, same)
    rest = body.drop([c for c in (*same, *coded) if c in body.columns])
    rest = rest.to_arrow(compat_level=pl.CompatLevel.oldest())
    # arrays made by polars: pa.array on Python or numpy values imports pandas (0.3 s of a
    # fresh process) to check whether they are pandas objects
    zeros = _zeros(body.height)
    arrays, fields = [], []
    for f in schema:
        if f.name in same:
            entry = pl.Series(f.name, [same[f.name]], pl.String).to_arrow()
            arrays.append(pa.DictionaryArray.from_arrays(zeros, _in_file_type(entry, f.type)))
        elif f.name in coded:
            arrays.append(coded[f.name])
        elif f.name in rest.column_names:
            arrays.append(_in_file_type(rest.column(f.name), f.type))
        elif f.name in fill:
            every = fill[f.name].new_from_index(0, body.height)
            every = every.to_arrow(compat_level=pl.CompatLevel.oldest())
            arrays.append(_in_file_type(every, f.type))
        else:
            arrays.append(pa.nulls(body.height, f.type))
        fields.append(pa.field(f.name, arrays[-1].type, f.nullable))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# a text column goes as a dictionary built from its runs when they average this many rows
RUN_ROWS = 16


def _run_coded(body: pl.DataFrame, schema: pa.Schema, same: dict[str, Any]) -> dict[str, Any]:
    """The text columns of ``body`` (but ``same``'s) whose rows come in runs of equal values
    (bars series after series: their symbols), each as a dictionary array built from the
    runs: one code per run repeated, each value once in the dictionary. The writer then
    stores the codes instead of hashing and comparing the text of every row (a year of
    daily bars of 800 symbols: 17% less CPU to convert and write the file)."""
    have = body.schema
    text = [
        c
        for c in have
        if have[c] == pl.String and c not in same and pa.types.is_string(schema.field(c).type)
    ]
    if not text:
        return {}
    n = body.height
    counts = body.select(
        e
        for c in text
        for e in (pl.col(c).null_count().alias(f"n{c}"), pl.col(c).rle_id().max().alias(c))
    ).row(0, named=True)
    out = {}
    for c in text:
        if counts[f"n{c}"] or (counts[c] + 1) * RUN_ROWS > n:  # a null, or runs too short
            continue
        runs = body.select(pl.col(c).rle()).unnest(c)
        names = runs.get_column("value")
        values = names.unique(maintain_order=True)
        code_of_run = names.cast(pl.Enum(values)).to_physical().cast(pl.Int32).to_numpy()
        codes = np.repeat(code_of_run, runs.get_column("len").to_numpy())
        indices = pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(codes)])
        entries = values.to_arrow(compat_level=pl.CompatLevel.oldest())
        out[c] = pa.DictionaryArray.from_arrays(
            indices, _in_file_type(entries, schema.field(c).type)
        )
    return out


def _in_file_types(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table``'s columns as a data file stores those of ``schema`` (:func:`_in_file_type`)."""
    columns = [_in_file_type(table.column(f.name), f.type) for f in schema]
    fields = [pa.field(f.name, c.type, f.nullable) for f, c in zip(schema, columns, strict=True)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _plain_text(f: pa.Field) -> pa.Field:
    return f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f


def _in_file_type(column: Any, file_type: pa.DataType) -> Any:
    """``column`` (an arrow array or chunked array) as a data file stores ``file_type``: as
    it is when it has that type or is text with 64-bit offsets where ``file_type`` is text
    (parquet stores both alike, and a data file carries no arrow schema), else cast. Casting
    imports pyarrow.compute: about 0.3 s of a process's first write, a tenth of a nightly."""
    if column.type == file_type or (
        pa.types.is_large_string(column.type) and pa.types.is_string(file_type)
    ):
        return column
    return column.cast(file_type)


_ZEROS: list[pa.Array] = []
_ZEROS_KEPT = 1 << 20


def _zeros(n: int) -> pa.Array:
    """``n`` int32 zeros (a slice of ones kept for files up to a million rows): every file's
    one-value dictionaries share them."""
    if n > _ZEROS_KEPT:
        return pl.zeros(n, pl.Int32, eager=True).to_arrow()
    if not _ZEROS:
        _ZEROS.append(pl.zeros(_ZEROS_KEPT, pl.Int32, eager=True).to_arrow())
    return _ZEROS[0].slice(0, n)


def _one_values(frame: pl.DataFrame, columns: list[str]) -> dict[str, Any]:
    """Of ``columns``, those holding the same non-null value on every row, with that value
    (cheap comparisons, no hashing). Asked by queries, not of the columns themselves: a
    column made from a literal (a run id) is then never expanded to one value per row."""
    if not columns:
        return {}
    ends = frame.select(
        e
        for c in columns
        for e in (
            pl.col(c).null_count().alias(f"n{c}"),
            pl.col(c).first().alias(f"f{c}"),
            pl.col(c).last().alias(f"l{c}"),
        )
    ).row(0, named=True)
    maybe = [c for c in columns if ends[f"n{c}"] == 0 and ends[f"f{c}"] == ends[f"l{c}"]]
    if not maybe:
        return {}
    spans = frame.select(
        e for c in maybe for e in (pl.col(c).min().alias(f"a{c}"), pl.col(c).max().alias(f"b{c}"))
    ).row(0, named=True)
    return {c: ends[f"f{c}"] for c in maybe if spans[f"a{c}"] == spans[f"b{c}"]}


def _may_hold_one_value(dtype: pl.DataType) -> bool:
    """Whether write_files looks for one value in a column of ``dtype`` (:func:`_one_values`)."""
    return dtype == pl.String or dtype == pl.Boolean or dtype.is_temporal() or dtype.is_integer()


def codec(table: str) -> str:
    """The parquet codec of ``table``'s data files (zstd for a table the lake does not define,
    e.g. an app table pulled from a server)."""
    tdef = TABLES.get(table)
    return tdef.codec if tdef is not None else "zstd"


def partition_file(table: str, partitions, key: tuple) -> tuple[dict[str, str], str]:
    """A partition's values for ``key`` (each checked by :func:`literal`) and the relative
    path of a new data file in it."""
    values = {p: str(v) for p, v in zip(partitions, key, strict=True)}
    for v in values.values():
        literal(v)
    rel = "/".join(f"{p}={v}" for p, v in values.items())
    return values, (rel + "/" if rel else "") + data_file(table)


def data_file(table: str) -> str:
    """A new data file's name (``rel`` of :func:`write_parquet`, below its partition)."""
    return f"part-00000-{uuid.uuid4()}-c000.{codec(table)}.parquet"


def write_parquet(location: LakeLocation, table: str, rel: str, data: pa.Table) -> int:
    """Write one data file of ``table`` (page checksums on, the table's codec); returns its
    size in bytes."""
    return write_file(location, table, rel, data)[0]


def write_file(
    location: LakeLocation, table: str, rel: str, data: pa.Table
) -> tuple[int, pq.FileMetaData]:
    """:func:`write_parquet`, also returning the file's footer (its statistics give the add
    action's, see :func:`~marketlake.lake.frames.file_stats`)."""
    if table not in TABLES and any(pa.types.is_large_string(t) for t in data.schema.types):
        # its file keeps the arrow schema: text as the table declares it
        data = data.cast(pa.schema([_plain_text(f) for f in data.schema]))
    if location.is_local:
        target = location.path / table / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = _write(data, str(target), file_options(table, data.schema, data))
        return target.stat().st_size, meta
    sink = pa.BufferOutputStream()  # an object store: one PUT of the finished file
    meta = _write(data, sink, file_options(table, data.schema, data))
    body = sink.getvalue().to_pybytes()
    location.put(f"{table}/{rel}", body)
    return len(body), meta


def file_options(table: str, schema: pa.Schema, data: pa.Table | None = None) -> dict[str, Any]:
    """Writer options of a data file of ``table`` with columns ``schema`` (holding ``data``,
    when given: see :func:`_stored_plain`)."""
    # dictionaries only for text: trying them on prices costs time and saves nothing
    text = [f.name for f in schema if _is_text(f.type) or pa.types.is_dictionary(f.type)]
    options = {**PARQUET_OPTIONS, "compression": codec(table), "use_dictionary": text}
    if options["compression"] == "lz4" and data is not None:
        plain = _stored_plain(data)
        if plain:
            options["compression"] = {f.name: "none" if f.name in plain else "lz4" for f in schema}
    # min/max only of the columns readers skip files by (frames.STATS_COLUMNS): tracking them
    # for every value of every other column cost about a sixth of a wide file's encoding;
    # the log's null counts come from the written table instead (frames.file_stats)
    options["write_statistics"] = [f.name for f in schema if f.name in STATS_COLUMNS]
    # a lake table's files carry no arrow schema: every reader takes the types parquet's
    # own say (text for a one-value dictionary or 64-bit-offset text, see to_file_arrow),
    # as its types need nothing more; another table's keep it unless they hold dictionaries
    if table in TABLES or any(pa.types.is_dictionary(f.type) for f in schema):
        options["store_schema"] = False
    if options["compression"] == "zstd":
        # floats split by byte: zstd then finds the runs in signs and exponents (files ~15%
        # smaller, and less CPU to write and read than plain floats); lz4 gains less than the
        # split costs
        options["use_byte_stream_split"] = [
            f.name for f in schema if pa.types.is_floating(f.type)
        ] or False
    return options


# lz4 must save at least this share of a float column's sample for the column to be compressed
_LZ4_GAIN = 0.1
_SAMPLE_BYTES = 65_536


def _stored_plain(data: pa.Table) -> set[str]:
    """The float columns of ``data`` that lz4 would not shrink (judged by a sample of their
    first values): stored uncompressed. Indicator values (an SMA, an RSI) have no repeated
    bytes for lz4 to find: their pages came out 0.4% larger, after about a tenth of a full
    compute's CPU spent compressing them; an integer-valued one (OBV) or a column of
    repeats still shrinks and keeps lz4."""
    out = set()
    for name, column in zip(data.column_names, data.columns, strict=True):
        if not pa.types.is_floating(column.type) or column.num_chunks == 0:
            continue
        chunk = column.chunk(0)
        width = column.type.byte_width
        n = min(len(chunk), _SAMPLE_BYTES // width)
        if n * width < 4096 or chunk.null_count == len(chunk):
            continue  # too little to judge: lz4 as the table says
        sample = chunk.buffers()[1].slice(chunk.offset * width, n * width)
        if pa.compress(sample, codec="lz4", asbytes=False).size > (1 - _LZ4_GAIN) * sample.size:
            out.add(name)
    return out


def _write(data: pa.Table, sink: Any, options: dict[str, Any]) -> pq.FileMetaData:
    data = _required_where_full(data)
    out = pq.ParquetWriter(sink, data.schema, **options)
    with out:
        out.write_table(data)
        out.add_key_value_metadata(CHECKSUM_MARK)
    return out.writer.metadata


def _required_where_full(data: pa.Table) -> pa.Table:
    """``data`` with each nullable column that holds no null declared required in the file
    (no copy). A required column has no definition levels: the writer neither builds nor
    encodes one per value, a quarter less CPU for a file of floats (840k rows x 16 columns:
    0.11 s against 0.15-0.20). Readers take the table's schema (the Delta log's, nullable)
    or go through polars, so a column required in one file and optional in another reads
    as the same column."""
    fields = [
        f.with_nullable(False) if f.nullable and data.column(i).null_count == 0 else f
        for i, f in enumerate(data.schema)
    ]
    if all(f.nullable == g.nullable for f, g in zip(fields, data.schema, strict=True)):
        return data
    return pa.Table.from_arrays(data.columns, schema=pa.schema(fields, data.schema.metadata))


def remove_files(location: LakeLocation, table: str, rels: list[str]) -> None:
    """Delete data files no commit references (a refused or abandoned write)."""
    for rel in rels:
        if location.is_local:
            (location.path / table / rel).unlink(missing_ok=True)
        else:
            location.delete(f"{table}/{rel}")


def remove_unless_committed(
    location: LakeLocation, table: str, rels: list[str], error: BaseException
) -> None:
    """Delete the files of a commit attempt that raised ``error``, unless it may have landed.

    A :class:`CommitConflict` is a refusal: nothing references the files. After any other
    error the table's latest snapshot decides; the files it references are kept, and when it
    cannot be read all are kept (an unreferenced file costs space until ``maintain``; deleting
    a committed one would lose its rows)."""
    if not isinstance(error, CommitConflict):
        try:
            dt = DeltaTable(location.table_uri(table), storage_options=location.storage_options)
            live = {unquote(f["path"]) for f in live_files(dt)}
        except TableNotFoundError:  # no commit at all: nothing references them
            live = set()
        except Exception as exc:  # noqa: BLE001 -- the error being handled is raised after this
            logging.getLogger("marketlake.lake").warning(
                "%s: kept %d file(s) of a failed commit (the table could not be read: %s)",
                table,
                len(rels),
                exc,
            )
            return
        rels = [r for r in rels if unquote(r) not in live]
    remove_files(location, table, rels)


def live_files(dt: DeltaTable) -> list[dict[str, Any]]:
    """The add actions of ``dt``'s snapshot, flattened (``path``, ``size_bytes``,
    ``partition.<col>``, ``min.<col>``...), one dict per data file (through polars:
    ``pyarrow.table`` of them imports pandas)."""
    return pl.DataFrame(dt.get_add_actions(flatten=True)).to_dicts()


def remove_actions(
    tdef: TableDef, files: list[dict[str, Any]], *, data_change: bool = True
) -> list[RemoveAction]:
    """Remove actions for ``files`` (flattened add actions of :func:`live_files`);
    ``data_change`` false for a rewrite that changes no row (compaction)."""
    now = int(time.time() * 1000)
    return [
        RemoveAction(
            f["path"],
            data_change,
            now,
            f["size_bytes"],
            {p: f.get(f"partition.{p}") for p in tdef.partitions},
        )
        for f in files
    ]


def commit_swap(
    dt: DeltaTable,
    tdef: TableDef,
    gone: list[dict[str, Any]],
    adds: list[AddAction],
    props: CommitProperties,
    *,
    data_change: bool = True,
) -> None:
    """One commit on top of ``dt``'s version that removes the files ``gone`` (flattened add
    actions) and adds ``adds`` (the caller deletes ``adds``' files if it fails)."""
    dt.create_write_transaction(
        [*remove_actions(tdef, gone, data_change=data_change), *adds],
        "append",
        dt.schema(),
        list(tdef.partitions),
        commit_properties=props,
    )


def commit_files(
    dt: DeltaTable, tdef: TableDef, adds: list[AddAction], props: CommitProperties
) -> None:
    """One Delta commit adding ``adds`` on top of ``dt``'s version."""
    with lake_errors("append to", tdef.name):
        dt.create_write_transaction(
            adds, "append", dt.schema(), list(tdef.partitions), commit_properties=props
        )


def append_files(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    frame: pl.DataFrame,
    props: CommitProperties,
) -> int:
    """Write ``frame`` as new files and commit them on top of ``dt``'s version; returns the
    rows appended. Files of a refused commit are removed."""
    rows, adds = write_files(location, tdef, frame)
    try:
        commit_files(dt, tdef, adds, props)
    except BaseException as exc:
        remove_unless_committed(location, tdef.name, [a.path for a in adds], exc)
        raise
    return rows


def append_evolving(
    dt: DeltaTable | None,
    location: LakeLocation,
    tdef: TableDef,
    frame: pl.DataFrame,
    props: CommitProperties,
) -> int:
    """Append to a table whose columns grow (indicators): columns the table lacks are added
    first (nullable floats, a metadata-only commit, pinned), then the files are committed on
    top of exactly that version."""
    from deltalake.schema import Field

    if "period" in tdef.partitions and "period" not in frame.columns:
        frame = with_period(frame)
    data = typed(tdef, frame)
    uri, options = location.table_uri(tdef.name), location.storage_options
    with lake_errors("append to", tdef.name):
        dt = dt if dt is not None else create(uri, tdef, options)
        have = pa.schema(dt.schema().to_arrow())
        new = [c for c in data.columns if c not in have.names]
        if new:
            before = dt.version()
            dt.alter.add_columns(
                [Field.from_arrow(pa.field(c, pa.float64())) for c in new], commit_properties=props
            )
            dt = DeltaTable(uri, storage_options=options)
            if dt.version() != before + 1:
                raise CommitConflict(f"append to {tdef.name}: another writer committed")
        columns = {f.name: f.type for f in have if f.name not in tdef.partitions}
        columns.update({c: pa.float64() for c in new})
    adds = write_partitioned(location, tdef, data, columns)
    try:
        commit_files(dt, tdef, adds, props)
    except BaseException as exc:
        remove_unless_committed(location, tdef.name, [a.path for a in adds], exc)
        raise
    return data.height


def create(uri: str, tdef: TableDef, storage_options: dict[str, str] | None = None) -> DeltaTable:
    """The empty table (or the existing one, if another writer created it first)."""
    with lake_errors("create", tdef.name):
        return DeltaTable.create(
            uri,
            schema=tdef.schema,
            mode="ignore",
            partition_by=list(tdef.partitions) or None,
            configuration=TABLE_CONFIG,
            storage_options=storage_options,
        )


def mark(dt: DeltaTable, name: str, props: CommitProperties) -> None:
    """An empty commit that only records metadata (e.g. a watermark)."""
    with lake_errors("record metadata on", name):
        dt.create_write_transaction(
            [],
            "append",
            dt.schema(),
            partition_by=dt.metadata().partition_columns,
            commit_properties=props,
        )


__all__ = [
    "CHECKSUM_MARK",
    "CommitConflict",
    "PARQUET_OPTIONS",
    "data_file",
    "TABLE_CONFIG",
    "append_evolving",
    "append_files",
    "commit_files",
    "commit_properties",
    "commit_swap",
    "create",
    "literal",
    "live_files",
    "mark",
    "remove_actions",
    "remove_files",
    "remove_unless_committed",
    "grouping",
    "split_rows",
    "file_options",
    "write_file",
    "write_files",
    "write_parquet",
    "write_partitioned",
]
