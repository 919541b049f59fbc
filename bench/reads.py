"""Read cost of page-checksum verification: the lake's verified reads against the unverified
readers they replaced, on the same snapshot in the same run.

Builds an ohlcv lake (synthetic daily bars, written by the real ingest path) once, then
interleaves: a full ``Lake.read`` (pyarrow, page CRCs checked) against ``pl.scan_delta``
(polars' own reader, no CRC check), the same with a symbol filter, and a DuckDB aggregate
over ``duck.connect`` (registered verified dataset) against DuckDB's ``read_parquet`` over the
snapshot's files. Prints medians, spreads, CPU seconds and ratios (verified / unverified).

    python bench/reads.py [--symbols 1000] [--days 2520] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import marketlake  # noqa: F401 -- before polars: its allocator setting (marketlake/__init__.py)

# isort: split
import duckdb
import polars as pl

from marketlake.lake import Lake
from marketlake.lake.duck import connect
from marketlake.pipeline.stages.ingest import land_bars

AGG = "SELECT symbol, avg(close), max(high) FROM ohlcv GROUP BY symbol"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--days", type=int, default=2520)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from ingest import make_bars  # bench/ingest.py: the same synthetic frame

    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp))
        frame = make_bars(args.symbols, args.days)
        land_bars(lake, frame, run_id="bench", now=datetime.now(UTC))
        rows = frame.height
        del frame
        dt = lake.table("ohlcv")
        uri = lake.uri("ohlcv")
        files = [u.removeprefix("file://") for u in dt.file_uris()]
        pick = [f"S{i:05d}" for i in range(0, args.symbols, 50)]
        raw = duckdb.connect()
        raw.read_parquet(files, hive_partitioning=True).create_view("ohlcv")
        cases = {
            "full read": (
                lambda: lake.read("ohlcv").height,
                lambda: pl.scan_delta(uri).collect().height,
            ),
            "symbol filter": (
                lambda: lake.scan("ohlcv").filter(pl.col("symbol").is_in(pick)).collect().height,
                lambda: pl.scan_delta(uri).filter(pl.col("symbol").is_in(pick)).collect().height,
            ),
            "duckdb aggregate": (
                lambda: len(connect(lake, ["ohlcv"]).execute(AGG).fetchall()),
                lambda: len(raw.execute(AGG).fetchall()),
            ),
        }
        print(f"{rows:,} rows in {len(files)} files; load average {os.getloadavg()[0]:.1f}")
        for name, (verified, plain) in cases.items():
            wall: dict[str, list[float]] = {"verified": [], "plain": []}
            cpu: dict[str, list[float]] = {"verified": [], "plain": []}
            for _ in range(args.runs):  # interleaved: both sides see the same load
                for side, fn in (("verified", verified), ("plain", plain)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn()
                    wall[side].append(time.perf_counter() - t0)
                    cpu[side].append(time.process_time() - c0)
            v, p = statistics.median(wall["verified"]), statistics.median(wall["plain"])
            vc, pc = statistics.median(cpu["verified"]), statistics.median(cpu["plain"])
            print(
                f"{name:17s} verified {v:6.3f} s ({min(wall['verified']):.3f}-"
                f"{max(wall['verified']):.3f}, cpu {vc:.3f})  unverified {p:6.3f} s "
                f"({min(wall['plain']):.3f}-{max(wall['plain']):.3f}, cpu {pc:.3f})  "
                f"ratio {v / p:.2f} wall, {vc / pc:.2f} cpu"
            )
        print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
