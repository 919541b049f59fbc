"""Runs started by the service: one at a time, on a worker thread, under the lake's writer lock.

A :class:`Run` turns the stage's progress callback into events for its watchers: ``task``
(one per finished and committed task), ``progress`` (done/total, rows/s, ETA; throttled) and a
``final`` event equal to the stage's ``--json`` object. A run of several steps (the daily run)
reports step i of n with that step's tasks, so its percentage never moves back when a later
step finds its work. A watcher that subscribes late first
gets a ``state`` event with everything so far. Every run is journaled in ``sync_logs``
(``running`` at start, its outcome at the end; see :mod:`marketlake.pipeline.journal`), every
time in it taken from the settings' one clock (``Settings.clock``, pinned by ``MARKETLAKE_NOW``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from marketlake.errors import LakeBusyError, MarketlakeError
from marketlake.lake.lock import writer_lock
from marketlake.pipeline import journal
from marketlake.pipeline.config import Settings
from marketlake.pipeline.redact import redact
from marketlake.pipeline.runs import mark_interrupted, new_run_id

PROGRESS_EVERY_S = 0.2  # at most this often a progress event (plus one at every task commit)
KEEP_TASKS = 500  # finished tasks replayed to a late watcher
KEEP_RUNS = 20


@dataclass(frozen=True)
class RunRequest:
    """What to run: ``stage`` is ``sync`` (with ``params`` for ``run_sync``) or ``daily``."""

    stage: str
    trigger: str = "api"
    params: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None  # the schedule's name when the scheduler started it
    slot: datetime | None = None

    @property
    def covers(self) -> tuple[str, ...]:
        """The schedules a run of this request fulfils: the scheduled one, or for a manual
        run the work a schedule would start (``daily``; a whole segment's sync), so a manual
        full run moves that schedule on."""
        if self.schedule:
            return (self.schedule,)
        if self.stage == "daily":
            return ("daily",)
        p = self.params
        whole = not (p.get("symbols") or p.get("timeframes") or p.get("kinds"))
        if self.stage == "sync" and whole and (p.get("scope") or "all") == "all":
            return tuple(f"segment:{s}" for s in p.get("segments") or ())
        return ()


class Run:
    """One run's live state and its watchers."""

    def __init__(
        self,
        run_id: str,
        request: RunRequest,
        started_at: datetime,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.run_id = run_id
        self.request = request
        self.started_at = started_at
        self.clock = clock
        self.status = "starting"
        self.total = 0
        self.done = 0
        # a run of steps: which one runs (0-based), of how many (None until known)
        self.step_name: str | None = None
        self.step_index = 0
        self.step_count: int | None = None
        self._high = 0.0  # the highest percentage reported: the bar never moves back
        self.rows = 0
        self.failed = 0
        self.current: str | None = None
        self.tasks: deque[dict[str, Any]] = deque(maxlen=KEEP_TASKS)
        self.final: dict[str, Any] | None = None
        self.finished_at: datetime | None = None
        self._t0 = time.monotonic()
        self._last_progress = 0.0
        self._mutex = threading.RLock()
        self._watchers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self._seq = 0

    # -- the stage's progress callback (worker thread) -------------------------------------
    def on_progress(self, event: str, **info: Any) -> None:
        if event == "step":  # a run of several steps begins its next one
            with self._mutex:
                self.step_name = str(info.get("name"))
                self.step_index = int(info.get("index") or 0)
                count = info.get("count")
                self.step_count = int(count) if count else None
                self.total = self.done = 0
            self._progress(force=True)
        elif event == "start":
            with self._mutex:
                self.total += int(info.get("total") or 0)
            self._progress(force=True)
        elif event in ("advance", "table_done"):
            with self._mutex:
                self.done += int(info.get("advance") or 1)
                self.rows += int(info.get("rows") or 0)
                self.current = " ".join(
                    str(info[k]) for k in ("symbol", "timeframe", "table") if info.get(k)
                )
            self._progress()
        elif event == "task":
            task = {
                "symbol": info.get("symbol"),
                "timeframe": info.get("timeframe"),
                "kind": info.get("kind"),
                "status": info.get("status"),
                "rows": int(info.get("rows") or 0),
                "error": info.get("error"),
                "committed_at": self.clock().isoformat(),
            }
            with self._mutex:  # one step: a late watcher sees it in its state or as an event
                self.tasks.append(task)
                self.failed += task["status"] != "ok"
                self._publish("task", task)

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        self._publish("progress", self.progress())

    def progress(self) -> dict[str, Any]:
        """``done``/``total``: tasks, or for a run of steps the steps finished of all; a
        stepped run adds ``step`` (its number, name and tasks done/total). ``percent`` is
        the share of the run done and never decreases."""
        with self._mutex:
            elapsed = max(time.monotonic() - self._t0, 1e-6)
            share = min(1.0, self.done / self.total) if self.total else 0.0
            step = None
            if self.step_name is None:
                done, total, unit = self.done, self.total, "tasks"
            else:
                finished = self.final is not None
                count = self.step_count or 0
                done = count if finished else min(self.step_index, count)
                total, unit = count, "steps"
                share = 1.0 if finished else (done + share) / count if count else 0.0
                step = {
                    "number": min(self.step_index + 1, count) if count else None,
                    "name": self.step_name,
                    "done": self.done,
                    "total": self.total,
                }
            self._high = max(self._high, round(100.0 * share, 1))
            eta = elapsed * (100.0 - self._high) / self._high if 0 < self._high < 100 else 0.0
            return {
                "done": done,
                "total": total,
                "unit": unit,
                "step": step,
                "percent": self._high,
                "rows": self.rows,
                "rows_per_s": round(self.rows / elapsed, 1),
                "eta_seconds": round(eta, 1) if total else None,
                "failed": self.failed,
                "current": self.current,
                "elapsed_seconds": round(elapsed, 2),
            }

    # -- watchers ------------------------------------------------------------------------
    def _publish(self, kind: str, data: dict[str, Any]) -> None:
        with self._mutex:
            self._seq += 1
            event = {"event": kind, "id": self._seq, "data": data}
            watchers = list(self._watchers)
        for loop, queue in watchers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # that watcher's loop is gone
                self.unsubscribe(queue)

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> tuple[dict[str, Any], asyncio.Queue]:
        """The current state and a queue of every later event, in one step (none lost; the
        queue may repeat events up to ``state["seq"]``, which the watcher skips)."""
        queue: asyncio.Queue = asyncio.Queue()
        with self._mutex:
            state = self.state()
            self._watchers.append((loop, queue))
        return state, queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._mutex:
            self._watchers = [(lp, q) for lp, q in self._watchers if q is not queue]

    def state(self) -> dict[str, Any]:
        with self._mutex:
            tasks = list(self.tasks)
            seq = self._seq
        return {
            "seq": seq,
            "run_id": self.run_id,
            "stage": self.request.stage,
            "trigger": self.request.trigger,
            "schedule": self.request.schedule,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "progress": self.progress(),
            "tasks": tasks,
            "final": self.final,
        }

    @property
    def active(self) -> bool:
        return self.final is None

    def finish(self, final: dict[str, Any], finished_at: datetime) -> None:
        with self._mutex:
            self.finished_at = finished_at
            self.status = final.get("status", "failed")
            self.final = final
            self._publish("progress", self.progress())
            self._publish("final", final)


class RunManager:
    """Starts runs (never two at once), keeps the recent ones for their watchers."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_finish: Callable[[Run], None] | None = None,
        on_commit: Callable[[], None] | None = None,
        runner: Callable[[Settings, RunRequest, str, Callable[..., None]], dict] | None = None,
    ) -> None:
        self.settings = settings
        self.lake = settings.open_lake()
        self.lock = writer_lock(settings.lake)
        self.on_finish = on_finish
        self.on_commit = on_commit  # a task's batch was committed
        self.runner = runner or run_stage
        self._mutex = threading.Lock()
        self.current: Run | None = None
        self.runs: dict[str, Run] = {}

    def busy(self) -> dict[str, Any] | None:
        """Who runs now (this service's run, or another process holding the lake's lock)."""
        cur = self.current
        if cur is not None and cur.active:
            return {"run_id": cur.run_id, "stage": cur.request.stage, "started_at": cur.started_at}
        holder = self.lock.holder()
        if holder is not None:
            return {"run_id": holder.run_id, "stage": holder.stage, "started_at": holder.started_at}
        return None

    def start(self, request: RunRequest) -> Run:
        """Start ``request`` on a worker thread once it holds the writer lock; raises
        :class:`RunInProgress` when a run (here or in another process) holds it."""
        with self._mutex:
            cur = self.current
            if cur is not None and cur.active:
                raise RunInProgress(cur.run_id, cur.request.stage, cur.started_at)
            now = self.settings.clock()
            run = Run(new_run_id(now), request, now, clock=self.settings.clock)
            self.current = run
            ready = threading.Event()
            failure: list[BaseException] = []
            threading.Thread(
                target=self._execute,
                args=(run, ready, failure),
                name=f"marketlake-run-{run.run_id}",
                daemon=True,
            ).start()
            ready.wait()
            if failure:
                self.current = None
                raise failure[0]
            self.runs[run.run_id] = run
            while len(self.runs) > KEEP_RUNS:
                self.runs.pop(next(iter(self.runs)))
            return run

    def recover(self) -> list[str]:
        """At start: mark runs a killed process left ``running`` as interrupted (only when
        the lake is free; otherwise the next run here does it)."""
        clock = self.settings.clock
        run_id = "recover-" + new_run_id(clock())
        try:
            stale = self.lock.acquire(run_id, "serve")
        except LakeBusyError:
            return []
        try:
            if stale is not None:
                mark_interrupted(self.lake, stale, self.settings.secrets(), clock=clock)
            return journal.recover_interrupted(self.lake, now=clock())
        finally:
            self.lock.release()

    def _execute(self, run: Run, ready: threading.Event, failure: list[BaseException]) -> None:
        req = run.request
        try:
            stale = self.lock.acquire(run.run_id, req.stage)
        except LakeBusyError as exc:
            failure.append(RunInProgress.from_lock(exc))
            ready.set()
            return
        except BaseException as exc:  # the lock file cannot be made
            failure.append(exc)
            ready.set()
            return
        run.status = "running"
        ready.set()
        secrets = self.settings.secrets()
        meta: dict[str, Any] = {"request": req.params}
        if req.schedule:
            meta.update(schedule=req.schedule, slot=req.slot.isoformat() if req.slot else None)
        elif req.covers:  # a manual full run: its schedules count from its start
            meta.update(covers=list(req.covers), slot=run.started_at.isoformat())
        final: dict[str, Any]
        clock = self.settings.clock
        try:
            if stale is not None:  # a run died holding the lake: say so in sync_logs
                mark_interrupted(self.lake, stale, secrets, clock=clock)
            journal.record_start(
                self.lake,
                run.run_id,
                req.stage,
                trigger=req.trigger,
                started_at=run.started_at,
                metadata=meta,
            )
            final = self.runner(self.settings, req, run.run_id, self._progress(run))
        except Exception as exc:  # any failure ends this run, never the service
            msg = str(exc) if isinstance(exc, MarketlakeError) else f"{type(exc).__name__}: {exc}"
            final = _failed(run, redact(msg.splitlines()[0] if msg else "failed", secrets))
        completed_at = clock()
        try:
            journal.record_end(
                self.lake,
                run.run_id,
                req.stage,
                trigger=req.trigger,
                started_at=run.started_at,
                completed_at=completed_at,
                result=final,
                metadata=meta,
                secrets=secrets,
            )
        except Exception as exc:  # the run's outcome still reaches its watchers
            final.setdefault("errors", []).append(
                redact(f"journal: {type(exc).__name__}: {exc}", secrets)
            )
        finally:
            self.lock.release()
        if self.on_finish is not None:  # before watchers hear the end: state is current
            self.on_finish(run)
        run.finish(final, completed_at)

    def _progress(self, run: Run) -> Callable[..., None]:
        if self.on_commit is None:
            return run.on_progress
        on_commit = self.on_commit

        def progress(event: str, **info: Any) -> None:
            run.on_progress(event, **info)
            if event == "task":
                on_commit()

        return progress


class RunInProgress(MarketlakeError):
    """A run (this service's, or another process's holding the lake's lock) is running."""

    def __init__(self, run_id: str, stage: str, started_at: datetime) -> None:
        super().__init__(
            f"a run {run_id} ({stage}) started at {started_at.isoformat()} is in progress"
        )
        self.run_id = run_id
        self.stage = stage
        self.started_at = started_at

    @classmethod
    def from_lock(cls, exc: LakeBusyError) -> RunInProgress:
        h = exc.holder
        return cls(h.run_id, h.stage, h.started_at)


def _failed(run: Run, message: str) -> dict[str, Any]:
    p = run.progress()
    return {
        "run_id": run.run_id,
        "stage": run.request.stage,
        "status": "failed",
        "tasks": {"ok": 0, "failed": max(1, p["failed"]), "skipped": 0},
        "rows": {"inserted": 0, "updated": 0, "unchanged": 0, "quarantined": 0},
        "duration_seconds": p["elapsed_seconds"],
        "errors": [message],
    }


def run_stage(
    settings: Settings, req: RunRequest, run_id: str, progress: Callable[..., None]
) -> dict[str, Any]:
    """Run the stage ``req`` asks for and return its ``--json`` object."""
    trigger = req.trigger
    if req.stage == "daily":
        from marketlake.pipeline.orchestration import run_daily

        return run_daily(settings, progress=progress, run_id=run_id).to_json()
    if req.stage == "sync":
        from marketlake.pipeline.stages.ingest import run_sync

        p = req.params
        return run_sync(
            settings,
            segments=p.get("segments") or (),
            symbols=p.get("symbols") or None,
            timeframes=p.get("timeframes") or None,
            kinds=p.get("kinds") or None,
            scope=p.get("scope") or "all",
            force=bool(p.get("force")),
            progress=progress,
            trigger=trigger,
            run_id=run_id,
        ).to_json()
    raise MarketlakeError(f"unknown stage {req.stage!r}")
