"""The pipeline end to end, each stage as a ratio against a reference measured in the same run.

Rows of the printed table (ratio > 1: ours is faster than the reference):

* synthetic market: bars generated per second (``provider.fetch`` in the sync's chunks, the
  provider's ``max_range``; caches of paths and calendars cleared first);
* ``sync --provider synthetic`` of ``--sync-symbols`` x 10 years of 1D and 1h bars, against a
  plain polars ``write_parquet`` of the same rows (and the same in CPU time, all threads):
  ``--sync-runs`` runs, each in a fresh process that loads the market's split and builds its
  paths itself, as a user's sync does; the ratio of the medians;
* ingest (``land_bars`` of a pre-built frame) against ``write_parquet`` of the same frame;
* files import (``sync --provider files`` of one parquet file of ``--files-rows`` bars) against
  polars reading and writing the same file: ``--files-runs`` runs of each, alternated, each
  in a fresh process (both start cold, as a user's import or script does); the ratio of the
  medians;
* ``compute --full`` (the 8 TA-Lib indicators) over ``--symbols`` x 2,520 daily bars in the
  lake, against polars reading the lake + TA-Lib per symbol + one parquet write, and against the
  raw kernels + one parquet write; then ``compute --full`` with the default set over the stored
  rows (a rewrite, not a MERGE);
* the nightly increment: one new day for ``--nightly-symbols`` symbols (sync from the synthetic
  market, compute, load into PostgreSQL) in a fresh process (``bench/nightly.py``: imports and
  the kernels' cache load count), CPU and wall time per stage, on three consecutive days (the
  medians; one run on a busy machine can take half as long again; the first day follows the
  bulk load's full recompute, so it has no kept indicator states and recomputes their
  windows, the next ones continue from the states it kept); then the first day's
  increment on a copy of the lake and schema under the profiler, for its main thread's profile.

Timings are wall clock, medians of ``--repeat`` interleaved runs where a stage is cheap to repeat
(compute: each with its spread and CPU time, all threads; the load average printed beside).

    python bench/pipeline.py [--symbols 2000] [--sync-symbols 300] [--files-rows 10000000]
                             [--files-runs 5] [--nightly-symbols 2600] [--dsn postgresql://...]
                             [--skip ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import marketlake  # noqa: F401 -- before polars: its allocator setting (marketlake/__init__.py)

# isort: split
import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from ingest import make_bars  # noqa: E402

from kernels import TALIB_SET, talib_per_symbol  # noqa: E402
from marketlake.lake import Lake  # noqa: E402
from marketlake.pipeline import universe  # noqa: E402
from marketlake.pipeline.config import ProviderSettings, load_settings  # noqa: E402
from marketlake.pipeline.planning import split_range  # noqa: E402
from marketlake.pipeline.providers.base import FetchRequest  # noqa: E402
from marketlake.pipeline.providers.synthetic import SyntheticProvider  # noqa: E402
from marketlake.pipeline.stages.compute import run_compute  # noqa: E402
from marketlake.pipeline.stages.ingest import land_bars, run_sync  # noqa: E402

NOW = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)
ROWS: list[tuple[str, str, float, str]] = []


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def cpu_timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of ``fn()``."""
    cpu0 = cpu_seconds()
    wall = timed(fn)[0]
    return wall, cpu_seconds() - cpu0


def median(fn: Callable[[], object], n: int) -> float:
    return statistics.median(timed(fn)[0] for _ in range(n))


def row(name: str, ours: float, ref: float, note: str, target: str) -> None:
    ROWS.append((name, note, ref / ours, target))
    print(f"  {name}: ours {ours:.2f} s, reference {ref:.2f} s -> {ref / ours:.2f}x ({note})")


def add_universe(lake: Lake, symbols: list[str], provider: str) -> None:
    """The instruments, as ``universe import`` adds them (one commit)."""
    csv = Path(tempfile.mkdtemp(prefix="marketlake-bench-universe-")) / "universe.csv"
    rows = "".join(f"{s},equity,{provider}\n" for s in symbols)
    csv.write_text("symbol,asset_type,provider\n" + rows)
    universe.import_csv(lake, csv, run_id="u")
    shutil.rmtree(csv.parent, ignore_errors=True)


