"""The lake's one writer lock: at most one run writes a lake at a time.

An OS file lock (``fcntl.flock``) on ``<lake root>/.writer.lock`` dies with the process that
holds it, so a killed run never leaves the lake locked. Beside it, ``.writer.json`` records who
holds it (run id, stage, start time, pid, host) for the error a second writer prints. A record
found by a new holder belongs to a run that died without releasing: ``acquire`` returns it so
the caller can mark that run interrupted.

The lock is re-entrant inside one process: a nested acquire with the holder's run id, or from
the context that took it (``daily`` -> ``sync`` -> ``compute`` -> ``load``), only counts depth.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from marketlake.errors import LakeBusyError
from marketlake.lake.atomic import atomic_write_bytes

LOCK_FILE = ".writer.lock"
RECORD_FILE = ".writer.json"
_POLL_S = 0.05
_GRACE_S = 0.2  # a concurrent holder() probe holds the flock for microseconds


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) the writer lock."""

    run_id: str
    stage: str
    started_at: datetime
    pid: int
    host: str

    def to_json(self) -> bytes:
        return json.dumps({**asdict(self), "started_at": self.started_at.isoformat()}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LockInfo:
        d = json.loads(data)
        return cls(
            run_id=str(d["run_id"]),
            stage=str(d["stage"]),
            started_at=datetime.fromisoformat(d["started_at"]),
            pid=int(d["pid"]),
            host=str(d["host"]),
        )


@dataclass
class _Held:
    fd: int
    info: LockInfo
    depth: int


_HELD: dict[str, _Held] = {}  # lake root -> this process's hold on it
_GUARD = threading.Lock()
_CONTEXT: ContextVar[frozenset[str]] = ContextVar("marketlake_writer_lock", default=frozenset())


class WriterLock:
    """The writer lock of the lake under ``lake_root``."""

    def __init__(self, lake_root: Path) -> None:
        self.root = Path(lake_root)
        self._key = str(self.root.absolute())

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def record_path(self) -> Path:
        return self.root / RECORD_FILE

    def holder(self) -> LockInfo | None:
        """Who holds the lock now (None when it is free)."""
        with _GUARD:
            held = _HELD.get(self._key)
        if held is not None:
            return held.info
        record = self._record()
        if record is None or not self.lock_path.exists():
            return None
        fd = os.open(self.lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._record() or record
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None  # a record left by a run that died
        finally:
            os.close(fd)

    def acquire(self, run_id: str, stage: str, *, wait: float | bool = False) -> LockInfo | None:
        """Take the lock for ``run_id``; ``wait``: False raises :class:`LakeBusyError` at once
        when another run holds it, True blocks, a number waits that many seconds.

        Returns the record of a previous holder that died without releasing, else None.
        """
        with _GUARD:
            held = _HELD.get(self._key)
            if held is not None and (held.info.run_id == run_id or self._key in _CONTEXT.get()):
                held.depth += 1
                return None
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._flock(fd, wait)
        except BaseException:
            os.close(fd)
            raise
        try:
            stale = self._record()
            info = LockInfo(run_id, stage, datetime.now(UTC), os.getpid(), socket.gethostname())
            atomic_write_bytes(self.record_path, info.to_json())
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        with _GUARD:
            _HELD[self._key] = _Held(fd, info, 1)
        _CONTEXT.set(_CONTEXT.get() | {self._key})
        return stale

    def release(self) -> None:
        """Release one level of the lock; the last one removes the record and unlocks."""
        with _GUARD:
            held = _HELD.get(self._key)
            if held is None:
                return
            held.depth -= 1
            if held.depth > 0:
                return
            del _HELD[self._key]
        _CONTEXT.set(_CONTEXT.get() - {self._key})
        try:
            self.record_path.unlink(missing_ok=True)
        finally:
            fcntl.flock(held.fd, fcntl.LOCK_UN)
            os.close(held.fd)

    # -- internals ----------------------------------------------------------------------
    def _flock(self, fd: int, wait: float | bool) -> None:
        if wait is True:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        deadline = time.monotonic() + max(_GRACE_S, 0.0 if wait is False else float(wait))
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LakeBusyError(self._busy_holder()) from None
                time.sleep(_POLL_S)

    def _busy_holder(self) -> LockInfo:
        # the holder writes its record just after taking the flock: give it a moment
        for _ in range(20):
            record = self._record()
            if record is not None:
                return record
            time.sleep(_POLL_S)
        return LockInfo("unknown", "unknown", datetime.now(UTC), 0, "")

    def _record(self) -> LockInfo | None:
        try:
            return LockInfo.from_json(self.record_path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None  # a torn record cannot name anyone


def writer_lock(lake_root):
    """The writer lock of a lake: the file lock for a local directory (a ``Path`` or a local
    :class:`~marketlake.lake.location.LakeLocation`), a lease for an object-store lake."""
    from marketlake.lake.lease import LeaseLock
    from marketlake.lake.location import LakeLocation

    if isinstance(lake_root, LakeLocation):
        return WriterLock(lake_root.path) if lake_root.is_local else LeaseLock(lake_root)
    return WriterLock(lake_root)


@contextmanager
def writer(
    lake_root, run_id: str, stage: str, *, wait: float | bool = False
) -> Iterator[LockInfo | None]:
    """Hold the writer lock of the lake at ``lake_root`` (a directory or a
    :class:`~marketlake.lake.location.LakeLocation`) for the block; yields a dead previous
    holder's record or None."""
    lock = writer_lock(lake_root)
    stale = lock.acquire(run_id, stage, wait=wait)
    try:
        yield stale
    finally:
        lock.release()
