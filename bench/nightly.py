"""One nightly increment (sync from the synthetic market, compute, load into PostgreSQL) in a
fresh process, as a scheduler runs it: imports, the kernels' cache load and the exchange
calendars count. Prints per stage the process CPU time (every thread: fetch workers, numba and
polars pools), the main thread's share and the wall time, the other threads' CPU per stage by
kind (Python threads by name, native pools by their thread name), with ``--profile`` the main
thread's profile, and last one JSON line of the totals. The profiler costs the main thread
about as much CPU as it measures (imports alone take three times as long under it), so the
timed run goes without it; ``bench/pipeline.py`` builds the lake, runs this once timed and
once profiled on a copy of the lake and of its database schema.

    python bench/nightly.py --home DIR --now 2026-01-06T22:00:00+00:00 [--dsn ... --schema ...]
                            [--profile]
"""

from __future__ import annotations

import time

CPU0, WALL0 = time.process_time(), time.perf_counter()  # before any import

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
from collections import Counter  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

_ENDED: Counter[str] = Counter()  # CPU seconds of Python threads that ended, by kind
_ENDED_LOCK = threading.Lock()
_run = threading.Thread.run


def _timed_run(self: threading.Thread) -> None:
    """``Thread.run``, adding the thread's CPU to :data:`_ENDED` when it ends (pool threads
    are gone by the end of their stage)."""
    try:
        _run(self)
    finally:
        with _ENDED_LOCK:
            _ENDED[_kind(self.name)] += time.thread_time()


threading.Thread.run = _timed_run  # type: ignore[method-assign]


def _kind(name: str) -> str:
    """A thread's name without its number: ``marketlake-fetch_0`` -> ``marketlake-fetch``."""
    return re.sub(r"[-_ ]?\d+$", "", re.sub(r" \(.*\)$", "", name)) or name


def _threads() -> Counter[str]:
    """CPU seconds per kind of thread: the ended Python threads', and the living threads'
    other than the main one (native pools by their name: polars, numba's workers, tokio...)
    from /proc."""
    out = Counter(_ENDED)
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # not Linux: the ended Python threads only
        return out
    for tid in tasks:
        if int(tid) == threading.main_thread().native_id:
            continue
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:  # ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        name = names.get(int(tid), comm)
        if int(tid) in names and not name.startswith("Thread"):
            continue  # a living Python thread: counted when it ends
        out[_kind(name)] += (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--now", required=True, type=datetime.fromisoformat)
    ap.add_argument("--dsn")
    ap.add_argument("--schema", default="public")
    ap.add_argument("--profile", action="store_true", help="profile the main thread")
    ap.add_argument("--top", type=int, default=30, help="profile rows printed")
    args = ap.parse_args()
    stages: dict[str, tuple[float, float, float]] = {
        "interpreter": (time.process_time() - CPU0, time.thread_time(), time.perf_counter() - WALL0)
    }
    prof = cProfile.Profile(time.thread_time)  # the main thread's CPU, not the machine's load

    threads: dict[str, Counter[str]] = {}

    def stage(name, fn):
        t0 = _threads()
        c, m, w = time.process_time(), time.thread_time(), time.perf_counter()
        if args.profile:
            prof.enable()
        try:
            return fn()
        finally:
            prof.disable()
            stages[name] = (
                time.process_time() - c,
                time.thread_time() - m,
                time.perf_counter() - w,
            )
            threads[name] = _threads() - t0

    def imports():
        from marketlake.pipeline.config import load_settings
        from marketlake.pipeline.stages.compute import run_compute
        from marketlake.pipeline.stages.ingest import run_sync
        from marketlake.pipeline.stages.load import run_load

        return load_settings, run_sync, run_compute, run_load

    load_settings, run_sync, run_compute, run_load = stage("imports", imports)
    settings = load_settings(home=args.home, env={}, now=args.now).with_(
        dsn=args.dsn, pg_schema=args.schema
    )
    sync = stage("sync", lambda: run_sync(settings, provider="synthetic", timeframes=["1D"]))
    comp = stage("compute", lambda: run_compute(settings))
    if args.dsn:
        stage("load", lambda: run_load(settings))
    print(f"  {sync.inserted} bars synced, {comp.inserted} indicator rows computed")
    print(f"  {'stage':12} {'CPU s':>7} {'main thr':>9} {'wall s':>7}")
    for name, (cpu, main_cpu, wall) in stages.items():
        print(f"  {name:12} {cpu:7.2f} {main_cpu:9.2f} {wall:7.2f}")
    cpu = sum(s[0] for s in stages.values())
    wall = sum(s[2] for s in stages.values())
    load = os.getloadavg()
    print(f"  {'total':12} {cpu:7.2f} {'':9} {wall:7.2f}   (load average {load[0]:.1f})")
    print("  other threads' CPU s per stage, by kind:")
    for name, kinds in threads.items():
        if kinds:
            text = ", ".join(f"{k} {v:.2f}" for k, v in kinds.most_common() if v >= 0.005)
            print(f"    {name:10} {text}")
    if args.profile:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
        print(f"  main thread profile (CPU, cumulative, top {args.top}):")
        print("\n".join("    " + line for line in out.getvalue().splitlines()[6:] if line.strip()))
    per_stage = {name: round(v[0], 3) for name, v in stages.items()}
    print(json.dumps({"cpu": cpu, "wall": wall, "load": load[0], "stages": per_stage}))


if __name__ == "__main__":
    main()
