"""The incremental compute of one timeframe: the series whose bars changed, in one read and
one commit.

Indicators are causal but many are recursive (EMA, Wilder smoothing, OBV...), so each changed
series is recomputed over its whole history: that is what keeps an increment equal to a full
recompute row for row. What an increment saves is everything else: the changed series' bars
are read in one scan (a few scans only when they exceed :data:`READ_ROWS`), grouped by symbol
with a linear stable sort instead of a string sort, computed in slices of at most
:data:`KERNEL_ROWS` bars (the kernels' output block is recycled between slices), and only each
series' rows from its first changed bar on are kept. When the lake's file statistics prove
none of those rows is stored yet (the usual nightly case: one new bar per series) they are
appended without reading the stored indicators; otherwise they are diffed against the stored
rows from the earliest changed bar on and only rows that differ are merged. One commit either
way, carrying the compute watermark.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa

from marketlake.lake.store import Lake
from marketlake.lake.tables import with_period

READ_ROWS = 8_000_000  # bars read in one scan (7 columns: about 0.5 GB)
KERNEL_ROWS = 2_500_000  # bars per kernels call (its output block: ~40 float columns)
_BARS = ["symbol", "ts", "open", "high", "low", "close", "volume"]
_KEY = ["symbol", "timeframe", "ts"]


def increment(
    lake: Lake,
    version: int,
    tf: str,
    syms: list[str],
    indicators,
    columns: list[str],
    tz: dict[str, str],
    run_id: str,
    *,
    meta: dict[str, str] | None,
    computed_at: datetime,
    from_ts: dict[str, datetime],
) -> dict[str, int]:
    """Recompute ``syms`` on ``tf`` (bars of ohlcv ``version``) and write the rows from each
    series' first changed bar (``from_ts``; a series without one is compared whole) that
    differ from the stored ones, in one commit; returns the counts."""
    from marketlake import kernels

    parts = []
    for bars in _reads(lake, version, tf, syms):
        bars = _grouped(bars)
        for lo, hi in _slices(bars):
            part = bars.slice(lo, hi - lo)
            zones = {s: tz.get(s, "UTC") for s in part.get_column("symbol").unique().to_list()}
            out = kernels.compute(part, indicators, session_tz=zones)
            parts.append(_tail(out, from_ts, tf, columns))
            del out, part  # frees the output block for the next slice
    if not parts:
        return _nothing(lake, meta, run_id)
    new = with_period(pl.concat(parts))
    if new.is_empty():
        return _nothing(lake, meta, run_id)
    stamp = pl.lit(computed_at).cast(pl.Datetime("us", "UTC"))
    if not lake.may_overlap("indicators", new, tf):  # none stored yet: a blind append
        write = new.with_columns(stamp.alias("computed_at"), pl.lit(run_id).alias("run_id"))
        res = lake.upsert(
            "indicators", write, run_id=run_id, stage="compute", metadata=meta, assume_new=True
        )
        return {"inserted": res.inserted, "updated": res.updated, "unchanged": res.unchanged}
    old = lake.scan("indicators").filter(
        (pl.col("timeframe") == tf)
        & pl.col("symbol").is_in(syms)
        & (pl.col("ts") >= new.get_column("ts").min())
    )
    old = old.select([c for c in old.collect_schema().names() if c in (*_KEY, *columns)])
    from marketlake.pipeline.stages.compute import _diff

    j = _diff(new, old.collect(), columns)
    write = (
        j.filter(~pl.col("__same"))
        .select(new.columns)
        .with_columns(stamp.alias("computed_at"), pl.lit(run_id).alias("run_id"))
    )
    unchanged = j.height - write.height
    if write.is_empty():
        return _nothing(lake, meta, run_id, unchanged)
    res = lake.upsert("indicators", write, run_id=run_id, stage="compute", metadata=meta)
    return {
        "inserted": res.inserted,
        "updated": res.updated,
        "unchanged": unchanged + res.unchanged,
    }


def _nothing(lake: Lake, meta, run_id: str, unchanged: int = 0) -> dict[str, int]:
    if meta:
        lake.mark("indicators", run_id=run_id, stage="compute", metadata=meta)
    return {"inserted": 0, "updated": 0, "unchanged": unchanged}


def _reads(lake: Lake, version: int, tf: str, syms: list[str]) -> Iterator[pl.DataFrame]:
    """The bars of ``syms`` on ``tf``: one scan when the timeframe's files hold at most
    :data:`READ_ROWS` rows (their log statistics tell), else symbol batches of about that."""
    series = lake.scan("ohlcv", version=version)
    wanted = (pl.col("timeframe") == tf) & pl.col("symbol").is_in(syms)
    if _stored_rows(lake, version, tf) <= READ_ROWS:
        yield series.filter(wanted).select(_BARS).collect()
        return
    counts = dict(series.filter(wanted).group_by("symbol").len().collect().iter_rows())
    batch: list[str] = []
    rows = 0
    for s in syms:
        if batch and rows + counts.get(s, 0) > READ_ROWS:
            yield (
                series.filter((pl.col("timeframe") == tf) & pl.col("symbol").is_in(batch))
                .select(_BARS)
                .collect()
            )
            batch, rows = [], 0
        batch.append(s)
        rows += counts.get(s, 0)
    if batch:
        yield (
            series.filter((pl.col("timeframe") == tf) & pl.col("symbol").is_in(batch))
            .select(_BARS)
            .collect()
        )


def _stored_rows(lake: Lake, version: int, tf: str) -> int:
    """Rows in the files of ``tf`` (from the Delta log's statistics; no data read)."""
    dt = lake.table("ohlcv", version)
    if dt is None:
        return 0
    files = pl.from_arrow(pa.table(dt.get_add_actions(flatten=True)))
    if "partition.timeframe" not in files.columns or "num_records" not in files.columns:
        return READ_ROWS + 1  # cannot tell: read in batches
    return int(
        files.filter(pl.col("partition.timeframe") == tf).get_column("num_records").sum() or 0
    )


def _grouped(bars: pl.DataFrame) -> pl.DataFrame:
    """``bars`` sorted by (symbol, ts), ``symbol`` as an Enum of the sorted symbols (gathering
    codes is far cheaper than gathering strings). Lake reads hold each series' bars in ts
    order spread over files, so a stable linear sort by symbol code suffices; a general sort
    otherwise."""
    if bars.height == 0:
        return bars
    names = bars.get_column("symbol").unique().sort()
    bars = bars.with_columns(pl.col("symbol").cast(pl.Enum(names)))
    codes = bars.get_column("symbol").to_physical().to_numpy()
    ts = bars.get_column("ts").to_physical().to_numpy()
    if len(names) < 1 << 16:
        order = np.argsort(codes.astype(np.uint16), kind="stable")  # radix sort
        c, t = codes[order], ts[order]
        if not ((np.diff(t) > 0) | (np.diff(c) != 0)).all():
            order = np.lexsort((ts, codes))
    else:
        order = np.lexsort((ts, codes))
    return bars[order]


def _slices(bars: pl.DataFrame) -> list[tuple[int, int]]:
    """[lo, hi) row ranges of at most :data:`KERNEL_ROWS` bars (or one whole series) that
    never split a series (``bars`` grouped by symbol)."""
    runs = bars.select(pl.col("symbol").rle()).unnest("symbol").get_column("len").to_numpy()
    ends = np.cumsum(runs)
    out, lo = [], 0
    while lo < bars.height:
        i = int(np.searchsorted(ends, lo + KERNEL_ROWS, "right"))
        hi = (
            int(ends[i - 1])
            if i and ends[i - 1] > lo
            else int(ends[np.searchsorted(ends, lo, "right")])
        )
        out.append((lo, hi))
        lo = hi
    return out


def _tail(
    out: pl.DataFrame, starts: dict[str, datetime], tf: str, columns: list[str]
) -> pl.DataFrame:
    """The rows of each series from its first changed bar on (all rows of a series without
    one), as indicator rows (warm-up values null)."""
    sym = out.get_column("symbol")
    names = sym.dtype.categories.to_list()
    floor = np.full(len(names), np.iinfo(np.int64).min, dtype=np.int64)
    for i, name in enumerate(names):
        if name in starts:
            floor[i] = _micros(starts[name])
    ts = out.get_column("ts").dt.cast_time_unit("us").to_physical().to_numpy()
    keep = ts >= floor[sym.to_physical().to_numpy()]
    return out.filter(pl.Series(keep)).select(
        pl.col("symbol").cast(pl.String),
        pl.lit(tf).alias("timeframe"),
        "ts",
        *[pl.col(c).fill_nan(None) for c in columns],
    )


def _micros(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond
