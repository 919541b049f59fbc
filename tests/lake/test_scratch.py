"""Scratch directories clean up after a kill -9: the next one made removes every directory
whose process is gone, never one a live process works in."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from marketlake.lake import scratch
from marketlake.lake.scratch import Scratch

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from marketlake.lake.scratch import Scratch
    work = Scratch("push", Path(sys.argv[1]))
    (work.path / "spill.bin").write_bytes(b"x" * 1024)
    print(work.path, flush=True)
    time.sleep(600)
    """
)


def _holder(home) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home)], stdout=subprocess.PIPE, text=True
    )
    return proc, proc.stdout.readline().strip()


def test_a_killed_processs_scratch_goes_on_the_next_run_a_live_ones_stays(tmp_path):
    home = tmp_path / "home"
    killed, stale = _holder(home)
    live, busy = _holder(home)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        with Scratch("push", home) as mine:
            assert mine.is_dir()
            left = {p.name for p in scratch.root(home).iterdir()}
            assert stale.rsplit("/", 1)[1] not in left  # the killed one's, removed
            assert busy.rsplit("/", 1)[1] in left  # a live process's, kept
        assert not mine.exists()  # its own, removed when done
    finally:
        live.kill()
        live.wait(timeout=10)
        killed.stdout.close()
        live.stdout.close()
    Scratch("again", home).close()
    assert list(scratch.root(home).iterdir()) == []


def test_a_directory_left_half_made_goes_after_the_grace(tmp_path):
    base = scratch.root(tmp_path)
    half = base / f"{scratch.NEW}push-abc"
    half.mkdir(parents=True)
    assert scratch.sweep(base) == []  # its maker may still rename it
    assert scratch.sweep(base, grace_s=-1) == [half]
