"""The push stage: send each lake table's changes since the version the remote last
acknowledged, as one zstd-compressed Arrow IPC stream per table (streamed, batch by batch).

The changes are the Delta change feed since that version, each key's last change with a
delete flag, netted in bounded memory (:mod:`marketlake.lake.changes`); when the feed cannot serve the range (vacuumed history, a recreated table on
either side, a first push) the whole table goes as a snapshot, which the remote diffs against
its own. The local watermark moves only after the remote acknowledged the commit; a batch the
remote committed but never acknowledged is sent again and the remote applies it as a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pyarrow as pa

from marketlake.errors import ConfigError, MarketlakeError
from marketlake.lake.batches import conform, count_rows, iter_batches
from marketlake.lake.changes import Bounds, read_changes
from marketlake.lake.scratch import Scratch
from marketlake.lake.store import Lake
from marketlake.lake.tables import TABLES
from marketlake.pipeline.config import Settings
from marketlake.pipeline.redact import redact
from marketlake.pipeline.remote.client import Marks, Remote, answer, source_id, transport
from marketlake.pipeline.remote.wire import ARROW, FLAG, encode
from marketlake.pipeline.runs import StageResult, Stopwatch, new_run_id

log = logging.getLogger("marketlake.push")

# the remote's own state never travels: its journal and its service settings
NEVER_PUSHED = ("sync_logs", "sync_settings")
DEFAULT_TABLES = (
    "instruments",
    "ohlcv",
    "corporate_actions",
    "profiles",
    "fundamentals",
    "indicators",
    "valuations",
)

Progress = Callable[..., None]


def select_tables(tables: Iterable[str] | None) -> list[str]:
    if tables is None:
        return list(DEFAULT_TABLES)
    names = list(dict.fromkeys(tables))
    for name in names:
        if name not in TABLES:
            raise ConfigError(f"--tables: unknown lake table {name!r}; tables: {', '.join(TABLES)}")
        if name in NEVER_PUSHED:
            raise ConfigError(f"--tables: {name} is the remote's own state and is never pushed")
    return names


def run_push(
    settings: Settings,
    remote: Remote,
    *,
    tables: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> StageResult:
    """Push the named lake tables (default: the market data tables) to ``remote``."""
    names = select_tables(tables)
    watch = Stopwatch()
    run_id = new_run_id(settings.clock())
    emit = progress or (lambda event, **info: None)
    lake = settings.open_lake()
    source = source_id(settings.home)
    marks = Marks(settings.home, remote)
    results: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    skipped = 0
    with remote.client() as client:
        try:
            res = client.get("/api/v1/sync/watermarks", params={"source": source})
        except httpx.HTTPError as exc:
            raise transport(f"push to {remote.url}", exc) from None
        held = answer(res, f"push to {remote.url}")["tables"]
        for name in names:
            emit("table_start", table=name)
            try:
                out = push_table(lake, client, name, source, marks, held.get(name))
            except (MarketlakeError, httpx.HTTPError) as exc:
                if isinstance(exc, ConfigError):
                    raise
                if isinstance(exc, httpx.HTTPError):
                    exc = transport(f"push {name}", exc)
                msg = redact(f"push {name}: {exc}", settings.secrets() + (remote.token,))
                errors.append(msg)
                log.error("%s", msg)
                emit("table_done", table=name, status="failed", error=msg)
                continue
            if out is None:
                skipped += 1
                emit("table_done", table=name, status="skipped")
                continue
            results[name] = out
            if out.get("load_error"):
                errors.append(f"push {name}: the remote's load failed: {out['load_error']}")
            emit("table_done", table=name, status="ok", rows=out.get("sent", 0))
    failed_loads = sum(1 for r in results.values() if r.get("load_error"))
    return StageResult(
        run_id=run_id,
        stage="push",
        tasks_ok=len(results) - failed_loads,
        tasks_failed=len(errors),
        tasks_skipped=skipped,
        inserted=sum(r.get("inserted", 0) for r in results.values()),
        updated=sum(r.get("updated", 0) for r in results.values()),
        unchanged=sum(r.get("unchanged", 0) for r in results.values()),
        duration_seconds=watch.elapsed,
        errors=tuple(errors),
        details={
            "remote": remote.url,
            "deleted": sum(r.get("deleted", 0) for r in results.values()),
            "sent": sum(r.get("sent", 0) for r in results.values()),
            "tables": results,
        },
    )


def push_table(
    lake: Lake,
    client: httpx.Client,
    name: str,
    source: str,
    marks: Marks,
    held: dict[str, Any] | None,
    bounds: Bounds | None = None,
) -> dict[str, Any] | None:
    """Push one table; the acknowledgement (None when the table does not exist locally).
    A change batch is netted per key in bounded memory (``bounds``: its bucket size)."""
    tdef = TABLES[name]
    dt = lake.table(name)
    if dt is None:
        return None
    current, table_id = dt.version(), dt.metadata().id
    mark = marks.get(name)
    valid = (
        mark is not None
        and held is not None
        and mark["table_id"] == table_id
        and mark["remote_table_id"] == held["table_id"]
    )
    if valid and mark["version"] >= current:
        return {"mode": "noop", "version": held["version"], "sent": 0}
    schema = pa.schema(dt.schema().to_arrow()).append(pa.field(FLAG, pa.bool_()))
    with Scratch("push", lake.home) as work:  # the netted changes' spool
        changes = (
            read_changes(dt, tdef, mark["version"], current, lake.location, work, bounds)
            if valid
            else None
        )
        if changes is not None:
            mode, prev, rows = "changes", mark["version"], changes.rows
            batches = conform(changes.batches(), schema)
        else:
            mode, prev = "snapshot", None
            rows = count_rows(dt)
            batches = conform(_flagged(iter_batches(dt, name)), schema)
        params = {
            "source": source,
            "table_id": table_id,
            "to_version": current,
            "rows": rows,
            "mode": mode,
        }
        if prev is not None:
            params["from_version"] = prev
        res = client.post(
            f"/api/v1/sync/push/{name}",
            params=params,
            content=encode(schema, batches),
            headers={"Content-Type": ARROW},
        )
    ack = answer(res, f"push {name}")
    marks.set(name, current, table_id, ack["table_id"])
    return ack | {"sent": rows, "local_version": current, "from_version": prev}


def _flagged(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for b in batches:
        if b.num_rows:
            yield b.append_column(FLAG, pa.repeat(pa.scalar(False), b.num_rows))


__all__ = ["DEFAULT_TABLES", "run_push", "select_tables"]
