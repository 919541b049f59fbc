"""kill -9 during a large sync, then the same sync again: the lake equals one clean run's."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from marketlake.lake import Lake
from marketlake.pipeline import universe

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = [f"K{i:03d}" for i in range(70)] + ["BRK.B", "x'; DROP TABLE ohlcv;--"]
ARGS = ["sync", "--timeframes", "1D", "--start", "2019-01-01", "--json"]


def _env(home: Path) -> dict:
    return {
        **os.environ,
        "MARKETLAKE_HOME": str(home),
        "MARKETLAKE_NOW": "2026-11-20T18:00:00+00:00",
    }


def _prepare(home: Path, cwd: Path) -> None:
    lake = Lake(home)
    for s in SYMBOLS:
        universe.add(lake, s, run_id="u", provider="synthetic")
    (cwd / "marketlake.toml").write_text("[sync]\nbatch_tasks = 6\nconcurrency = 2\n")


def _sync(home: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marketlake.cli", *ARGS],
        cwd=cwd,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _commits(home: Path) -> int:
    log = home / "lake" / "ohlcv" / "_delta_log"
    return len(list(log.glob("*.json"))) if log.exists() else 0


def _state(home: Path) -> pl.DataFrame:
    cols = [
        "symbol",
        "timeframe",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "adj_close",
        "is_final",
        "provider",
    ]
    return Lake(home).read("ohlcv").select(cols).sort("symbol", "timeframe", "ts")


@pytest.mark.slow
def test_kill_9_then_rerun_equals_a_clean_run(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for h in (clean, killed):
        h.mkdir()
        _prepare(h, h)
    assert _sync(clean, clean).returncode == 0

    rng = random.Random(7)
    kills = 0
    for _ in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "marketlake.cli", *ARGS],
            cwd=killed,
            env=_env(killed),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        target = _commits(killed) + rng.randint(1, 3)
        deadline = time.time() + 120
        while _commits(killed) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.random() * 0.3)  # land anywhere between two commits
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1, "the sync finished before it could be killed"
    partial = _state(killed)
    assert 0 < partial.height < _state(clean).height

    done = _sync(killed, killed)
    assert done.returncode == 0, done.stderr
    a, b = _state(clean), _state(killed)
    assert a.height == b.height
    assert a.equals(b)
    assert b.select("symbol", "timeframe", "ts").is_duplicated().sum() == 0
    again = _sync(killed, killed)
    import json

    res = json.loads(again.stdout.strip().splitlines()[-1])
    assert res["rows"]["inserted"] == 0 and res["rows"]["updated"] == 0
