"""The HTTP service (``marketlake serve``): JSON API under ``/api/v1``, OpenAPI at ``/docs``, the
admin page at ``/``. Built on the same stages as the CLI (see :mod:`.runs`, :mod:`.scheduler`).

Responses use the envelope people's sync services use today: ``{"success": true, "data": ...}``
and ``{"success": false, "error": "..."}``. Every ``/api`` route but health needs
``Authorization: Bearer <token>``; request bodies are bounded; no CORS headers are sent.
Status and health answer from memory (the run's live state and a :class:`.summary.Summary`
kept current off the request path); every time they show or age from is the settings' one
clock. ``/docs`` (Swagger UI) and ``/redoc`` load their scripts from this origin
(``fastapi-offline`` ships them), so they work without a network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException

from marketlake.errors import ConfigError, MarketlakeError, UnknownSymbolError
from marketlake.pipeline import journal
from marketlake.pipeline.config import Settings
from marketlake.pipeline.planning import parse_when
from marketlake.pipeline.service.auth import Token
from marketlake.pipeline.service.runs import Run, RunInProgress, RunManager, RunRequest
from marketlake.pipeline.service.scheduler import Scheduler
from marketlake.pipeline.service.schedules import format_duration
from marketlake.pipeline.service.settings_store import SettingError, SettingsStore
from marketlake.pipeline.service.summary import Snapshot, Summary

log = logging.getLogger("marketlake.serve")
ARROW = "application/vnd.apache.arrow.stream"
MAX_BODY_BYTES = 64 * 1024
STREAMED_BODIES = "/api/v1/sync/push/"  # pushes: streamed to disk by the route, any size
STATUS_BODY_TTL_S = 0.25  # one status body serves every client polling within this window
STATIC = resources.files("marketlake.pipeline.service") / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        # scripts only from this origin; the chart library sets inline style attributes
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


_BEARER = HTTPBearer(auto_error=False, description="MARKETLAKE_API_TOKEN")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


@dataclass
class ServiceConfig:
    """Everything the service needs, resolved at the edge (the CLI)."""

    settings: Settings
    token: Token
    file_values: dict[str, Any] = field(default_factory=dict)  # marketlake.toml [serve]
    tick_seconds: float = 1.0
    scheduler: bool = True


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"success": True, "data": data}, status_code=status)


def fail(message: str, status: int, data: Any = None, headers: dict | None = None) -> JSONResponse:
    body: dict[str, Any] = {"success": False, "error": message}
    if data is not None:
        body["data"] = data
    return JSONResponse(body, status_code=status, headers=headers)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- request bodies --------------------------------------------------------------------------
class SyncBody(BaseModel):
    """``POST /api/v1/sync``: what to sync (``stage: daily`` runs the whole daily run)."""

    model_config = ConfigDict(extra="forbid")
    stage: Literal["sync", "daily"] = "sync"
    segments: list[str] = Field(default_factory=list, max_length=100)
    scope: Literal["all", "never", "stale"] = "all"
    symbols: list[str] = Field(default_factory=list, max_length=10_000)
    timeframes: list[str] = Field(default_factory=list, max_length=20)
    kinds: list[str] = Field(default_factory=list, max_length=10)
    force: bool = False


class _BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes (413), declared or not."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(STREAMED_BODIES):
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                return await _too_large(send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        try:
            return await self.app(scope, limited, send)
        except _BodyTooLarge:
            return await _too_large(send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send) -> None:
    body = json.dumps({"success": False, "error": "request body too large"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Service:
    """The service's parts, shared by the routes."""

    def __init__(self, cfg: ServiceConfig) -> None:
        self.cfg = cfg
        self.settings = cfg.settings
        self.clock = cfg.settings.clock  # the one clock: pinned by MARKETLAKE_NOW
        self.lake = cfg.settings.open_lake()  # home/lake, or MARKETLAKE_LAKE_URI
        self.store = SettingsStore(self.lake, clock=self.clock)
        self.scheduler: Scheduler | None = None
        self.summary = Summary(self._read_summary, self._lock_holder, on_change=self.invalidate)
        self.manager = RunManager(
            cfg.settings, on_finish=self._finished, on_commit=self.summary.touch
        )
        self.scheduler = Scheduler(
            self.manager, self.store, clock=self.clock, tick_seconds=cfg.tick_seconds
        )
        self._body: tuple[float, Any, bytes] | None = None  # (when, run key, status body)

    def _read_summary(self) -> Snapshot:
        """The lake's part of status and health (on the summary's thread, never a request's)."""
        from marketlake.pipeline.reports import status

        done = journal.runs(self.lake, statuses=(*journal.COMPLETED, journal.INTERRUPTED))
        done = done.sort("completed_at", descending=True, nulls_last=True)

        def first(frame: pl.DataFrame) -> dict | None:
            if frame.is_empty():
                return None
            row = frame.row(0, named=True)
            row["metadata"] = json.loads(row["metadata"] or "{}")
            return row

        now = self.clock()
        return Snapshot(
            segments=status(self.settings, self.lake, now),
            last_completed=first(done.filter(pl.col("status").is_in(journal.COMPLETED))),
            last_ended=first(done),
            computed_at=now,
        )

    def _lock_holder(self) -> dict[str, Any] | None:
        h = self.manager.lock.holder()
        if h is None:
            return None
        return {"run_id": h.run_id, "stage": h.stage, "started_at": h.started_at}

    def invalidate(self) -> None:
        """Something status shows changed: the next status request builds a new body."""
        self._body = None

    def lake_changed(self) -> None:
        """The lake was written outside a run (a push): status shows it at once."""
        self.summary.refresh()

    def _finished(self, run: Run) -> None:
        if self.scheduler is not None:
            self.scheduler.finished(run)
        self.summary.refresh()  # before watchers hear the end: status is current

    def other_run(self) -> dict[str, Any] | None:
        """A run another process (a CLI stage) holds the lake for, as last polled."""
        h = self.summary.holder
        if h is None or h["run_id"] in self.manager.runs or h["run_id"].startswith("recover-"):
            return None
        return h

    def startup(self) -> None:
        marked = self.manager.recover()
        if marked:
            log.warning("runs left running by an ended process, now interrupted: %s", marked)
        values = dict(self.cfg.file_values)
        segs = {n: s.schedule for n, s in self.settings.segments.items() if s.schedule}
        if segs and "segment_schedules" not in values:
            values["segment_schedules"] = segs
        applied = self.store.apply_file(values)
        if applied:
            log.info("settings from marketlake.toml applied: %s", ", ".join(applied))
        self.store.values()  # read once here, not on a request
        self.summary.start()
        if self.cfg.scheduler:
            self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        self.summary.stop()

    def status_body(self) -> bytes:
        """``GET /api/v1/sync/status`` from memory: built at most once per
        :data:`STATUS_BODY_TTL_S` (and anew when a run starts or ends or settings change)."""
        cur = self.manager.current
        key = (cur.run_id, cur.active) if cur is not None else None
        hit = self._body
        if hit is not None and hit[1] == key and time.monotonic() - hit[0] < STATUS_BODY_TTL_S:
            return hit[2]
        body = json.dumps({"success": True, "data": self._status(cur)}, default=str).encode()
        self._body = (time.monotonic(), key, body)
        return body

    def _status(self, cur: Run | None) -> dict[str, Any]:
        now = self.clock()
        running = cur is not None and cur.active
        holder = None if running else self.other_run()
        snap = self.summary.snapshot
        last = snap.last_completed
        result = (last or {}).get("metadata", {}).get("result") or {}
        sched = self.schedule_info(now)
        return {
            "is_running": running or holder is not None,
            "run": cur.state() | {"tasks": list(cur.tasks)[-20:]} if running else None,
            "other_process_run": {
                k: _iso(v) if isinstance(v, datetime) else v for k, v in holder.items()
            }
            if holder
            else None,
            "last_sync": _iso(last["completed_at"]) if last else None,
            "last_run_id": last["run_id"] if last else None,
            "last_status": last["status"] if last else None,
            "last_error": (last or {}).get("error_message"),
            "total_tasks": sum((result.get("tasks") or {}).values()) if result else 0,
            "failed_tasks": (result.get("tasks") or {}).get("failed", 0),
            "updated_rows": (last or {}).get("rows_updated", 0),
            **{k: v for k, v in sched.items() if not k.startswith("_")},
            "segments": snap.segments,
            "segments_as_of": _iso(snap.computed_at),
        }

    def last_run(self) -> dict | None:
        return self.summary.snapshot.last_completed

    def schedule_info(self, now: datetime) -> dict[str, Any]:
        cur = self.store.current()
        nexts = self.scheduler.next_runs(now) if self.scheduler else {}
        upcoming = [(t, n) for n, t in nexts.items() if t is not None]
        nxt = min(upcoming) if upcoming else None
        daily = cur.schedule
        return {
            "enabled": bool(daily and daily.enabled),
            "sync_interval": format_duration(daily.interval) if daily and daily.interval else None,
            "cron": daily.cron if daily else None,
            "timezone": daily.timezone if daily else None,
            "schedule": daily.to_json() if daily else None,
            "segment_schedules": {k: v.to_json() for k, v in cur.segment_schedules.items()},
            "next_sync": _iso(nxt[0]) if nxt else None,
            "next_sync_schedule": nxt[1] if nxt else None,
            "overdue_grace": format_duration(cur.overdue_grace),
            "_next": nxt[0] if nxt else None,
            "_grace": cur.overdue_grace,
        }