def _busy() -> tuple[int, int]:
    """(busy, total) jiffies of the machine: user, system and I/O wait count as busy."""
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, idle, iowait = (int(x) for x in cpu[:5])
    return user + nice + system + iowait, sum(int(x) for x in cpu[:8])


def settle(dsn: str | None = None, vacuum: list[str] | None = None, most: float = 30.0) -> None:
    """Let the machine finish the previous stage's work before the next is timed: dirty pages
    written out, the bulk-loaded PostgreSQL tables ``vacuum`` vacuumed and analyzed (else
    autovacuum starts on them within a minute, during the timed run) and a checkpoint, then
    up to ``most`` seconds until two half-second windows are 90% idle. A stage that writes
    gigabytes otherwise leaves the next one timed against its own writeback and vacuum (a
    nightly runs a day after its bulk load, not seconds)."""
    t0 = time.perf_counter()
    os.sync()
    if dsn:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in vacuum or []:
                conn.execute(f"VACUUM (ANALYZE) {table}")
            conn.execute("CHECKPOINT")
    quiet = 0
    while quiet < 2 and time.perf_counter() - t0 < most:
        b0, t0_ = _busy()
        time.sleep(0.5)
        b1, t1 = _busy()
        quiet = quiet + 1 if (b1 - b0) <= 0.1 * max(1, t1 - t0_) else 0
    print(f"  (settled in {time.perf_counter() - t0:.1f} s)")


def settings_for(home: Path, **kw):
    return load_settings(home=home, env={}, now=kw.pop("now", NOW)).with_(**kw)


# -- synthetic market -----------------------------------------------------------------------
def bench_synthetic(tmp: Path, symbols: int) -> None:
    print(f"synthetic market: {symbols} symbols x 10 years of 1D and 1h, generated")
    p = SyntheticProvider(ProviderSettings("synthetic", options={"seed": 42}), clock=lambda: NOW)
    start = NOW - timedelta(days=3653)

    hourly = split_range(start, NOW, p.capabilities.max_range["1h"])

    def generate() -> int:
        rows = 0
        for i in range(symbols):
            sym = f"G{i:04d}"
            rows += p.fetch(FetchRequest.bars(sym, "1D", start, NOW)).height
            for s, e in hourly:
                rows += p.fetch(FetchRequest.bars(sym, "1h", s, e)).height
        return rows

    from marketlake.pipeline.providers import synthetic

    # a process's first intraday request loads the split built ahead of time (once per
    # process, like the imports above): timed on its own, then the caches cleared
    first = timed(lambda: p.fetch(FetchRequest.bars("G-FIRST", "1h", NOW - timedelta(days=1), NOW)))
    print(f"  a process's first intraday request: {first[0]:.2f} s (the compiled split loaded)")
    synthetic.clear_caches()
    t0c = time.process_time()
    wall, bars = timed(generate)
    cpu = time.process_time() - t0c
    print(f"  {bars:,} bars in {wall:.2f} s wall ({bars / wall:,.0f} bars/s), {cpu:.2f} s CPU")
    ROWS.append(("synthetic bars/s (millions)", f"{bars:,} bars", bars / wall / 1e6, ">= 1"))


def sync_child(home: Path, symbols: int) -> None:
    """One run of the synthetic sync in this (fresh) process, then its reference on the rows
    it landed; prints one JSON line (``bench_sync`` starts it)."""
    lake = Lake(home)
    add_universe(lake, [f"Y{i:04d}" for i in range(symbols)], "synthetic")
    settings = settings_for(home)
    start = (NOW - timedelta(days=3653)).date().isoformat()
    cpu0 = cpu_seconds()
    wall, res = timed(
        lambda: run_sync(settings, provider="synthetic", timeframes=["1D", "1h"], start=start)
    )
    cpu = cpu_seconds() - cpu0
    frame = lake.read("ohlcv").drop("period")
    refs = [cpu_timed(lambda: frame.write_parquet(home / "plain.parquet")) for _ in range(3)]
    ref, ref_cpu = (statistics.median(x[i] for x in refs) for i in (0, 1))
    out = {"wall": wall, "cpu": cpu, "ref": ref, "ref_cpu": ref_cpu, "rows": frame.height}
    print(json.dumps({**out, "status": res.status}))


