"""Ingest throughput: synthetic bars into the lake vs a plain polars ``write_parquet``.

Both sides get the same pre-built frame (>= 10M rows by default) in the same run. The lake
side is the real ingest path (validation, diff against the lake, partitioned Delta commit);
the reference is one ``write_parquet`` of the same rows. Prints rows/s of both and the ratio.

    python bench/ingest.py [--symbols 2000] [--days 5040]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import marketlake  # noqa: F401 -- before polars: its allocator setting (marketlake/__init__.py)

# isort: split
import numpy as np
import polars as pl

from marketlake.lake import Lake  # noqa: E402
from marketlake.pipeline.stages.ingest import land_bars  # noqa: E402


def make_bars(symbols: int, days: int, seed: int = 1) -> pl.DataFrame:
    """A random-walk daily OHLCV frame: ``symbols`` x ``days`` rows, sane OHLC."""
    rng = np.random.default_rng(seed)
    n = symbols * days
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (symbols, days)), axis=1)).ravel()
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * (1 + rng.random(n) * 0.01)
    low = np.minimum(open_, close) * (1 - rng.random(n) * 0.01)
    start = np.datetime64("2006-01-02", "us")
    ts = start + (np.tile(np.arange(days), symbols) * 86_400_000_000).astype("timedelta64[us]")
    return pl.DataFrame(
        {
            "symbol": np.repeat([f"S{i:05d}" for i in range(symbols)], days),
            "timeframe": "1D",
            "ts": pl.Series(ts).dt.replace_time_zone("UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1_000, 1_000_000, n).astype(np.float64),
            "adj_close": close,
            "provider": "bench",
            "is_final": True,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--days", type=int, default=5040)
    ap.add_argument("--batches", type=int, default=5, help="commits the ingest is split into")
    args = ap.parse_args()
    frame = make_bars(args.symbols, args.days)
    rows = frame.height
    tmp = Path(tempfile.mkdtemp(prefix="marketlake-bench-"))
    try:
        t = time.perf_counter()
        frame.write_parquet(tmp / "plain.parquet")
        plain = time.perf_counter() - t

        lake = Lake(tmp / "home")
        now = datetime.now(UTC)
        per = -(-args.symbols // args.batches) * args.days
        t = time.perf_counter()
        inserted = 0
        for i in range(0, rows, per):
            inserted += land_bars(
                lake, frame.slice(i, per), run_id="bench", now=now, timeframe="1D"
            ).inserted
        ingest = time.perf_counter() - t
        assert inserted == rows, (inserted, rows)

        day = make_bars(args.symbols, 1, seed=2).with_columns(
            pl.lit(datetime(2030, 1, 2, tzinfo=UTC)).alias("ts")
        )
        t = time.perf_counter()
        land_bars(lake, day, run_id="bench-day", now=now)
        daily = time.perf_counter() - t
        t = time.perf_counter()
        again = land_bars(lake, day, run_id="bench-day2", now=now)
        rerun = time.perf_counter() - t
        assert again.inserted == again.updated == 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"rows: {rows:,} ({args.symbols} symbols x {args.days} days), {args.batches} lake commits"
    )
    print(f"plain polars write_parquet : {plain:7.2f} s  {rows / plain:12,.0f} rows/s")
    print(f"marketlake ingest (lake)    : {ingest:7.2f} s  {rows / ingest:12,.0f} rows/s")
    print(f"ratio ingest / plain        : {plain / ingest:7.2f}  (target >= 0.5)")
    print(
        f"one new day ({args.symbols} symbols) upsert: {daily * 1000:7.0f} ms; "
        f"re-run (0 changes): {rerun * 1000:7.0f} ms"
    )


if __name__ == "__main__":
    main()
