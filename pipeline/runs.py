"""Runs and their results: run ids, the frozen ``StageResult`` every stage returns, failed
tasks (a :class:`TaskError` raised from its cause), and the ``sync_logs`` rows (one per task)
written to the lake."""

from __future__ import annotations

import functools
import gc
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import polars as pl

from marketlake.errors import TaskError
from marketlake.lake.lock import LockInfo, writer
from marketlake.lake.store import Lake, WriteResult
from marketlake.lake.tables import polars_schema
from marketlake.pipeline.redact import redact


def new_run_id(now: datetime) -> str:
    """A sortable, unique run id stamped with ``now`` (the settings' clock)."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def survivable(exc: BaseException) -> bool:
    """True for what one failing task may raise without ending the run: any ``Exception``,
    and the panics of Rust extensions (polars, deltalake), which pyo3 raises as
    ``BaseException`` subclasses. KeyboardInterrupt and SystemExit still end the run."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def one_line(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """The first line of an error, redacted; foreign errors are prefixed with their type."""
    from marketlake.errors import MarketlakeError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not isinstance(exc, MarketlakeError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return redact(text, secrets)


def task_error(
    exc: BaseException, *, stage: str, run_id: str, secrets: tuple[str, ...] = ()
) -> TaskError:
    """``exc`` wrapped as the TaskError of a failed task, raised from it (so ``__cause__``
    keeps the original error, traceback included)."""
    if isinstance(exc, TaskError):
        return exc
    try:
        raise TaskError(one_line(exc, secrets), stage=stage, run_id=run_id) from exc
    except TaskError as err:
        return err


@dataclass(frozen=True)
class StageResult:
    """What one stage run did; ``to_json`` is the ``--json`` contract.

    ``errors`` holds messages, or the :class:`TaskError` of a failed task, kept as an object
    (with its cause) until it is rendered.
    """

    run_id: str
    stage: str
    tasks_ok: int = 0
    tasks_failed: int = 0
    tasks_skipped: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    duration_seconds: float = 0.0
    errors: tuple[str | TaskError, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.tasks_failed == 0:
            return "ok"
        return "partial" if self.tasks_ok > 0 else "failed"

    def to_json(self) -> dict[str, Any]:
        out = {
            "run_id": self.run_id,
            "stage": self.stage,
            "status": self.status,
            "tasks": {
                "ok": self.tasks_ok,
                "failed": self.tasks_failed,
                "skipped": self.tasks_skipped,
            },
            "rows": {
                "inserted": self.inserted,
                "updated": self.updated,
                "unchanged": self.unchanged,
                "quarantined": self.quarantined,
            },
            "duration_seconds": round(self.duration_seconds, 3),
            "errors": [str(e) for e in self.errors],
        }
        out.update(self.details)
        return out


class TaskLog:
    """Collects ``sync_logs`` rows for one run and writes them to the lake in one commit."""

    def __init__(
        self,
        run_id: str,
        stage: str,
        trigger: str = "cli",
        secrets_: tuple[str, ...] = (),
        *,
        clock: Callable[[], datetime],
        fresh_run: bool = False,
    ) -> None:
        self.run_id = run_id
        self.clock = clock
        # a run id made for this run alone: a flush of task names not flushed before cannot
        # meet a stored row, so it is a blind append
        self.fresh_run = fresh_run
        self._flushed: set[str] = set()
        self.stage = stage
        self.trigger = trigger
        self.secrets = secrets_
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        task_name: str,
        *,
        status: str,
        rows_updated: int = 0,
        error: str | None = None,
        started_at: datetime,
        completed_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        completed_at = completed_at or self.clock()
        self.rows.append(
            {
                "run_id": self.run_id,
                "task_name": task_name,
                "stage": self.stage,
                "status": status,
                "rows_updated": int(rows_updated),
                "error_message": redact(error, self.secrets) if error else None,
                "started_at": started_at,
                "completed_at": completed_at,
                "duration_seconds": (completed_at - started_at).total_seconds(),
                "trigger": self.trigger,
                "metadata": redact(json.dumps(metadata or {}, default=str), self.secrets),
            }
        )

    def flush(self, lake: Lake, *, assume_new: bool = False) -> WriteResult:
        """Write the collected rows in one commit. ``assume_new`` is the caller's proof that
        none of these task names was flushed before under this run_id (a blind append,
        much cheaper than a MERGE)."""
        if not self.rows:
            return WriteResult("sync_logs")
        names = {r["task_name"] for r in self.rows}
        if self.fresh_run and len(names) == len(self.rows) and names.isdisjoint(self._flushed):
            assume_new = True
        self._flushed |= names
        frame = pl.DataFrame(
            self.rows,
            schema_overrides=polars_schema("sync_logs"),
        )
        self.rows = []
        return lake.upsert(
            "sync_logs", frame, run_id=self.run_id, stage=self.stage, assume_new=assume_new
        )


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


_FROZEN = False


def freeze_imports() -> None:
    """Move the objects alive at a process's first stage (modules, classes, functions: what
    its imports made) out of the cyclic garbage collector's reach, once: they live as long
    as the process, and each full collection a stage's work triggers would walk them all
    again (a nightly's stages spent about 0.1 s of CPU in such collections)."""
    global _FROZEN
    if not _FROZEN:
        _FROZEN = True
        gc.freeze()


@contextmanager
def writing(settings, run_id: str, stage: str) -> Iterator[None]:
    """Hold the lake's writer lock for one run (waiting as ``settings.lock_wait`` says); a
    previous holder that died without releasing is logged as ``interrupted``."""
    freeze_imports()
    with writer(settings.lake, run_id, stage, wait=settings.lock_wait) as stale:
        if stale is not None:
            mark_interrupted(settings.open_lake(), stale, settings.secrets(), settings.clock)
        yield


def mark_interrupted(
    lake: Lake,
    info: LockInfo,
    secrets_: tuple[str, ...] = (),
    clock: Callable[[], datetime] | None = None,
) -> None:
    """One ``sync_logs`` row saying the run ``info`` describes stopped before it finished, and
    its journal row (``run:<stage>``, written by the service) no longer ``running``."""
    from marketlake.pipeline import journal

    log = TaskLog(
        info.run_id, info.stage, "recovery", secrets_, clock=clock or (lambda: info.started_at)
    )
    log.add(
        f"{info.stage}:interrupted",
        status="interrupted",
        error=f"run stopped without finishing (pid {info.pid} on {info.host})",
        started_at=info.started_at,
    )
    log.flush(lake)
    # the lock is ours: no other run is alive
    journal.recover_interrupted(lake, now=clock() if clock is not None else None)


F = TypeVar("F", bound=Callable[..., Any])


def exclusive(stage: str) -> Callable[[F], F]:
    """Decorate a stage ``fn(settings, ..., run_id=None)`` to run under the writer lock; the
    run id is made here (or passed by the caller) so the lock names the run that writes."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(settings, *args: Any, run_id: str | None = None, **kw: Any) -> Any:
            run_id = run_id or new_run_id(settings.clock())
            with writing(settings, run_id, stage):
                return fn(settings, *args, run_id=run_id, **kw)

        return run  # type: ignore[return-value]

    return wrap
