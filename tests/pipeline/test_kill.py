"""kill -9 during a large sync, then the same sync again: the lake equals one clean run's."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import polars as pl
import pytest
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake import Lake
from marketlake.pipeline import universe

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = [f"K{i:03d}" for i in range(70)] + ["BRK.B", "x'; DROP TABLE ohlcv;--"]
ARGS = ["sync", "--timeframes", "1D", "--start", "2019-01-01", "--json"]
SHORT = ["sync", "--timeframes", "1D", "--start", "2025-06-01"]


def _env(home: Path) -> dict:
    return {
        **os.environ,
        "MARKETLAKE_HOME": str(home),
        "MARKETLAKE_NOW": "2026-11-20T18:00:00+00:00",
    }


def _prepare(home: Path, cwd: Path, symbols=SYMBOLS, batch_tasks: int = 6) -> None:
    universe.add_many(Lake(home), list(symbols), run_id="u", provider="synthetic")
    (cwd / "marketlake.toml").write_text(f"[sync]\nbatch_tasks = {batch_tasks}\nconcurrency = 2\n")


def _sync(home: Path, cwd: Path, args=ARGS) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marketlake.cli", *args],
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
        seen, at, gap = _commits(killed), time.time(), 0.05
        while seen < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
            if (now := _commits(killed)) != seen:
                seen, at, gap = now, time.time(), time.time() - at
        # land anywhere before the next commit (a fixed wait could outlast the whole run)
        time.sleep(rng.random() * gap)
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
    res = json.loads(again.stdout.strip().splitlines()[-1])
    assert res["rows"]["inserted"] == 0 and res["rows"]["updated"] == 0


# A real sync whose ohlcv commit number PAUSE_AT stops after its data files are written and
# before the commit (listing them in READY), so the parent can kill -9 it exactly there.
_PAUSED_WRITER = """
import os, sys, time
from marketlake.lake import writes
real = writes.commit_files
seen = [0]
def paused(dt, tdef, adds, props):
    if tdef.name == "ohlcv":
        seen[0] += 1
        if seen[0] == int(os.environ["PAUSE_AT"]):
            with open(os.environ["READY"] + ".tmp", "w") as f:
                f.write("\\n".join(a.path for a in adds))
            os.rename(os.environ["READY"] + ".tmp", os.environ["READY"])
            time.sleep(600)
    return real(dt, tdef, adds, props)
writes.commit_files = paused
from marketlake.cli import app
sys.argv = ["marketlake", *sys.argv[1:]]
app()
"""


def _kill_9_when(proc: subprocess.Popen, reached) -> None:
    """kill -9 ``proc`` once ``reached()`` (within 120 s); fails, with the end of its stderr,
    when it ended or never got there."""
    try:
        deadline = time.time() + 120
        while not reached() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        ended = proc.poll() is not None
        assert reached() and not ended, proc.stderr.read().decode()[-2000:] if ended else "late"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()


def _committed(home: Path) -> set[str]:
    paths = Lake(home).table("ohlcv").get_add_actions(flatten=True).column("path")
    return {unquote(p) for p in paths.to_pylist()}


def _on_disk(home: Path) -> set[str]:
    root = home / "lake" / "ohlcv"
    return {
        str(p.relative_to(root))
        for p in root.rglob("*.parquet")
        if not p.relative_to(root).parts[0].startswith("_")
    }


def _cli(home: Path, args: list[str], monkeypatch) -> dict:
    """``marketlake <args> --json`` in this process; its summary."""
    monkeypatch.chdir(home)
    res = CliRunner().invoke(app, [*args, "--json"], env=_env(home))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_kill_9_between_files_and_commit_then_maintain_removes_exactly_the_orphans(
    tmp_path, monkeypatch
):
    # regression: the orphan test planted files; here a real writer dies mid-commit
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir()
    _prepare(clean, clean, SYMBOLS[:12], batch_tasks=3)
    shutil.copytree(clean, killed)
    _cli(clean, SHORT, monkeypatch)
    ready = tmp_path / "ready"
    env = {**_env(killed), "PAUSE_AT": "3", "READY": str(ready)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_WRITER, *SHORT, "--json"],
        cwd=killed,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _kill_9_when(proc, ready.exists)
    uncommitted = {unquote(p) for p in ready.read_text().split("\n")}
    assert uncommitted and uncommitted <= _on_disk(killed)
    assert _on_disk(killed) == _committed(killed) | uncommitted  # nothing else lies around
    assert _commits(killed) == 1 + 2  # the table's creation and the two commits before

    report = _cli(killed, ["maintain", "--vacuum-hours", "0"], monkeypatch)
    assert report["ohlcv"]["orphans_removed"] == len(uncommitted), report
    left = _on_disk(killed)
    assert not (left & uncommitted)
    assert left == _committed(killed)

    _cli(killed, SHORT, monkeypatch)
    assert _state(killed).equals(_state(clean))


# A real sync whose every batch is written ahead (the bulk load's path, above its threshold
# of rows here for a handful of symbols): batches are checked, written and committed on three
# threads at once, so a kill lands with files of uncommitted batches on disk.
_AHEAD_WRITER = """
import sys
from marketlake.pipeline.stages import ingest
ingest.WRITE_AHEAD_ROWS = 1
from marketlake.cli import app
sys.argv = ["marketlake", *sys.argv[1:]]
app()
"""


@pytest.mark.slow
def test_kill_9_while_batches_are_written_ahead_then_rerun_and_maintain(tmp_path, monkeypatch):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir()
    _prepare(clean, clean, SYMBOLS[:40], batch_tasks=2)
    shutil.copytree(clean, killed)
    _cli(clean, ARGS, monkeypatch)
    proc = subprocess.Popen(
        [sys.executable, "-c", _AHEAD_WRITER, *ARGS],
        cwd=killed,
        env=_env(killed),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _kill_9_when(proc, lambda: _commits(killed) >= 4)
    partial = _state(killed)
    assert 0 < partial.height < _state(clean).height
    assert partial.select("symbol", "timeframe", "ts").is_duplicated().sum() == 0

    # the re-run writes the rest (ahead again) and leaves what it finds alone
    done = subprocess.run(
        [sys.executable, "-c", _AHEAD_WRITER, *ARGS],
        cwd=killed,
        env=_env(killed),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _state(killed).equals(_state(clean))
    # files of batches the kill left uncommitted are orphans: maintain removes exactly them
    orphans = _on_disk(killed) - _committed(killed)
    report = _cli(killed, ["maintain", "--vacuum-hours", "0"], monkeypatch)
    assert report["ohlcv"]["orphans_removed"] == len(orphans), report
    assert _on_disk(killed) == _committed(killed)
    assert _state(killed).equals(_state(clean))
