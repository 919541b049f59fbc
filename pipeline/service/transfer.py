"""Push and pull routes of the service: a source home sends its lake's changes, table by table,
as Arrow IPC streams (``POST /sync/push/{table}``); an app table the configuration exposes is
read back as one (``GET /sync/pull/{table}?since=``); ``GET /sync/watermarks`` says what the
remote holds. Bodies are streamed: a push is spooled to disk as it arrives, then applied under
the lake's writer lock and loaded into the serving database with the same loader as ``load``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from marketlake.errors import LakeBusyError, MarketlakeError, ValidationError
from marketlake.lake.lock import writer
from marketlake.lake.scratch import Scratch
from marketlake.lake.tables import TABLES
from marketlake.lake.writes import commit_properties
from marketlake.pipeline.planning import parse_when
from marketlake.pipeline.redact import redact
from marketlake.pipeline.remote import spilled
from marketlake.pipeline.remote.apply import MODES, PushBatch, apply_push
from marketlake.pipeline.remote.source import exposed, pull_table, rows_since
from marketlake.pipeline.remote.wire import ARROW, encode
from marketlake.pipeline.runs import new_run_id

log = logging.getLogger("marketlake.serve")

LOCK_WAIT_S = 30.0  # a push waits this long for a running sync before answering 409


def transfer_router(svc: Any, authorized: Any, ok: Any, fail: Any) -> APIRouter:
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(authorized)])
    settings = svc.settings

    @router.post("/sync/push/{table}", summary="Apply one table's batch (Arrow IPC stream)")
    async def push(
        table: str,
        request: Request,
        source: str = Query(..., min_length=1, max_length=100),
        table_id: str = Query(..., min_length=1, max_length=100),
        to_version: int = Query(..., ge=0),
        rows: int = Query(..., ge=0),
        mode: str = Query(..., pattern="^(changes|snapshot)$"),
        from_version: int | None = Query(None, ge=0),
    ):
        if table not in TABLES:
            return fail(f"unknown lake table {table!r}", 404)
        if mode not in MODES:  # pragma: no cover (the pattern checks it)
            return fail(f"mode: expected one of {MODES}", 422)
        batch = PushBatch(table, source, table_id, from_version, to_version, mode, rows)
        work = Scratch(f"push-{table}", settings.home)  # removed on the next push if killed
        spool = work.path / "body.arrows"
        try:
            with spool.open("wb") as fh:
                try:
                    async for chunk in request.stream():
                        fh.write(chunk)
                except ClientDisconnect:
                    log.warning("push %s from %s: the source went away mid-body", table, source)
                    return fail("the body ended early", 400)
            try:
                result = await asyncio.to_thread(_apply, svc, batch, spool, work.path)
            except LakeBusyError as exc:
                return fail(str(exc), 409)
            except ValidationError as exc:
                return fail(str(exc).splitlines()[0], 422)
        finally:
            work.close()
        return ok(result)

    @router.get("/sync/pull/{table}", summary="Rows of an exposed table changed since a time")
    def pull(table: str, since: str | None = Query(None, max_length=64)):
        spec = pull_table(settings, table)
        when: datetime | None = parse_when(since, "since") if since else None
        schema, batches = rows_since(settings, spec, when)
        return StreamingResponse(
            encode(schema, batches),
            media_type=ARROW,
            headers={
                "X-Marketlake-Key": ",".join(spec.key),
                "X-Marketlake-Updated-At": spec.updated_at,
                "X-Marketlake-Deleted": spec.deleted or "",
            },
        )

    @router.get("/sync/watermarks", summary="Each lake table's version; what a source pushed")
    def watermarks(source: str | None = Query(None, max_length=100)):
        return ok(_watermarks(svc, source))

    return router


def _watermarks(svc: Any, source: str | None) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for name in TABLES:
        dt = svc.lake.table(name)
        if dt is None:
            continue
        entry: dict[str, Any] = {"version": dt.version(), "table_id": dt.metadata().id}
        if source:
            pushed: dict[str, int] = {}
            for commit in dt.history(500):
                if commit.get("push_source") == source:
                    tid = commit.get("push_table_id", "")
                    pushed[tid] = max(pushed.get(tid, -1), int(commit.get("push_to", -1)))
            entry["pushed"] = pushed
        tables[name] = entry
    pull = {n: t.describe() for n, t in exposed(svc.settings).items()}
    return {"tables": tables, "pull": pull}


def _bounds(settings: Any) -> spilled.Bounds | None:
    """``[serve] push_memory_rows``, when set, as the merge's bounds."""
    rows = (settings.serve or {}).get("push_memory_rows")
    return None if rows is None else dataclasses.replace(spilled.BOUNDS, memory_rows=int(rows))


def _apply(svc: Any, batch: PushBatch, spool: Path, work: Path) -> dict[str, Any]:
    """Apply the spooled batch under the writer lock (``work``: scratch space for its
    spills), then load the table into the serving database (when the remote has one); one
    dict for the acknowledgement."""
    settings = svc.settings
    run_id = new_run_id(settings.clock())
    tdef = TABLES[batch.table]
    with writer(settings.lake, run_id, "push", wait=LOCK_WAIT_S):
        started = time.perf_counter()
        res = apply_push(
            svc.lake.table(batch.table),
            svc.lake.location,
            tdef,
            batch,
            spool,
            lambda meta: commit_properties(run_id, "push", meta),
            work,
            _bounds(settings),
        )
        out = res.as_dict() | {"run_id": run_id}
        seconds = {"apply": round(time.perf_counter() - started, 3)}
        if settings.dsn:
            started = time.perf_counter()
            try:
                out["load"] = _load(svc, tdef, run_id)
            except MarketlakeError as exc:
                out["load_error"] = redact(str(exc).splitlines()[0], settings.secrets())
            seconds["load"] = round(time.perf_counter() - started, 3)
        out["seconds"] = seconds  # where the remote's time went: its lake, its database
    svc.lake_changed()  # status reflects the push at once
    log.info(
        "push %s from %s: +%d ~%d -%d (version %d%s)",
        batch.table,
        batch.source,
        res.inserted,
        res.updated,
        res.deleted,
        res.version,
        ", already applied" if res.already_applied else "",
    )
    return out


def _load(svc: Any, tdef: Any, run_id: str) -> dict[str, Any] | None:
    from marketlake.pipeline.serving.connection import Serving
    from marketlake.pipeline.serving.load import Loader

    loader = Loader(
        Serving(svc.settings, application_name="marketlake-push").open(), svc.lake, run_id
    )
    try:
        loader.start()
        res = loader.load(tdef)
    finally:
        loader.db.close()
    return None if res is None else res.as_dict()
