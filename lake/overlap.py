"""The overlap proof: can any row of a batch already be in a table snapshot?

Answered from the Delta log's file statistics alone (partition values, min/max of symbol and
ts), without reading data files. A "no" licenses a blind append against that snapshot; the
append's commit is pinned to the snapshot's version, so a version the proof did not see makes
the commit fail instead of doubling keys.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from deltalake import DeltaTable

from marketlake.lake.tables import TableDef, period_of_code, single_timeframe, with_period_code


def may_overlap(
    dt: DeltaTable | None, tdef: TableDef, frame: pl.DataFrame, timeframe: str | None = None
) -> bool:
    """False only when the file statistics of the snapshot ``dt`` prove that no row of
    ``frame`` (by partition, symbol and ts range) can exist in it: then a blind append
    committed against exactly that snapshot is safe.
    ``timeframe``: the frame's only timeframe, when the caller knows it."""
    return suspects(dt, tdef, frame, timeframe) != set()


def suspects(
    dt: DeltaTable | None,
    tdef: TableDef,
    frame: pl.DataFrame,
    timeframe: str | None = None,
    symbols: tuple[str, str] | None = None,
) -> set[str] | None:
    """The symbols of ``frame`` whose rows the file statistics of ``dt`` cannot prove absent
    (a file of the same partition covers the symbol and the ts range); None when nothing can
    be proven. Rows of every other symbol are new: a write may append them blindly and diff
    only the suspects' (batches fetched on several threads end out of symbol order, so
    consecutive batches' symbol ranges touch at their edges). ``symbols``: the least and
    the greatest symbol of ``frame`` when the caller knows them (a bulk load's batch: the
    min and max over its millions of strings were a third of this proof's time)."""
    if dt is None:
        return set()
    if not {"symbol", "ts"} <= set(frame.columns) or "ts" not in tdef.schema.names:
        return None
    files = pl.DataFrame(dt.get_add_actions(flatten=True))  # pa.table would import pandas
    if files.is_empty():
        return set()
    need = ["min.symbol", "max.symbol", "min.ts", "max.ts"]
    if (
        any(c not in files.columns for c in need)
        or files.select(pl.any_horizontal(pl.col(need).is_null()).any()).item()
    ):
        return None
    if files.select((pl.col("max.symbol").str.len_chars() >= 32).any()).item():
        return None  # string statistics may be truncated
    # partition keys of the batch; ``period`` as an integer code (cheap on big batches)
    coded = "period" in tdef.partitions and "period" not in frame.columns
    keys = [p for p in tdef.partitions if p in frame.columns]
    if "timeframe" in keys:
        timeframe = timeframe or single_timeframe(frame)
        if timeframe is not None:
            keys.remove("timeframe")
    if coded:
        frame = with_period_code(frame, timeframe)
        keys.append("_pcode")
    if not keys:
        frame, keys = frame.with_columns(pl.lit(1).alias("_all")), ["_all"]
    # ts ranges per partition; the symbol range of the whole batch (string aggregations
    # per group are the expensive part on millions of rows)
    if symbols is None:
        column = frame.get_column("symbol")
        symbols = (column.min(), column.max())
    ranges = (
        frame.group_by(keys)
        .agg(pl.col("ts").min().alias("lo_ts"), pl.col("ts").max().alias("hi_ts"))
        .with_columns(
            pl.lit(symbols[0], pl.String).alias("lo_sym"),
            pl.lit(symbols[1], pl.String).alias("hi_sym"),
        )
    )
    if timeframe is not None and "timeframe" in tdef.partitions:
        ranges = ranges.with_columns(pl.lit(timeframe).alias("timeframe"))
    if ranges.select(pl.any_horizontal(pl.all().is_null()).any()).item():
        return None
    if coded:  # back to the partition's string, on the few aggregated rows only
        ranges = ranges.with_columns(
            pl.col("_pcode").map_elements(period_of_code, return_dtype=pl.String).alias("period")
        )
    parts = [p for p in tdef.partitions if p in ranges.columns]
    files = files.rename({f"partition.{p}": p for p in parts})
    files = files.with_columns([pl.col(p).cast(ranges.schema[p]) for p in parts])
    cand = files.join(ranges, on=parts, how="inner") if parts else files.join(ranges, how="cross")
    cand = cand.filter(
        (pl.col("min.ts") <= pl.col("hi_ts"))
        & (pl.col("max.ts") >= pl.col("lo_ts"))
        & (pl.col("min.symbol") <= pl.col("hi_sym"))
        & (pl.col("max.symbol") >= pl.col("lo_sym"))
    )
    if cand.is_empty():
        return set()
    # ranges intersect: which batch symbols really fall inside a candidate file's range?
    found: set[str] = set()
    for key, part in frame.group_by(keys):
        sel = cand
        for k, v in zip(keys, key, strict=True):
            if k == "_pcode":
                sel = sel.filter(pl.col("period") == period_of_code(v))
            elif k != "_all":
                sel = sel.filter(pl.col(k) == v)
        if sel.is_empty():
            continue
        syms = np.sort(part.get_column("symbol").unique().to_numpy().astype(str))
        lo = np.searchsorted(syms, sel.get_column("min.symbol").to_numpy().astype(str), "left")
        hi = np.searchsorted(syms, sel.get_column("max.symbol").to_numpy().astype(str), "right")
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
            found.update(syms[a:b].tolist())
    return found
