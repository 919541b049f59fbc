"""Benchmark: kernels.compute against TA-Lib looped per symbol, as ratios measured in one run.

Data: SYMBOLS x BARS (default 2,000 x 2,520) seeded random-walk OHLCV in one polars frame,
sorted by (symbol, ts) as a lake read returns it. The 8 TA-Lib-defined indicators are sma(20),
ema(21), rsi(14), macd(12,26,9), bbands(20,2), atr(14), adx(14), obv (14 output columns; TA-Lib:
SMA, EMA, RSI, MACD, BBANDS, ATR, ADX, PLUS_DI, MINUS_DI, OBV per symbol on numpy slices).
A ratio is TA-Lib's time over ours (> 1: we are faster): wall time, the figure targeted, and
below it CPU time (``time.process_time``: every thread of the process, so ours counts both
threads), which other processes on a shared machine move far less.

1. steady: repeated calls in one process, each result consumed (a NaN-skipping sum of every
   output column, outside the timer) then dropped -- the compute stage's pattern. TA-Lib and
   kernels.compute alternate round by round (which one goes first alternates too), so both
   sample the same machine state; the ratio is of the medians of ROUNDS rounds, with the
   spread of the per-round ratios. Beside the 8: the full default indicator set (SPEC section
   7; 37 columns) against the same TA-Lib loop of the 8 (TA-Lib has no Supertrend, VWAP,
   pivots or Fibonacci levels).
2. fresh process, warm cache: a new Python process imports everything, builds the frame, then
   times its first kernels.compute call (fresh output memory, thread pool start, and whatever
   of numba's start-up the background preload has not finished); another new process times
   its first TA-Lib loop. Alternated, FRESH pairs, medians.
3. one series of 1,000,000 bars (one symbol), steady as in 1.
4. first run, empty cache: a new process with an empty numba cache (NUMBA_CACHE_DIR pointing
   at an empty folder, which numba searches first) times its first call through numba, i.e.
   the compile, against the first call from the cache that building the package fills; and
   the same small call as it runs by default, on the entry points compiled ahead of time
   (``kernels.aot``), which need neither.

Usage: python bench/kernels.py [--symbols 2000] [--bars 2520] [--rounds 7] [--fresh 5]
       [--skip-cold]
Machine load moves every figure; run it on a quiet machine (check ``uptime``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import marketlake  # noqa: F401 -- before polars: its allocator setting (marketlake/__init__.py)

# isort: split
import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]

TALIB_SET = [
    "sma(20)",
    "ema(21)",
    "rsi(14)",
    "macd(12,26,9)",
    "bbands(20,2)",
    "atr(14)",
    "adx(14)",
    "obv",
]


def make_frame(n_symbols: int, n_bars: int, seed: int = 42) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    shape = (n_symbols, n_bars)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, shape), axis=1))
    spread = np.abs(rng.normal(0.0, 0.01, shape))
    high = close * (1.0 + spread)
    low = close * (1.0 - np.abs(rng.normal(0.0, 0.01, shape)))
    open_ = np.clip(close * (1.0 + rng.normal(0.0, 0.005, shape)), low, high)
    volume = rng.integers(10_000, 5_000_000, shape).astype(np.float64)
    step_us = 86_400_000_000 if n_bars <= 100_000 else 60_000_000
    t0 = 1_420_070_400_000_000  # 2015-01-01
    ts = np.tile(t0 + np.arange(n_bars, dtype=np.int64) * step_us, n_symbols)
    symbols = np.repeat(np.array([f"SYM{i:05d}" for i in range(n_symbols)]), n_bars)
    return pl.DataFrame(
        {
            "symbol": symbols,
            "ts": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel(),
        }
    )


def talib_per_symbol(frame: pl.DataFrame) -> list[tuple[np.ndarray, ...]]:
    """The 8 indicators with TA-Lib, one call per indicator and symbol (frame is sorted)."""
    import talib

    sym = frame.get_column("symbol")
    ends = np.flatnonzero(sym.rle_id().diff().fill_null(0).to_numpy()).tolist() + [len(sym)]
    h, lo, c, v = (frame.get_column(k).to_numpy() for k in ("high", "low", "close", "volume"))
    out = []
    a = 0
    for b in ends:
        cc, hh, ll, vv = c[a:b], h[a:b], lo[a:b], v[a:b]
        out.append(
            (
                talib.SMA(cc, 20),
                talib.EMA(cc, 21),
                talib.RSI(cc, 14),
                *talib.MACD(cc, 12, 26, 9),
                *talib.BBANDS(cc, 20, 2.0, 2.0, 0),
                talib.ATR(hh, ll, cc, 14),
                talib.ADX(hh, ll, cc, 14),
                talib.PLUS_DI(hh, ll, cc, 14),
                talib.MINUS_DI(hh, ll, cc, 14),
                talib.OBV(cc, vv),
            )
        )
        a = b
    return out


def consume(result) -> float:
    """Read every output value once (NaN-skipping sum), as a consumer of the result would."""
    if isinstance(result, pl.DataFrame):
        cols = [c for c in result.columns if result.schema[c] == pl.Float64]
        cols = cols[5:]  # skip open, high, low, close, volume
        row = result.select(pl.col(cols).fill_nan(None).sum()).row(0)
        return float(sum(row))
    return float(sum(np.nansum(a) for res in result for a in res))


class Times(list):
    """Wall times of the runs, and in ``cpu`` their CPU times (every thread of the process)."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: list[float] = []


