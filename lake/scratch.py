"""Scratch directories for spools, spills and upload staging that never outlive a crash.

Every scratch directory lives under one root (``<home>/.scratch``, or the system temporary
directory when no home is given) and holds a lock file its process keeps locked (``flock``)
while it works. The kernel drops that lock however the process ends, ``kill -9`` included,
so making a scratch directory first removes every sibling whose lock can be taken: what a
killed push, merge or upload left behind goes on the next run, and a live one is never touched.
A directory is made under a ``.new-`` name, locked, then renamed, so no sweep sees it unlocked.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

LOCK = ".owner"
NEW = ".new-"  # a directory being made: locked, then renamed to its name
GRACE_S = 60.0  # a NEW directory older than this lost its maker before the rename


def root(home: Path | None = None) -> Path:
    """Where scratch directories of ``home`` (or of no home) live."""
    if home is not None:
        return Path(home) / ".scratch"
    return Path(tempfile.gettempdir()) / f"marketlake-scratch-{os.getuid()}"


class Scratch:
    """A scratch directory (``.path``), locked while open; :meth:`close` removes it.

    Usable as a context manager."""

    def __init__(self, kind: str, home: Path | None = None) -> None:
        base = root(home)
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        sweep(base)
        made = Path(tempfile.mkdtemp(prefix=f"{NEW}{kind}-", dir=base))
        self._fd: int | None = os.open(made / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = base / made.name[len(NEW) :]  # visible to sweeps only once locked
        made.rename(self.path)

    def close(self) -> None:
        if self._fd is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.close()


def sweep(base: Path, grace_s: float | None = None) -> list[Path]:
    """Remove the scratch directories under ``base`` that no live process holds; the removed."""
    grace = GRACE_S if grace_s is None else grace_s
    removed = []
    try:
        entries = list(base.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        try:
            if not entry.is_dir():
                continue
            if entry.name.startswith(NEW):  # its maker may be between mkdtemp and rename
                if time.time() - entry.stat().st_mtime > grace:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
                continue
            fd = os.open(entry / LOCK, os.O_RDWR)
        except FileNotFoundError:  # gone meanwhile, or its lock file is: nobody holds it
            if entry.exists():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live process works in it
        finally:
            os.close(fd)  # releases the lock taken (if any) before the directory goes
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


__all__ = ["GRACE_S", "Scratch", "root", "sweep"]
