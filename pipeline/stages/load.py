"""The load stage: ship what changed in each lake table since its last load into PostgreSQL.

One task (and ``sync_logs`` row) per table; the loading itself is
:mod:`marketlake.pipeline.serving.load`. ``sync_logs`` (this run's task rows included) is
loaded last by the same mechanism; its own row counts are bookkeeping and stay out of the
stage's row totals, so a re-run reports 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from marketlake.errors import ConfigError, MarketlakeError
from marketlake.lake.store import Lake
from marketlake.lake.tables import TABLES
from marketlake.pipeline.config import Settings
from marketlake.pipeline.redact import redact
from marketlake.pipeline.runs import StageResult, Stopwatch, TaskLog, exclusive, new_run_id
from marketlake.pipeline.serving.connection import Serving
from marketlake.pipeline.serving.load import Loader, TableLoad

log = logging.getLogger("marketlake.load")

APPLICATION_NAME = "marketlake-load"
BOOKKEEPING_TABLE = "sync_logs"

Progress = Callable[..., None]


@exclusive("load")
def run_load(
    settings: Settings,
    *,
    tables: Iterable[str] | None = None,
    progress: Progress | None = None,
    trigger: str = "cli",
    run_id: str | None = None,
) -> StageResult:
    """Load the lake's changes into the serving database; one task (and sync_logs row) per table.

    ``tables`` limits the data tables loaded (default: all); ``sync_logs`` always follows, since
    it mirrors the run's own log. ``progress(event, **info)`` is called with ``table_start``
    and ``table_done`` per table. Raises ConnectionConfigError when the server refuses us.
    """
    if not settings.dsn:
        raise ConfigError("no serving database: set --dsn or MARKETLAKE_DSN")
    names = _select(tables)
    watch = Stopwatch()
    run_id = run_id or new_run_id(settings.clock())
    secrets = settings.secrets()
    emit = progress or (lambda event, **info: None)
    lake = settings.open_lake()
    tasklog = TaskLog(run_id, "load", trigger, secrets, clock=settings.clock)
    results: dict[str, TableLoad] = {}
    errors: list[str] = []
    skipped = 0

    loader = Loader(Serving(settings, application_name=APPLICATION_NAME).open(), lake, run_id)
    try:
        loader.start()
        for name in [*names, BOOKKEEPING_TABLE]:
            if name == BOOKKEEPING_TABLE:  # this run's task rows travel with this load
                _flush(tasklog, lake, errors, secrets)
            emit("table_start", table=name)
            started = settings.clock()
            try:
                res = loader.load(TABLES[name])
            except MarketlakeError as exc:
                msg = redact(f"load {name}: {exc}", secrets)
                errors.append(msg)
                tasklog.add(f"load:{name}", status="failed", error=msg, started_at=started)
                log.error("%s", msg)
                emit("table_done", table=name, status="failed", error=msg)
                continue
            if res is None:
                skipped += 1
                emit("table_done", table=name, status="skipped")
                continue
            results[name] = res
            tasklog.add(
                f"load:{name}",
                status="success",
                rows_updated=res.changed,
                started_at=started,
                metadata=res.as_dict(),
            )
            emit("table_done", table=name, status="ok", **res.as_dict())
    finally:
        loader.db.close()
        _flush(tasklog, lake, errors, secrets)

    data = [r for t, r in results.items() if t != BOOKKEEPING_TABLE]
    return StageResult(
        run_id=run_id,
        stage="load",
        tasks_ok=len(results),
        tasks_failed=len(errors),
        tasks_skipped=skipped,
        inserted=sum(r.inserted for r in data),
        updated=sum(r.updated for r in data),
        unchanged=sum(r.unchanged for r in data),
        duration_seconds=watch.elapsed,
        errors=tuple(errors),
        details={
            "deleted": sum(r.deleted for r in data),
            "tables": {t: r.as_dict() for t, r in results.items()},
        },
    )


def _select(tables: Iterable[str] | None) -> list[str]:
    order = [t for t in TABLES if t != BOOKKEEPING_TABLE]
    if tables is None:
        return order
    wanted = set(tables)
    unknown = sorted(wanted - set(TABLES))
    if unknown:
        raise ConfigError(f"unknown table(s) {', '.join(unknown)}; tables: {', '.join(TABLES)}")
    return [t for t in order if t in wanted]


def _flush(tasklog: TaskLog, lake: Lake, errors: list[str], secrets: tuple[str, ...]) -> None:
    try:
        tasklog.flush(lake, assume_new=True)  # one row per task name under a fresh run_id
    except MarketlakeError as exc:
        errors.append(redact(f"writing sync_logs to the lake: {exc}", secrets))