def rounds(ours, ref, n: int) -> tuple[Times, Times]:
    """Times of ``ours`` and ``ref`` over ``n`` interleaved rounds (one warm-up each first)."""
    for fn in (ours, ref):
        consume(fn())
    t_ours, t_ref = Times(), Times()
    for i in range(n):
        order = [(ours, t_ours), (ref, t_ref)]
        for fn, times in order if i % 2 == 0 else order[::-1]:
            gc.collect()
            c = time.process_time()
            t = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t)
            times.cpu.append(time.process_time() - c)
            consume(result)
            del result
    return t_ours, t_ref


def steady(data: pl.DataFrame, indicators, n: int) -> tuple[Times, Times]:
    """``rounds`` of kernels.compute(data, indicators) against the TA-Lib loop over ``data``."""
    from marketlake import kernels

    return rounds(lambda: kernels.compute(data, indicators), lambda: talib_per_symbol(data), n)


def _fresh(
    kind: str, symbols: int, bars: int, env: dict | None = None, numba_only: bool = False
) -> tuple[float, float]:
    """Wall and CPU time of the first call in a new process (``numba_only``: never on the
    entry points compiled ahead of time, whatever the call's size)."""
    code = f"""
import sys, time, json
sys.path.insert(0, {str(ROOT / "bench")!r})
import kernels as bench
from marketlake import kernels
from marketlake.kernels import aot
if {numba_only!r}:
    aot.SERIAL_ROWS = -1
import talib
frame = bench.make_frame({symbols}, {bars})
c = time.process_time()
t = time.perf_counter()
if {kind!r} == "talib":
    res = bench.talib_per_symbol(frame)
else:
    res = kernels.compute(frame, bench.TALIB_SET)
print(json.dumps([time.perf_counter() - t, time.process_time() - c]))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    wall, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, cpu


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def report(label: str, t_ours: Times, t_ref: Times, rows: int) -> float:
    """Print the wall-time ratio of the medians (the figure targeted), its per-run spread, and
    the same in CPU time: ours counts both threads' CPU; on a shared machine the CPU ratio
    moves less with the load than the wall one."""
    med_o, med_r = statistics.median(t_ours), statistics.median(t_ref)
    ratios = [r / o for o, r in zip(t_ours, t_ref, strict=True)]
    ratio = med_r / med_o
    print(
        f"  {label:<34s} ours {med_o * 1e3:8.1f} ms  TA-Lib {med_r * 1e3:8.1f} ms  "
        f"ratio {ratio:5.2f}x (per run {spread(ratios)}, n={len(ratios)})  "
        f"{rows / med_o / 1e6:6.1f} M rows/s"
    )
    cpu_o, cpu_r = statistics.median(t_ours.cpu), statistics.median(t_ref.cpu)
    cpu_ratios = [r / o for o, r in zip(t_ours.cpu, t_ref.cpu, strict=True)]
    print(
        f"  {'  CPU time':<34s} ours {cpu_o * 1e3:8.1f} ms  TA-Lib {cpu_r * 1e3:8.1f} ms  "
        f"ratio {cpu_r / cpu_o:5.2f}x (per run {spread(cpu_ratios)})"
    )
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--bars", type=int, default=2520)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--fresh", type=int, default=5)
    ap.add_argument("--skip-cold", action="store_true", help="skip the empty-cache compile run")
    args = ap.parse_args()

    import numba

    from marketlake import kernels

    load = os.getloadavg()[0]
    print(
        f"{args.symbols} symbols x {args.bars} bars; numba {numba.__version__} "
        f"({numba.config.NUMBA_NUM_THREADS} threads), polars {pl.__version__}; "
        f"load average {load:.2f} on {os.cpu_count()} cores"
    )
    summary: dict[str, float] = {}

    frame = make_frame(args.symbols, args.bars)
    rows = frame.height
    print("\n1. steady, each result consumed then dropped (median of rounds):")
    t_o, t_r = steady(frame, TALIB_SET, args.rounds)
    summary["steady 8"] = report("8 TA-Lib indicators", t_o, t_r, rows)
    t_full, t_r2 = steady(frame, None, 5)
    n_cols = len(kernels.output_columns())
    summary["steady full"] = report(f"full default set ({n_cols} cols)", t_full, t_r2, rows)

    print("\n2. one call in a fresh process, warm cache (first call only, after imports):")
    f_o, f_r = Times(), Times()
    for i in range(args.fresh):
        for kind in ("kernels", "talib") if i % 2 == 0 else ("talib", "kernels"):
            times = f_o if kind == "kernels" else f_r
            wall, cpu = _fresh(kind, args.symbols, args.bars)
            times.append(wall)
            times.cpu.append(cpu)
    summary["fresh process"] = report("8 TA-Lib indicators", f_o, f_r, rows)

    del frame
    gc.collect()
    long = make_frame(1, 1_000_000)
    print("\n3. one series of 1,000,000 bars (steady, median of rounds):")
    t_o, t_r = steady(long, TALIB_SET, args.rounds)
    summary["1M-bar series"] = report("8 TA-Lib indicators", t_o, t_r, long.height)
    del long

    if not args.skip_cold:
        print("\n4. first run, empty numba cache (compile), one fresh process:")
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "NUMBA_CACHE_DIR": tmp}
            small = _fresh("kernels", 3, 300, env)[0]
            cold = _fresh("kernels", 3, 300, env, numba_only=True)[0]
        warm = statistics.median(_fresh("kernels", 3, 300, numba_only=True)[0] for _ in range(3))
        print(
            f"  first call on 3 x 300 bars through numba: empty cache {cold:.2f} s, "
            f"built cache {warm * 1e3:.0f} ms (compile {cold - warm:.1f} s); as a small call "
            f"runs (the entry points compiled ahead of time): {small * 1e3:.0f} ms"
        )

    print(
        f"\nsummary (TA-Lib time / ours; targets: steady >= 5, fresh >= 3, 1M-bar >= 1; "
        f"load average {os.getloadavg()[0]:.2f} at the end):"
    )
    for k, v in summary.items():
        print(f"  {k:<16s} {v:5.2f}x")


if __name__ == "__main__":
    main()
