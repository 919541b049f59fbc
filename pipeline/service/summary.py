"""What status and health report from the lake (per-segment coverage, the last runs, who holds
the writer lock), computed off the request path.

A background thread keeps one :class:`Snapshot` current: recomputed after a run's commits (at
most every ``min_interval`` seconds), when told the state changed, and every ``idle_every``
seconds for what changes by itself (the clock's ages, another process's runs); the lock
holder is polled every ``poll`` seconds. Requests only read the latest snapshot, so a status
request never waits for a lake scan, however many clients poll during a run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger("marketlake.serve")


@dataclass(frozen=True)
class Snapshot:
    """One reading of the lake; ``error`` says why it could not be read (then the rest is
    the last good reading's)."""

    segments: list[dict] = field(default_factory=list)
    last_completed: dict | None = None  # the last run that completed (success/partial/failed)
    last_ended: dict | None = None  # ... or was interrupted
    computed_at: datetime | None = None
    error: str | None = None


class Summary:
    """Keeps a :class:`Snapshot` current on its own thread (see the module's docstring)."""

    def __init__(
        self,
        compute: Callable[[], Snapshot],
        holder: Callable[[], Any],
        *,
        on_change: Callable[[], None] = lambda: None,
        min_interval: float = 1.0,
        idle_every: float = 10.0,
        poll: float = 0.5,
    ) -> None:
        self._compute = compute
        self._holder = holder
        self._on_change = on_change
        self.min_interval = min_interval
        self.idle_every = idle_every
        self.poll = poll
        self.snapshot = Snapshot()
        self.holder: Any = None
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._last = float("-inf")
        self._thread: threading.Thread | None = None

    def refresh(self) -> Snapshot:
        """Recompute now (on the caller's thread); a failure keeps the last good values."""
        with self._mutex:
            self._dirty.clear()
            try:
                snap = self._compute()
            except Exception as exc:  # noqa: BLE001 - an unreadable lake is reported, not raised
                log.warning("cannot read the lake for status: %s", exc)
                old = self.snapshot
                snap = Snapshot(
                    old.segments,
                    old.last_completed,
                    old.last_ended,
                    old.computed_at,
                    f"cannot read the lake: {type(exc).__name__}",
                )
            self.snapshot = snap
            self._last = time.monotonic()
        self._on_change()
        return snap

    def touch(self) -> None:
        """The lake changed (a commit): recompute soon."""
        self._dirty.set()

    def start(self) -> None:
        self.holder = self._read_holder()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="marketlake-summary", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _read_holder(self) -> Any:
        try:
            return self._holder()
        except Exception:  # noqa: BLE001 - an unreadable lock record is no holder
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(self.poll)
            if self._stop.is_set():
                return
            holder = self._read_holder()
            if holder != self.holder:  # another process's run began or ended
                self.holder = holder
                self._dirty.set()
                self._on_change()
            since = time.monotonic() - self._last
            if (self._dirty.is_set() and since >= self.min_interval) or since >= self.idle_every:
                self.refresh()
            elif self._dirty.is_set():  # too soon after the last: wait out the interval
                self._stop.wait(self.min_interval - since)
