"""The scheduler: starts the daily run (and per-segment syncs) when their schedules are due.

It keeps no timer: on every tick it asks each schedule for the slot due now, given the slot of
the schedule's last *completed* run (read from the journal at start, then kept current as runs
finish). A manual run of the same work (``POST /api/v1/sync`` of the daily run or of a whole
segment) is such a run too: its start counts as its slot. So a restart neither skips nor doubles a run, a slot missed while the service was
down runs once at start, and a run killed mid-way (journaled ``interrupted``, not completed)
is run again. A due slot waits while another run (here or a CLI stage) holds the lake.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from marketlake.pipeline import journal
from marketlake.pipeline.service.runs import Run, RunInProgress, RunManager, RunRequest
from marketlake.pipeline.service.schedules import Schedule
from marketlake.pipeline.service.settings_store import SettingsStore

Clock = Callable[[], datetime]
log = logging.getLogger("marketlake.serve")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Fires due schedules through a :class:`RunManager`; ``clock`` is injectable."""

    def __init__(
        self,
        manager: RunManager,
        store: SettingsStore,
        *,
        clock: Clock = _utcnow,
        tick_seconds: float = 1.0,
    ) -> None:
        self.manager = manager
        self.store = store
        self.clock = clock
        self.tick_seconds = tick_seconds
        self._mutex = threading.Lock()
        self._last: dict[str, datetime] = journal.last_slots(manager.lake)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_tick: datetime | None = None

    # -- what is due ----------------------------------------------------------------------
    def schedules(self) -> dict[str, Schedule]:
        return self.store.current().schedules()

    def last_slot(self, name: str) -> datetime | None:
        with self._mutex:
            return self._last.get(name)

    def next_runs(self, now: datetime | None = None) -> dict[str, datetime | None]:
        """Per schedule, the slot it will run next (a due one if overdue)."""
        now = now or self.clock()
        return {n: s.next_slot(self.last_slot(n), now) for n, s in self.schedules().items()}

    def tick(self) -> Run | None:
        """Start the earliest due schedule, if any and the lake is free."""
        now = self.clock()
        self.last_tick = now
        due = []
        for name, sched in self.schedules().items():
            slot = sched.due_slot(self.last_slot(name), now)
            if slot is not None:
                due.append((slot, name))
        if not due or self.manager.busy() is not None:
            return None
        slot, name = min(due)
        if name == "daily":
            req = RunRequest("daily", trigger="schedule", schedule=name, slot=slot)
        else:
            segment = name.removeprefix("segment:")
            req = RunRequest(
                "sync",
                trigger="schedule",
                params={"segments": [segment]},
                schedule=name,
                slot=slot,
            )
        try:
            return self.manager.start(req)
        except RunInProgress:  # a CLI run took the lake first: try again next tick
            return None

    def finished(self, run: Run) -> None:
        """A run ended: a scheduled one moves its schedule on to its slot, a manual full run
        (the daily run, a whole segment's sync) the schedules it covers to its start."""
        req = run.request
        slot = req.slot if req.schedule else run.started_at
        if slot is None:
            return
        with self._mutex:
            for name in req.covers:
                old = self._last.get(name)
                if old is None or slot > old:
                    self._last[name] = slot

    # -- the thread -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="marketlake-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bad tick must not end the scheduler
                log.exception("scheduler tick failed")
            self._stop.wait(self.tick_seconds)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
