"""Frames shaped for a lake table: key dedupe, casts to the table's schema, file statistics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from marketlake.errors import LakeError
from marketlake.lake.tables import TABLES, TableDef, polars_schema


def dedupe(frame: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """Rows with a unique key, the last of duplicates winning (arrival order = fetch order).

    Fast path: bars arrive grouped by series with increasing ts, where no duplicate can
    exist (:func:`series_runs`); only otherwise is a hash-based unique run. Runs of the key's
    first column are tried first (a batch of one timeframe: its symbols), as unique values
    of part of the key make the whole key unique.
    """
    if "ts" in key and len(key) > 1 and frame.height > 1:
        series = [c for c in key if c != "ts"]
        for cols in (series[:1], series) if len(series) > 1 else (series,):
            if series_runs(frame, cols) is not None:
                return frame
    return frame.unique(subset=key, keep="last", maintain_order=True)


def series_runs(frame: pl.DataFrame, series: list[str]) -> pl.DataFrame | None:
    """When ``frame`` holds each series (rows of equal ``series`` columns) as one run of rows
    with strictly increasing ``ts`` -- bars as fetched, series after series -- its runs: the
    ``series`` columns, the first ``ts``, the last (``hi``) and the rows (``n``); else None.

    One pass of comparisons with the row before, no hashing of every row: the runs give a
    batch's spans per series (a group-by costs about three times as much) and prove it free
    of duplicate keys."""
    if frame.is_empty():
        return None
    first = (~pl.all_horizontal([pl.col(c) == pl.col(c).shift(1) for c in series])).fill_null(True)
    rising = pl.when(first).then(True).otherwise(pl.col("ts") > pl.col("ts").shift(1))
    probe = frame.select(
        first.arg_true().alias("start"), rising.fill_null(False).all().alias("rising")
    )
    if not probe.get_column("rising")[0]:
        return None
    start = probe.get_column("start")
    ends = start.shift(-1, fill_value=frame.height)
    runs = frame.select(*series, "ts")[start].with_columns(
        frame.get_column("ts").gather(ends - 1).alias("hi"), (ends - start).alias("n")
    )
    if runs.select(series).is_duplicated().any():
        return None
    return runs


def to_arrow(tdef: TableDef, frame: pl.DataFrame) -> pa.Table:
    """The frame as an arrow table in the table's schema (extra float columns kept only for
    evolving tables)."""
    missing = [c for c in tdef.key if c not in frame.columns]
    if missing:
        raise LakeError(f"{tdef.name}: frame lacks key columns {missing}")
    fields = list(tdef.schema)
    absent = [f.name for f in fields if f.name not in frame.columns]
    if absent:
        frame = frame.with_columns([pl.lit(None).alias(c) for c in absent])
    cols = [f.name for f in fields]
    if tdef.evolving:
        extra = [c for c in frame.columns if c not in cols]
        cols += extra
        fields += [pa.field(c, pa.float64()) for c in extra]
    table = frame.select(cols).to_arrow()
    try:
        return table.cast(pa.schema(fields))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LakeError(f"{tdef.name}: frame does not fit the table schema: {exc}") from exc


def typed(tdef: TableDef, frame: pl.DataFrame) -> pl.DataFrame:
    """:func:`to_arrow`'s frame, in polars: the table's columns and types (cast in polars:
    a process's first arrow cast imports pyarrow.compute, about 0.3 s) and, for an evolving
    table, its extra columns as floats. A table the lake does not define (an app table
    pulled from a server) may hold other types: arrow casts them."""
    if TABLES.get(tdef.name) is not tdef:
        out = pl.from_arrow(to_arrow(tdef, frame))
        assert isinstance(out, pl.DataFrame)
        return out
    out = to_polars(tdef, frame)
    extra = [c for c in frame.columns if c not in out.columns] if tdef.evolving else []
    if not extra:
        return out
    try:
        return out.with_columns(frame.select(pl.col(extra).cast(pl.Float64)))
    except pl.exceptions.PolarsError as exc:
        raise LakeError(f"{tdef.name}: frame does not fit the table schema: {exc}") from exc


def to_polars(tdef: TableDef, frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with exactly the table's columns and types (cast in polars)."""
    schema = polars_schema(tdef.name)
    missing = [c for c in tdef.key if c not in frame.columns]
    if missing:
        raise LakeError(f"{tdef.name}: frame lacks key columns {missing}")
    have = frame.schema  # once: polars builds it anew on each access
    try:
        return frame.select(
            [
                (pl.col(c) if have[c] == t else pl.col(c).cast(t))
                if c in have
                else pl.lit(None, t).alias(c)
                for c, t in schema.items()
            ]
        )
    except pl.exceptions.PolarsError as exc:
        raise LakeError(f"{tdef.name}: frame does not fit the table schema: {exc}") from exc


# columns whose min/max readers use to skip files (key-like and price columns)
STATS_COLUMNS = frozenset(
    {
        "symbol",
        "ts",
        "ex_date",
        "period_end",
        "key",
        "segment",
        "run_id",
        "open",
        "high",
        "low",
        "close",
        "volume",
    }
)


def stats(frame: pl.DataFrame) -> str:
    """Delta file statistics (record count, min/max of key-like columns, null counts)."""
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    for c, dtype in frame.schema.items():
        if c not in STATS_COLUMNS:
            continue
        col = frame.get_column(c)
        if col.null_count() == frame.height:
            continue
        if dtype == pl.String:
            lo, hi = col.min(), col.max()
            if len(hi) < 32:
                mins[c], maxs[c] = lo, hi
        elif isinstance(dtype, pl.Datetime):
            lo, hi = col.min(), col.max()
            hi_ms = -(-hi.microsecond // 1000)
            if hi_ms < 1000:  # a max rounded up into the next second is not written
                mins[c] = lo.strftime("%Y-%m-%dT%H:%M:%S.") + f"{lo.microsecond // 1000:03d}Z"
                maxs[c] = hi.strftime("%Y-%m-%dT%H:%M:%S.") + f"{hi_ms:03d}Z"
        elif dtype.is_numeric():
            lo, hi = col.min(), col.max()
            if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
                mins[c], maxs[c] = lo, hi
    nulls = {c: frame.get_column(c).null_count() for c in frame.columns}
    return json.dumps(
        {"numRecords": frame.height, "minValues": mins, "maxValues": maxs, "nullCount": nulls}
    )


def file_stats(meta: pq.FileMetaData, data: pa.Table | None = None) -> str:
    """The same statistics as :func:`stats`, taken from a written parquet file's footer (the
    writer computed them while encoding: no second pass over the rows). Parquet's min/max
    skip nulls and NaN, as polars' do. With the Arrow table ``data`` the file was written
    from, null counts come from its arrays (their validity bitmaps count them), so a column
    the footer holds no statistics for needs none (see
    :func:`~marketlake.lake.writes.file_options`)."""
    schema = meta.schema.to_arrow_schema()
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    nulls: dict[str, int] = {}
    if meta.num_columns != len(schema):  # nested columns: the lake's tables have none
        raise LakeError(f"file statistics of nested columns: {schema.names}")
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    for i, field in enumerate(schema):
        c, t = field.name, field.type
        chunks = [g.column(i).statistics for g in groups]
        if data is not None and c in data.column_names:
            nulls[c] = data.column(c).null_count
        elif any(s is None or not s.has_null_count for s in chunks):
            raise LakeError(f"a written parquet file has no statistics for {c}")
        else:
            nulls[c] = sum(s.null_count for s in chunks)
        known = [s for s in chunks if s is not None and s.has_min_max]
        if c not in STATS_COLUMNS or not known:
            continue
        if pa.types.is_timestamp(t):  # from the raw integers: pyarrow's datetimes import pandas
            lo = _instant(min(s.min_raw for s in known), t.unit)
            hi = _instant(max(s.max_raw for s in known), t.unit)
        else:
            lo, hi = min(s.min for s in known), max(s.max for s in known)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            if len(hi) < 32:
                mins[c], maxs[c] = lo, hi
        elif pa.types.is_timestamp(t):
            hi_ms = -(-hi.microsecond // 1000)
            if hi_ms < 1000:  # a max rounded up into the next second is not written
                mins[c] = lo.strftime("%Y-%m-%dT%H:%M:%S.") + f"{lo.microsecond // 1000:03d}Z"
                maxs[c] = hi.strftime("%Y-%m-%dT%H:%M:%S.") + f"{hi_ms:03d}Z"
        elif pa.types.is_integer(t) or pa.types.is_floating(t):
            if np.isfinite(lo) and np.isfinite(hi):
                mins[c], maxs[c] = lo, hi
    return json.dumps(
        {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PER_MICRO = {"s": 1_000_000, "ms": 1_000, "us": 1}


def _instant(raw: int, unit: str) -> datetime:
    """A parquet timestamp statistic (an integer count of ``unit`` since the epoch) as a UTC
    datetime, nanoseconds dropped."""
    micros = raw // 1000 if unit == "ns" else raw * _PER_MICRO[unit]
    return _EPOCH + timedelta(microseconds=micros)