def create_app(cfg: ServiceConfig) -> FastAPI:
    svc = Service(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(svc.startup)
        try:
            yield
        finally:
            await asyncio.to_thread(svc.shutdown)

    app = FastAPIOffline(  # /docs and /redoc with their scripts served from here, not a CDN
        title="marketlake",
        summary="Sync service: scheduler, runs with live progress, bars and indicators.",
        version="1",
        lifespan=lifespan,
        static_url="/docs-assets",
        favicon_url="/favicon.ico",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from elsewhere
    )
    app.state.service = svc
    app.add_middleware(_BodyLimit)

    async def authorized(creds: Credentials) -> None:
        if (
            creds is None
            or creds.scheme.lower() != "bearer"
            or not cfg.token.matches(creds.credentials)
        ):
            raise HTTPException(401, "missing or wrong bearer token")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return fail(str(exc.detail), exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        return fail(f"{where or 'request'}: {first.get('msg', 'invalid')}", 422)

    @app.exception_handler(ConfigError)
    async def config_error(request: Request, exc: ConfigError):
        return fail(str(exc).splitlines()[0], 422)

    @app.exception_handler(UnknownSymbolError)
    async def unknown_symbol(request: Request, exc: UnknownSymbolError):
        return fail(str(exc), 404)

    @app.exception_handler(MarketlakeError)
    async def other_error(request: Request, exc: MarketlakeError):
        return fail(str(exc).splitlines()[0], 500)

    api = APIRouter(prefix="/api/v1")
    secured = APIRouter(prefix="/api/v1", dependencies=[Depends(authorized)])

    # -- runs ------------------------------------------------------------------------------
    @secured.post("/sync", status_code=202, summary="Start a sync now (409 while one runs)")
    def trigger(body: SyncBody | None = None):
        body = body or SyncBody()
        if body.timeframes:
            from marketlake.pipeline import timeframes as tfs

            tfs.check(body.timeframes)
        from marketlake.pipeline.providers.base import KINDS

        bad = [k for k in body.kinds if k not in KINDS]
        if bad:
            raise ConfigError(f"kinds: unknown {bad[0]!r}; valid: {', '.join(KINDS)}")
        if body.segments:
            known = _known_segments(svc)
            unknown = [s for s in body.segments if s not in known]
            if unknown:
                raise ConfigError(
                    f"segments: unknown {unknown[0]!r}; known: {', '.join(sorted(known))}"
                )
        params = body.model_dump(exclude={"stage"}) if body.stage == "sync" else {}
        try:
            run = svc.manager.start(RunRequest(body.stage, trigger="api", params=params))
        except RunInProgress as exc:
            return fail(
                str(exc),
                409,
                data={
                    "run_id": exc.run_id,
                    "stage": exc.stage,
                    "started_at": _iso(exc.started_at),
                    "status": "running",
                },
            )
        last = svc.last_run()
        took = ((last or {}).get("metadata", {}).get("result") or {}).get("duration_seconds")
        est = "~" + (format_duration(took) or "0s") if took else None
        return ok(
            {
                "run_id": run.run_id,
                "status": "running",
                "stage": body.stage,
                "message": "synchronization started in background",
                "triggered_at": _iso(run.started_at),
                "estimated_duration": est,
                "events": f"/api/v1/runs/{run.run_id}/events",
            },
            202,
        )

    @secured.get("/sync/status", summary="Current run, schedule, last sync, per-segment coverage")
    async def sync_status():
        return Response(svc.status_body(), media_type="application/json")

    @api.get("/sync/health", summary="healthy / degraded / unhealthy (503); no token needed")
    async def sync_health():
        now = svc.clock()
        snap = svc.summary.snapshot
        if snap.error is not None:  # the lake cannot be read: the unhealthy case
            body = {
                "status": "unhealthy",
                "is_running": False,
                "is_healthy": False,
                "is_overdue": False,
                "summary": snap.error,
                "checked_at": _iso(now),
            }
            return JSONResponse({"success": True, "data": body}, status_code=503)
        sched = svc.schedule_info(now)
        last, segments = snap.last_ended, snap.segments
        cur = svc.manager.current
        running = (cur is not None and cur.active) or svc.other_run() is not None
        nxt, grace = sched["_next"], sched["_grace"]
        overdue = bool(sched["enabled"] or sched["segment_schedules"]) and (
            nxt is not None and now > nxt + grace and not running
        )
        scheduler_alive = svc.scheduler.alive if cfg.scheduler else True
        problems, worse = [], []
        if overdue:
            worse.append(f"the run due at {_iso(nxt)} has not started")
        if not scheduler_alive:
            worse.append("the scheduler is not running")
        if last is not None and last["status"] == "failed":
            worse.append(f"the last run {last['run_id']} failed")
        if last is not None and last["status"] in ("partial", "interrupted"):
            problems.append(f"the last run {last['run_id']} was {last['status']}")
        if last is None:
            problems.append("nothing synced yet")
        late = sum(int(r.get("overdue") or 0) for r in segments)
        if late:
            problems.append(f"{late} series are overdue")
        status = "unhealthy" if worse else "degraded" if problems else "healthy"
        age = (now - last["completed_at"]) if last and last["completed_at"] else None
        summary = "; ".join(worse + problems) or (
            "a sync is running" if running else "sync service is running"
        )
        body = {
            "status": status,
            "is_running": running,
            "is_healthy": status == "healthy",
            "is_overdue": overdue,
            "last_sync": _iso(last["completed_at"]) if last else None,
            "last_sync_age": format_duration(age),
            "next_sync": sched["next_sync"],
            "next_sync_in": format_duration(nxt - now) if nxt else None,
            "sync_interval": sched["sync_interval"],
            "cron": sched["cron"],
            "summary": summary,
            "checked_at": _iso(now),
        }
        return JSONResponse(
            {"success": True, "data": body}, status_code=503 if status == "unhealthy" else 200
        )

    @secured.post("/sync/start", summary="Turn the schedule on: ?interval=24h or ?cron=...")
    def schedule_on(
        interval: str | None = None,
        cron: str | None = None,
        timezone: str = "UTC",
        segment: str | None = None,
    ):
        if (interval is None) == (cron is None):
            raise ConfigError("give exactly one of interval or cron")
        value: dict[str, Any] = (
            {"interval": interval, "enabled": True}
            if interval is not None
            else {"cron": cron, "timezone": timezone, "enabled": True}
        )
        _set_schedule(svc, segment, value)
        return ok(svc.schedule_info(svc.clock()) | {"_next": None, "_grace": None})

    @secured.post("/sync/stop", summary="Turn the schedule off (a running run goes on)")
    def schedule_off(segment: str | None = None):
        cur = svc.store.current()
        sched = cur.segment_schedules.get(segment) if segment else cur.schedule
        if sched is not None:
            _set_schedule(svc, segment, {**sched.to_json(), "enabled": False})
        return ok(svc.schedule_info(svc.clock()) | {"_next": None, "_grace": None})

    @secured.get("/sync/logs", summary="sync_logs rows, newest first")
    def sync_logs(
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0),
        failed: bool = False,
        task: str | None = Query(None, max_length=200),
    ):
        scan = svc.lake.scan("sync_logs")
        if failed:
            scan = scan.filter(pl.col("status").is_in(["failed", "interrupted"]))
        if task:
            scan = scan.filter(pl.col("task_name").str.contains(task, literal=True))
        frame = (
            scan.with_columns(pl.coalesce("completed_at", "started_at").alias("_when"))
            .sort("_when", descending=True, nulls_last=True)
            .slice(offset, limit)
            .drop("_when")
            .collect()
        )
        rows = []
        for r in frame.iter_rows(named=True):
            r["metadata"] = json.loads(r["metadata"] or "{}")
            r["metadata"].pop("result", None) if r["task_name"].startswith("run:") else None
            rows.append({k: _iso(v) if isinstance(v, datetime) else v for k, v in r.items()})
        return ok({"logs": rows, "limit": limit, "offset": offset, "count": len(rows)})

    @secured.get("/sync/settings", summary="The service's settings")
    def get_settings():
        return ok(svc.store.values())

    @secured.put("/sync/settings", summary="Change settings (validated; unknown keys are 422)")
    async def put_settings(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return fail("body: expected JSON", 422)
        if isinstance(body, list):  # [{"setting_key": ..., "setting_value": ...}]
            try:
                body = {item["setting_key"]: item["setting_value"] for item in body}
            except (TypeError, KeyError):
                return fail("body: expected objects with setting_key and setting_value", 422)
        if not isinstance(body, dict) or not body:
            return fail("body: expected an object of settings", 422)
        try:
            values = await asyncio.to_thread(svc.store.update, body)
        except SettingError as exc:
            return fail(str(exc), 422, data={"key": exc.key})
        svc.invalidate()
        return ok(values)

    @secured.get("/runs/{run_id}/events", summary="Server-sent events of one run")
    async def run_events(run_id: str):
        run = svc.manager.runs.get(run_id)
        if run is None:
            row = await asyncio.to_thread(journal.find, svc.lake, run_id)
            if row is None:
                return fail(f"no run {run_id}", 404)
            return EventSourceResponse(_replay(row))
        state, queue = run.subscribe(asyncio.get_running_loop())

        async def stream():
            try:
                yield {"event": "state", "id": str(state["seq"]), "data": json.dumps(state)}
                if state["final"] is not None:
                    yield {"event": "final", "data": json.dumps(state["final"])}
                    return
                while True:
                    ev = await queue.get()
                    if ev["id"] <= state["seq"]:
                        continue
                    yield {
                        "event": ev["event"],
                        "id": str(ev["id"]),
                        "data": json.dumps(ev["data"]),
                    }
                    if ev["event"] == "final":
                        return
            finally:
                run.unsubscribe(queue)

        return EventSourceResponse(stream(), ping=15)

    # -- data for the page and apps --------------------------------------------------------
    @secured.get("/instruments", summary="The universe (JSON, or Arrow IPC on request)")
    def instruments(
        request: Request,
        asset_type: str | None = Query(None, max_length=40),
        q: str | None = Query(None, max_length=100),
    ):
        from marketlake.pipeline import universe

        frame = universe.load(
            svc.lake, asset_types=[asset_type] if asset_type else None, active_only=False
        ).select("symbol", "name", "asset_type", "exchange", "is_etf", "provider", "active")
        if q:
            needle = q.lower()
            frame = frame.filter(
                pl.col("symbol").str.to_lowercase().str.contains(needle, literal=True)
                | pl.col("name").fill_null("").str.to_lowercase().str.contains(needle, literal=True)
            )
        bars = svc.lake.scan("ohlcv").select("symbol", "timeframe").unique().collect()
        tf = bars.group_by("symbol").agg(pl.col("timeframe").sort().alias("timeframes"))
        frame = frame.join(tf, on="symbol", how="left").sort("symbol")
        if ARROW in request.headers.get("accept", ""):
            return _arrow(frame)
        return ok({"instruments": frame.to_dicts(), "count": frame.height})

    @secured.get("/bars/{symbol:path}", summary="One symbol's bars with indicators")
    def bars(
        request: Request,
        symbol: str,
        timeframe: str = "1D",
        start: str | None = None,
        end: str | None = None,
        indicators: str | None = Query(None, max_length=500),
        limit: int | None = Query(None, ge=1, le=20_000),
    ):
        from marketlake.pipeline.bars import read_bars
        from marketlake.pipeline.commands import split_indicators

        frame = read_bars(
            svc.lake,
            symbol,
            timeframe,
            start=parse_when(start, "start"),
            end=parse_when(end, "end"),
            indicators=split_indicators(indicators),
            limit=limit,
        )
        if ARROW in request.headers.get("accept", ""):
            return _arrow(frame)
        cols = {c: frame.get_column(c).fill_nan(None).to_list() for c in frame.columns if c != "ts"}
        return ok(
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "ts": [t.isoformat() for t in frame.get_column("ts").to_list()],
                "time": (frame.get_column("ts").dt.epoch("s")).to_list(),
                "columns": cols,
                "count": frame.height,
            }
        )

    from marketlake.pipeline.service.transfer import transfer_router

    app.include_router(api)
    app.include_router(secured)
    app.include_router(transfer_router(svc, authorized, ok, fail))

    # -- the page ----------------------------------------------------------------------------
    def static(name: str, media: str) -> Response:
        node = STATIC.joinpath(*name.split("/"))
        return Response(node.read_bytes(), media_type=media, headers=PAGE_HEADERS)

    @app.get("/", include_in_schema=False)
    def page():
        return static("index.html", "text/html; charset=utf-8")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return static("favicon.svg", "image/svg+xml")

    @app.get("/static/{name:path}", include_in_schema=False)
    def static_file(name: str):
        files = {
            "app.js": "text/javascript; charset=utf-8",
            "style.css": "text/css; charset=utf-8",
            "favicon.svg": "image/svg+xml",
            "vendor/lightweight-charts.standalone.production.js": "text/javascript; charset=utf-8",
            "vendor/LICENSE-lightweight-charts": "text/plain; charset=utf-8",
        }
        if name not in files:
            return fail("not found", 404)
        return static(name, files[name])

    return app


def _known_segments(svc: Service) -> set[str]:
    from marketlake.pipeline import universe

    types = set(universe.load(svc.lake, active_only=False).get_column("asset_type").to_list())
    return set(svc.settings.segments) | {t for t in types if t}


def _set_schedule(svc: Service, segment: str | None, value: dict[str, Any]) -> None:
    if segment:
        cur = svc.store.values()["segment_schedules"] or {}
        svc.store.update({"segment_schedules": {**cur, segment: value}})
    else:
        svc.store.update({"schedule": value})
    svc.invalidate()


def _arrow(frame: pl.DataFrame) -> Response:
    import io

    sink = io.BytesIO()
    frame.write_ipc_stream(sink)
    return Response(sink.getvalue(), media_type=ARROW)


async def _replay(row: dict[str, Any]):
    """A run from an earlier process: its journaled state, then its final object."""
    meta = row.get("metadata") or {}
    final = meta.get("result") or {
        "run_id": row["run_id"],
        "stage": row["stage"],
        "status": row["status"],
        "errors": [row["error_message"]] if row.get("error_message") else [],
    }
    state = {
        "run_id": row["run_id"],
        "stage": row["stage"],
        "trigger": row["trigger"],
        "status": row["status"],
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["completed_at"]),
        "progress": None,
        "tasks": [],
        "final": final,
        "seq": 0,
    }
    yield {"event": "state", "data": json.dumps(state, default=str)}
    yield {"event": "final", "data": json.dumps(final, default=str)}
