"""The writer lock: one writer per lake, across processes and threads, re-entrant in one run."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime

import pytest

from marketlake.errors import LakeBusyError
from marketlake.lake.lock import WriterLock, writer

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from marketlake.lake.lock import WriterLock
    WriterLock(Path(sys.argv[1])).acquire(sys.argv[2], "sync")
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
    """
)


def _holder_process(root, run_id, seconds=30.0):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), run_id, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_busy_lake_names_the_holder_run_and_start(tmp_path):
    root = tmp_path / "lake"
    proc = _holder_process(root, "run-A")
    try:
        lock = WriterLock(root)
        info = lock.holder()
        assert info is not None and info.run_id == "run-A" and info.stage == "sync"
        assert info.pid == proc.pid
        with pytest.raises(LakeBusyError) as caught:
            lock.acquire("run-B", "compute")
        err = caught.value
        assert err.holder.run_id == "run-A"
        assert str(err) == (
            f"a run run-A (sync) started at "
            f"{info.started_at.isoformat(timespec='seconds')} is in progress"
        )
        t0 = time.monotonic()
        with pytest.raises(LakeBusyError):
            lock.acquire("run-B", "compute", wait=0.3)
        assert time.monotonic() - t0 >= 0.3
    finally:
        proc.kill()
        proc.wait()


def test_wait_blocks_until_the_holder_is_gone(tmp_path):
    root = tmp_path / "lake"
    proc = _holder_process(root, "run-A", seconds=0.5)
    lock = WriterLock(root)
    t0 = time.monotonic()
    try:
        stale = lock.acquire("run-B", "compute", wait=True)
    finally:
        proc.wait()
    assert time.monotonic() - t0 >= 0.3
    # the holder exited without release(): its record comes back as the interrupted run
    assert stale is not None and stale.run_id == "run-A"
    assert lock.holder().run_id == "run-B"
    lock.release()
    assert lock.holder() is None


def test_a_killed_holder_leaves_a_stale_record_and_no_lock(tmp_path):
    root = tmp_path / "lake"
    proc = _holder_process(root, "run-dead")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lock = WriterLock(root)
    assert lock.holder() is None  # the flock died with the process
    with writer(root, "run-next", "sync") as stale:
        assert stale is not None and stale.run_id == "run-dead" and stale.stage == "sync"
        assert lock.holder().run_id == "run-next"
    assert lock.holder() is None
    with writer(root, "run-after", "sync") as stale:
        assert stale is None  # a clean release leaves no record


def test_reentrant_for_the_same_run_and_nested_stages(tmp_path):
    root = tmp_path / "lake"
    with writer(root, "daily-1", "daily"):
        with writer(root, "daily-1", "universe"):  # same run id
            pass
        with writer(root, "sync-2", "sync"):  # a stage nested in the run that holds it
            assert WriterLock(root).holder().run_id == "daily-1"
        assert WriterLock(root).holder().run_id == "daily-1"
    assert WriterLock(root).holder() is None


def test_another_thread_is_another_writer(tmp_path):
    root = tmp_path / "lake"
    errors = []

    def other():
        try:
            with writer(root, "other", "compute"):
                pass
        except LakeBusyError as exc:
            errors.append(exc)

    with writer(root, "first", "sync"):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1 and errors[0].holder.run_id == "first"
    done = threading.Event()

    def waiter():
        with writer(root, "other", "compute", wait=True):
            done.set()

    with writer(root, "first", "sync"):
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.2)
        assert not done.is_set()
    t.join(5)
    assert done.is_set()


def test_holder_started_at_is_utc(tmp_path):
    root = tmp_path / "lake"
    before = datetime.now(UTC)
    with writer(root, "r", "maintain"):
        info = WriterLock(root).holder()
    assert info.started_at.tzinfo is not None and info.started_at >= before.replace(microsecond=0)