def bench_sync(tmp: Path, symbols: int, runs: int) -> None:
    """``runs`` syncs, each in a fresh process as a user's ``marketlake sync`` is (the split
    and the synthetic market's caches loaded by the run itself; imports not timed), each against
    its reference in the same process; the ratio of the medians, and each run's."""
    print(f"sync --provider synthetic: {symbols} symbols x 10 years of 1D and 1h, {runs} runs")
    got = []
    for i in range(runs):
        settle()
        home = tmp / f"sync{i}"
        cmd = [sys.executable, __file__, "--sync-child", str(home), "--sync-symbols", str(symbols)]
        load0 = os.getloadavg()[0]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True)
        got.append(json.loads(run.stdout.strip().splitlines()[-1]))
        g = got[-1]
        print(
            f"  run {i + 1}: {g['rows']:,} rows ({g['status']}); ours {g['wall']:.2f} s wall, "
            f"{g['cpu']:.2f} s CPU; reference {g['ref']:.2f} s, {g['ref_cpu']:.2f} s CPU -> "
            f"{g['ref'] / g['wall']:.2f}x; load average {load0:.2f}"
        )
        shutil.rmtree(home, ignore_errors=True)
    med = {k: statistics.median(g[k] for g in got) for k in ("wall", "cpu", "ref", "ref_cpu")}
    each = sorted(g["ref"] / g["wall"] for g in got)
    rows = f"{got[0]['rows']:,} rows"
    row("sync synthetic vs write_parquet", med["wall"], med["ref"], rows, ">= 0.5")
    print(f"  per run: {', '.join(f'{x:.2f}x' for x in each)}")
    ROWS.append(("  the same in CPU time", rows, med["ref_cpu"] / med["cpu"], "-"))


