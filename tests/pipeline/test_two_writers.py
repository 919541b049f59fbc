"""Two writers on one lake: the second waits (``--wait``) or exits 1 naming the holder, and no
interleaving ever doubles a key."""

import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime

import polars as pl
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake import Lake
from marketlake.lake.lock import WriterLock
from marketlake.pipeline import universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages.compute import run_compute
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
ENV = {"MARKETLAKE_NOW": NOW.isoformat()}
SYMBOLS = ("AAA", "BBB")
HOLD = (
    "import sys, time; from pathlib import Path; from marketlake.lake.lock import WriterLock;"
    "WriterLock(Path(sys.argv[1])).acquire('held-run', 'sync'); print('held', flush=True);"
    "time.sleep(float(sys.argv[2]))"
)


def _universe(home):
    lake = Lake(home)
    for s in SYMBOLS:
        universe.add(lake, s, run_id="u", provider="synthetic", asset_type="equity")
    return lake


def _doubled(lake: Lake, table: str) -> int:
    keys = lake.read(table).select("symbol", "timeframe", "ts")
    return keys.height - keys.unique().height


def _pair(*calls):
    errors = []

    def run(call):
        try:
            call()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_second_writer_without_wait_exits_1_naming_the_holder(home):
    # regression: two syncs at once both wrote, doubling ohlcv keys
    _universe(home)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home / "lake"), "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        info = WriterLock(home / "lake").holder()
        env = {**ENV, "MARKETLAKE_HOME": str(home)}
        busy = CliRunner().invoke(app, ["sync", "--timeframes", "1D"], env=env)
        assert busy.exit_code == 1
        line = busy.output.strip().splitlines()[-1]
        assert "held-run" in line and info.started_at.isoformat(timespec="seconds") in line
        assert not Lake(home).exists("ohlcv")
        waited = CliRunner().invoke(app, ["sync", "--timeframes", "1D", "--wait"], env=env)
        assert waited.exit_code == 0, waited.output
    finally:
        holder.kill()
        holder.wait()
    assert Lake(home).read("ohlcv").height > 0


def test_two_sync_processes_at_once_double_nothing(home):
    # regression: two sync processes with the same symbols doubled ohlcv (102,910 rows for
    # 51,455 keys) because each blind append trusted its own snapshot
    _universe(home)
    env = {**os.environ, **ENV, "MARKETLAKE_HOME": str(home)}
    cmd = [sys.executable, "-m", "marketlake.cli", "sync", "--timeframes", "1D", "--wait"]
    cmd += ["--start", "2025-06-01"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL) for _ in range(2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    assert _doubled(Lake(home), "ohlcv") == 0


def test_sync_pairs_repeated_double_no_key(home):
    # regression: 2 of 4 concurrent sync pairs doubled keys; 20 pairs here, 0 doubled
    base = home.parent / "base"
    _universe(base)
    settings = load_settings(home=home, env={}, now=NOW, lock_wait=True)
    call = lambda: run_sync(settings, timeframes=["1D"], start="2025-06-01")  # noqa: E731
    for _ in range(20):
        shutil.rmtree(home)
        shutil.copytree(base, home)
        _pair(call, call)
        assert _doubled(Lake(home), "ohlcv") == 0


def test_compute_pairs_on_a_lake_without_indicators_double_no_key(home):
    # regression: two compute runs on a lake without an indicators table doubled it 3 of 3
    # times
    lake = _universe(home)
    settings = load_settings(home=home, env={}, now=NOW, lock_wait=True)
    run_sync(settings, timeframes=["1D"], start="2025-06-01")
    call = lambda: run_compute(settings, indicators=["sma(5)"])  # noqa: E731
    for _ in range(20):
        shutil.rmtree(lake.path("indicators"), ignore_errors=True)
        _pair(call, call)
        got = lake.read("indicators")
        assert got.height > 0 and _doubled(lake, "indicators") == 0
        assert got.height == lake.read("ohlcv").height


def test_busy_stage_in_process_is_one_clear_error(home):
    lake = _universe(home)
    settings = load_settings(home=home, env={}, now=NOW)
    seen = []
    with_lock = threading.Event()
    release = threading.Event()

    def hold():
        from marketlake.lake.lock import writer

        with writer(lake.root, "holder-1", "daily"):
            with_lock.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    with_lock.wait(5)
    try:
        run_compute(settings)
    except Exception as exc:
        seen.append(exc)
    finally:
        release.set()
        t.join()
    assert len(seen) == 1 and "holder-1 (daily)" in str(seen[0])
    assert pl.DataFrame(lake.read("sync_logs")).filter(pl.col("stage") == "compute").is_empty()
