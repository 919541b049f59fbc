"""Export a lake table as one clean parquet (or CSV) file, readable by any tool."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from marketlake.errors import ConfigError
from marketlake.lake.atomic import atomic_write
from marketlake.lake.store import Lake
from marketlake.lake.tables import TABLES
from marketlake.pipeline.timeframes import check as check_timeframes


def export_table(
    lake: Lake,
    table: str,
    out_dir: Path,
    *,
    fmt: str = "parquet",
    symbols: list[str] | None = None,
    timeframes: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[Path, int]:
    """Write ``out_dir/<table>.<fmt>`` atomically; returns the path and the row count."""
    if table not in TABLES:
        raise ConfigError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"--format must be parquet or csv, got {fmt!r}")
    if start is not None and end is not None and start >= end:
        raise ConfigError("--start must be before --end")
    scan = lake.scan(table)
    cols = scan.collect_schema().names()
    if symbols:
        scan = scan.filter(pl.col("symbol").is_in(symbols))
    if timeframes and "timeframe" in cols:
        scan = scan.filter(pl.col("timeframe").is_in(list(check_timeframes(timeframes))))
    if "ts" in cols:
        if start is not None:
            scan = scan.filter(pl.col("ts") >= start)
        if end is not None:
            scan = scan.filter(pl.col("ts") < end)
    order = [c for c in TABLES[table].key if c in cols]
    frame = scan.sort(order).collect()
    frame = frame.drop([c for c in ("period",) if c in frame.columns])
    path = Path(out_dir) / f"{table}.{fmt}"
    if fmt == "parquet":
        data = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
        # plain string/large types only: every reader (pandas, Spark, BI) understands them
        atomic_write(path, lambda p: pq.write_table(data, p, compression="zstd"))
    else:
        atomic_write(path, lambda p: frame.write_csv(p))
    return path, frame.height