def bench_ingest(tmp: Path, symbols: int, days: int) -> None:
    print(f"ingest: {symbols} symbols x {days} days, 5 commits")
    frame = make_bars(symbols, days)
    ref = median(lambda: frame.write_parquet(tmp / "ingest-plain.parquet"), 3)

    def ingest() -> None:
        lake = Lake(tmp / f"ingest-{uuid.uuid4().hex[:6]}")
        per = -(-symbols // 5) * days
        for i in range(0, frame.height, per):
            land_bars(lake, frame.slice(i, per), run_id="b", now=NOW, timeframe="1D")

    ours = median(ingest, 3)
    row("ingest vs write_parquet", ours, ref, f"{frame.height:,} rows", ">= 0.5")


def files_child(home: Path, src: Path, symbols: int, reference: bool) -> None:
    """In this (fresh) process: one files import of ``src`` (bars of ``symbols`` symbols)
    into a new lake at ``home``, or (``reference``) polars reading and writing the same
    file; prints its wall and CPU time as one JSON line (``bench_files`` starts it)."""
    if reference:
        plain = home / "files-plain.parquet"
        home.mkdir(parents=True, exist_ok=True)
        cpu0 = cpu_seconds()
        wall = timed(lambda: pl.read_parquet(src).write_parquet(plain))[0]
        print(json.dumps({"wall": wall, "cpu": cpu_seconds() - cpu0}))
        return
    lake = Lake(home)
    add_universe(lake, [f"S{i:05d}" for i in range(symbols)], "files")
    settings = settings_for(home)
    providers = dict(settings.providers)
    providers["files"] = ProviderSettings("files", options={"path": str(src)})
    settings = settings.with_(providers=providers)
    cpu0 = cpu_seconds()
    wall, res = timed(lambda: run_sync(settings, provider="files", start="2000-01-01"))
    out = {"wall": wall, "cpu": cpu_seconds() - cpu0, "rows": res.inserted}
    print(json.dumps({**out, "status": res.status}))


def bench_files(tmp: Path, rows: int, runs: int) -> None:
    """``runs`` imports of one parquet file of bars and as many runs of the reference
    (polars reading and writing the same file), alternated, each in a fresh process as a
    user's ``marketlake sync --provider files`` or script is; the ratio of the medians, and
    of each pair."""
    symbols = max(1, rows // 2520)
    print(f"files import: {symbols * 2520:,}-row parquet file ({symbols} symbols), {runs} runs")
    src = tmp / "bars.parquet"
    make_bars(symbols, 2520).select(
        "symbol", pl.col("ts").alias("date"), "open", "high", "low", "close", "volume"
    ).write_parquet(src)

    def child(home: Path, *extra: str) -> dict:
        settle()
        cmd = [sys.executable, __file__, "--files-child", str(home), "--files-source", str(src)]
        cmd += ["--files-rows", str(rows), *extra]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True)
        shutil.rmtree(home, ignore_errors=True)
        return json.loads(run.stdout.strip().splitlines()[-1])

    ours, refs = [], []
    for i in range(runs):  # the order alternating
        for which in ("ours", "ref") if i % 2 == 0 else ("ref", "ours"):
            if which == "ours":
                ours.append(child(tmp / f"files{i}"))
            else:
                refs.append(child(tmp / f"files-ref{i}", "--files-reference"))
        o, r = ours[-1], refs[-1]
        print(
            f"  run {i + 1}: {o['rows']:,} rows landed ({o['status']}); ours {o['wall']:.2f} s "
            f"wall, {o['cpu']:.2f} s CPU; reference {r['wall']:.2f} s, {r['cpu']:.2f} s CPU "
            f"-> {r['wall'] / o['wall']:.2f}x"
        )
    med = {
        f"{k}_{n}": statistics.median(g[k] for g in got)
        for n, got in (("ours", ours), ("ref", refs))
        for k in ("wall", "cpu")
    }
    each = sorted(r["wall"] / o["wall"] for o, r in zip(ours, refs, strict=True))
    size = f"{symbols * 2520:,} rows"
    row("files import vs read+write", med["wall_ours"], med["wall_ref"], size, ">= 0.5")
    print(f"  per run: {', '.join(f'{x:.2f}x' for x in each)}")
    ROWS.append(("  the same in CPU time", size, med["cpu_ref"] / med["cpu_ours"], "-"))


# -- compute --------------------------------------------------------------------------------
def cpu_seconds() -> float:
    """CPU time of this process, all threads (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_compute(tmp: Path, symbols: int, repeat: int = 5) -> None:
    from marketlake import kernels

    print(f"compute --full: {symbols} symbols x 2,520 daily bars in the lake")
    home = tmp / "compute"
    lake = Lake(home)
    land_bars(lake, make_bars(symbols, 2520), run_id="b", now=NOW, timeframe="1D")
    settings = settings_for(home)
    kernels.compute(
        make_bars(2, 300).select("symbol", "ts", "open", "high", "low", "close", "volume"),
        TALIB_SET,
    )

    def talib_pipeline() -> None:
        bars = lake.read("ohlcv").filter(pl.col("timeframe") == "1D").sort("symbol", "ts")
        res = talib_per_symbol(bars)
        cols = list(zip(*res, strict=True))
        out = bars.select("symbol", "ts").with_columns(
            [pl.Series(f"c{i}", np.concatenate(c)) for i, c in enumerate(cols)]
        )
        out.write_parquet(tmp / "talib.parquet")

    def raw_kernels() -> None:
        bars = lake.read("ohlcv").select("symbol", "ts", "open", "high", "low", "close", "volume")
        kernels.compute(bars, TALIB_SET).write_parquet(tmp / "kernels.parquet")

    def ours() -> None:
        shutil.rmtree(lake.path("indicators"), ignore_errors=True)
        res = run_compute(settings, indicators=TALIB_SET, full=True)
        assert res.status == "ok", res.errors

    times: dict[str, list[tuple[float, float]]] = {"ours": [], "talib": [], "raw": []}
    fns = {"ours": ours, "talib": talib_pipeline, "raw": raw_kernels}
    load0 = os.getloadavg()[0]
    for i in range(repeat):  # interleaved, the order alternating
        for name in list(fns) if i % 2 == 0 else list(fns)[::-1]:
            cpu0 = cpu_seconds()
            wall = timed(fns[name])[0]
            times[name].append((wall, cpu_seconds() - cpu0))
    print(f"  load average {load0:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for name, ts in times.items():
        w, c = [t[0] for t in ts], [t[1] for t in ts]
        print(
            f"  {name:6s} wall median {statistics.median(w):.2f} s ({min(w):.2f}-{max(w):.2f}), "
            f"CPU median {statistics.median(c):.2f} s ({min(c):.2f}-{max(c):.2f}), n={len(w)}"
        )
    o, t, r = (statistics.median(x[0] for x in times[k]) for k in ("ours", "talib", "raw"))
    co, ct, cr = (statistics.median(x[1] for x in times[k]) for k in ("ours", "talib", "raw"))
    row("compute --full vs TA-Lib pipeline", o, t, "8 indicators", ">= 3")
    row("compute --full vs raw kernels + write", o, r, "8 indicators", ">= 0.5")
    ROWS.append(("  the same in CPU time: vs TA-Lib pipeline", "8 indicators", ct / co, "-"))
    ROWS.append(("  the same in CPU time: vs raw kernels", "8 indicators", cr / co, "-"))
    cpu0 = cpu_seconds()
    wall, res = timed(lambda: run_compute(settings, full=True))
    cpu = cpu_seconds() - cpu0
    print(
        f"  compute --full, default set, over the stored rows: {wall:.2f} s, {cpu:.2f} s CPU "
        f"({res.inserted:,} inserted, {res.updated:,} updated)"
    )
    ROWS.append(("compute --full default set over stored (s)", f"{res.updated:,} upd", wall, "-"))
    cpu0 = cpu_seconds()
    again, res = timed(lambda: run_compute(settings, full=True))
    cpu = cpu_seconds() - cpu0
    print(
        f"  its re-run: {again:.2f} s, {cpu:.2f} s CPU "
        f"({res.inserted} inserted, {res.updated} updated); load average {os.getloadavg()[0]:.2f}"
    )
    ROWS.append(("  its no-change re-run (s)", "0 upd", again, "< the run"))
    shutil.rmtree(home, ignore_errors=True)


# -- nightly --------------------------------------------------------------------------------
def bench_nightly(tmp: Path, symbols: int, dsn: str | None) -> None:
    from marketlake.pipeline.stages.load import run_load

    print(f"nightly increment: {symbols} symbols, one new day (sync, compute, load)")
    home = tmp / "nightly"
    lake = Lake(home)
    add_universe(lake, [f"N{i:04d}" for i in range(symbols)], "synthetic")
    day0 = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)
    schemas = [f"bench_nightly_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    settings = settings_for(home, now=day0, dsn=dsn, pg_schema=schemas[0])
    run_sync(settings, provider="synthetic", timeframes=["1D"], start="2016-01-01")
    run_compute(settings)
    # the same state twice: one increment timed, one profiled (the profiler's own cost kept
    # out of the timed run), each on its own lake and schema
    homes = [home, tmp / "nightly-profiled"]
    shutil.copytree(home, homes[1])
    if dsn:
        for h, schema in zip(homes, schemas, strict=True):
            run_load(settings_for(h, now=day0, dsn=dsn, pg_schema=schema))

    def increment(h: Path, schema: str, day: int, *extra: str) -> list[str]:
        """The increment of ``day`` days after the lake's last as a scheduler runs it: a
        fresh process (bench/nightly.py)."""
        cmd = [sys.executable, str(ROOT / "bench" / "nightly.py"), "--home", str(h)]
        cmd += ["--now", (day0 + timedelta(days=day)).isoformat(), "--schema", schema]
        cmd += ["--dsn", dsn] if dsn else []
        run = subprocess.run([*cmd, *extra], capture_output=True, text=True, check=True)
        return run.stdout.strip().splitlines()

    settle(dsn, [f'"{s}".{t}' for s in schemas for t in ("ohlcv", "indicators")] if dsn else [])
    runs = []  # three consecutive nights on the same lake and schema
    for day in (1, 2, 3):
        lines = increment(homes[0], schemas[0], day)
        runs.append((json.loads(lines[-1]), lines[:-1]))
    middle = sorted(runs, key=lambda r: r[0]["cpu"])[1]
    print(f"  the median night's stages (of {len(runs)} consecutive nights):")
    print("\n".join(middle[1]))
    for key in ("cpu", "wall"):
        each = ", ".join(f"{r[0][key]:.2f}" for r in runs)
        print(f"  {key} s per night: {each}")
    for day, (totals, _) in enumerate(runs, 1):
        each = ", ".join(f"{k} {v:.2f}" for k, v in totals["stages"].items())
        print(f"  night {day}, CPU s by stage: {each}")
    profiled = increment(homes[1], schemas[1], 1, "--profile")
    start = next(i for i, line in enumerate(profiled) if "main thread profile" in line)
    cpu = json.loads(profiled[-1])["cpu"]
    print(f"  the first night again on a copy, profiled ({cpu:.2f} s CPU under the profiler):")
    print("\n".join(profiled[start:-1]))
    median = {k: statistics.median(r[0][k] for r in runs) for k in ("cpu", "wall")}
    ROWS.append(("nightly increment, CPU (s)", f"{symbols} symbols", median["cpu"], "< 3"))
    ROWS.append(("nightly increment, wall (s)", f"{symbols} symbols", median["wall"], "< 3"))
    if dsn:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    for h in homes:
        shutil.rmtree(h, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2000, help="compute: symbols x 2,520 bars")
    ap.add_argument("--sync-symbols", type=int, default=300)
    ap.add_argument("--sync-runs", type=int, default=5, help="sync: runs, each a fresh process")
    ap.add_argument("--sync-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--gen-symbols", type=int, default=100)
    ap.add_argument("--ingest-symbols", type=int, default=2000)
    ap.add_argument("--ingest-days", type=int, default=5040)
    ap.add_argument("--files-rows", type=int, default=10_000_000)
    ap.add_argument("--files-runs", type=int, default=5, help="files: runs, each a fresh process")
    ap.add_argument("--files-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--files-source", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--files-reference", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--nightly-symbols", type=int, default=2600)
    ap.add_argument("--repeat", type=int, default=5, help="compute: interleaved runs of each")
    ap.add_argument("--dsn", default=os.environ.get("MARKETLAKE_BENCH_DSN"))
    ap.add_argument(
        "--skip", nargs="*", default=[], help="synthetic sync ingest files compute nightly"
    )
    args = ap.parse_args()
    if args.sync_child:
        sync_child(args.sync_child, args.sync_symbols)
        return
    if args.files_child:
        symbols = max(1, args.files_rows // 2520)
        files_child(args.files_child, args.files_source, symbols, args.files_reference)
        return
    tmp = Path(tempfile.mkdtemp(prefix="marketlake-bench-pipeline-"))
    try:
        if "synthetic" not in args.skip:
            settle()
            bench_synthetic(tmp, args.gen_symbols)
        if "sync" not in args.skip:
            bench_sync(tmp, args.sync_symbols, args.sync_runs)
        if "ingest" not in args.skip:
            settle()
            bench_ingest(tmp, args.ingest_symbols, args.ingest_days)
        if "files" not in args.skip:
            bench_files(tmp, args.files_rows, args.files_runs)
        if "compute" not in args.skip:
            settle()
            bench_compute(tmp, args.symbols, args.repeat)
        if "nightly" not in args.skip:
            bench_nightly(tmp, args.nightly_symbols, args.dsn)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{'measure':44} {'size':>16} {'value':>8}  target")
    for name, note, value, target in ROWS:
        print(f"{name:44} {note:>16} {value:8.2f}  {target}")


if __name__ == "__main__":
    main()
