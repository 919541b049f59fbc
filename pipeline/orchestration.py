"""Orchestration: the daily run and the offline demo, built from the stages.

Each step is its own task: a step that raises anything (our errors, a library's, a Rust
panic) becomes a :class:`TaskError` raised from its cause, is logged to ``sync_logs`` with its
stage, run_id and cause, and the next step still runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import duckdb

from marketlake.errors import TaskError
from marketlake.lake.duck import connect
from marketlake.lake.store import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import Settings
from marketlake.pipeline.runs import (
    StageResult,
    Stopwatch,
    TaskLog,
    exclusive,
    new_run_id,
    survivable,
    task_error,
)
from marketlake.sql import load_sql

log = logging.getLogger("marketlake.orchestration")

Progress = Callable[..., None]

DEMO_CRYPTO = ("BTC/USD", "ETH/USD", "SOL/USD", "BTC/IDR")
_DEMO_ETFS = ("SPYX", "QQQX", "IWMX")


def demo_symbols(n: int) -> list[str]:
    """``n`` deterministic, ticker-like synthetic equity symbols."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    i = 0
    while len(out) < n:
        a, b, c = letters[i % 26], letters[(i * 7 + 3) % 26], letters[(i * 11 + 5) % 26]
        sym = f"{a}{b}{c}" + ("" if i < 26 else letters[(i // 26) % 26])
        if sym not in out:
            out.append(sym)
        i += 1
    return out


@dataclass(frozen=True)
class StepFailure:
    """A step that raised: its :class:`TaskError`, raised from the original error."""

    stage: str
    error: TaskError
    duration_seconds: float = 0.0
    status = "failed"

    def to_json(self) -> dict[str, Any]:
        cause = self.error.__cause__
        return {
            "stage": self.stage,
            "status": "failed",
            "error": str(self.error),
            "cause": type(cause).__name__ if cause is not None else None,
            "rows": {"inserted": 0, "updated": 0, "unchanged": 0, "quarantined": 0},
            "duration_seconds": round(self.duration_seconds, 3),
        }


class _Steps:
    """The steps of one orchestrated run: each is one task; whatever a step raises is logged
    (stage, run_id, cause) and the next step still runs."""

    def __init__(
        self, settings: Settings, stage: str, run_id: str, progress: Progress | None = None
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.run_id = run_id
        self.secrets = settings.secrets()
        self.log = TaskLog(run_id, stage, stage, self.secrets, clock=settings.clock)
        self.results: list[StageResult | StepFailure] = []
        self.progress = progress or (lambda *a, **k: None)
        self.count: int | None = None  # how many steps the run has, once known
        self.started = 0

    def run(self, name: str, fn: Callable[[], StageResult | None]) -> StageResult | None:
        # step i of n: a watcher's bar advances by steps, never back when a step finds work
        self.progress("step", name=name, index=self.started, count=self.count)
        self.started += 1
        started = self.settings.clock()
        watch = Stopwatch()
        try:
            res = fn()
        except BaseException as exc:
            if not survivable(exc):
                raise
            err = task_error(exc, stage=name, run_id=self.run_id, secrets=self.secrets)
            log.error("%s step %s failed: %s", self.stage, name, err)
            self.log.add(
                f"{self.stage}:{name}",
                status="failed",
                error=str(err),
                started_at=started,
                metadata={"step": name, "run_id": self.run_id, "cause": type(exc).__name__},
            )
            self.results.append(StepFailure(name, err, watch.elapsed))
            return None
        if res is None:  # nothing to do (e.g. no provider offers market data)
            return None
        self.log.add(
            f"{self.stage}:{name}",
            status="success" if res.status == "ok" else "failed",
            rows_updated=res.inserted + res.updated,
            started_at=started,
            error="; ".join(str(e) for e in res.errors[:5]) or None,
            metadata={"run_id": res.run_id, **res.to_json()["rows"]},
        )
        self.results.append(res)
        return res

    def flush(self, lake: Lake) -> None:
        self.log.flush(lake)

    def summary(self, watch: Stopwatch) -> StageResult:
        rs = [r for r in self.results if isinstance(r, StageResult)]
        ok = sum(1 for r in rs if r.status == "ok")
        errors: list[str | TaskError] = [
            r.error for r in self.results if isinstance(r, StepFailure)
        ]
        errors += [e for r in rs for e in r.errors][:50]
        return StageResult(
            run_id=self.run_id,
            stage=self.stage,
            tasks_ok=ok,
            tasks_failed=len(self.results) - ok,
            inserted=sum(r.inserted for r in rs),
            updated=sum(r.updated for r in rs),
            unchanged=sum(r.unchanged for r in rs),
            quarantined=sum(r.quarantined for r in rs),
            duration_seconds=watch.elapsed,
            errors=tuple(errors),
            details={"steps": [r.to_json() for r in self.results]},
        )


@exclusive("daily")
def run_daily(
    settings: Settings, *, progress: Progress | None = None, run_id: str | None = None
) -> StageResult:
    """Universe refresh -> sync each segment -> market status and calendars -> compute ->
    load (when a DSN is set), under one hold of the lake's writer lock. Each step is one task;
    a failing step never stops the next, and the run's own ``sync_logs`` rows are written
    whatever happened."""
    from marketlake.pipeline.stages.ingest import run_sync
    from marketlake.pipeline.stages.market import run_market

    watch = Stopwatch()
    run_id = run_id or new_run_id(settings.clock())
    lake = settings.open_lake()
    steps = _Steps(settings, "daily", run_id, progress)
    try:
        if settings.universe_file is not None:
            steps.run("universe", lambda: _refresh_universe(settings, lake, run_id))
        try:
            segments = list(settings.segments) or sorted(
                set(universe.load(lake).get_column("asset_type").to_list())
            )
            failed = None
        except Exception as exc:  # an unreadable universe fails the sync step, not the run
            segments, failed = [], exc
        # the rest is known now: each segment's sync (or the failed one), market, compute, load
        steps.count = (
            steps.started + max(len(segments), failed is not None) + 2 + bool(settings.dsn)
        )
        if failed is not None:
            steps.run("sync", lambda e=failed: _raise(e))
        for seg in segments:
            steps.run(
                f"sync:{seg}",
                lambda s=seg: run_sync(settings, segments=[s], progress=progress, trigger="daily"),
            )
        steps.run("market", lambda: run_market(settings, trigger="daily", required=False))
        steps.run("compute", lambda: _compute(settings, progress))
        if settings.dsn:
            steps.run("load", lambda: _load(settings, progress, trigger="daily"))
    finally:
        steps.flush(lake)
    return steps.summary(watch)


def _raise(exc: BaseException) -> StageResult:
    raise exc


def _refresh_universe(settings: Settings, lake: Lake, run_id: str) -> StageResult:
    """``universe refresh file`` from ``[universe] file``: instruments gone from the list are
    marked inactive (their history stays)."""
    from marketlake.pipeline.refresh import refresh

    w = Stopwatch()
    listed, problems = universe.read_csv(settings.universe_file)
    res = refresh(lake, "file", listed, run_id=run_id, now=settings.clock())
    return StageResult(
        run_id,
        "universe",
        tasks_ok=1,
        inserted=res.added,
        updated=res.updated + res.inactivated,
        unchanged=res.unchanged,
        duration_seconds=w.elapsed,
        errors=tuple(problems + res.duplicates),
    )


def _compute(settings: Settings, progress: Progress | None, **kw: Any) -> StageResult:
    from marketlake.pipeline.stages.compute import run_compute

    return run_compute(settings, progress=progress, **kw)


def _load(settings: Settings, progress: Progress | None, *, trigger: str) -> StageResult:
    from marketlake.pipeline.stages.load import run_load

    return run_load(settings, progress=progress, trigger=trigger)


@exclusive("demo")
def run_demo(
    settings: Settings,
    *,
    equities: int = 40,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The whole pipeline on the synthetic market: universe, sync (years of daily bars, weeks
    of hourly bars), compute, load when a DSN is set; returns what to show."""
    from marketlake.pipeline.stages.ingest import run_sync

    watch = Stopwatch()
    lake = settings.open_lake()
    run_id = run_id or new_run_id(settings.clock())
    syms = demo_symbols(equities)
    import polars as pl

    rows = pl.DataFrame(
        {
            "symbol": [*syms, *_DEMO_ETFS, *DEMO_CRYPTO],
            "name": [f"{s} Corp (synthetic)" for s in syms]
            + [f"{s} ETF (synthetic)" for s in _DEMO_ETFS]
            + [f"{s} (synthetic)" for s in DEMO_CRYPTO],
            "asset_type": ["equity"] * len(syms)
            + ["etf"] * len(_DEMO_ETFS)
            + ["crypto"] * len(DEMO_CRYPTO),
            "exchange": ["SYNX"] * (len(syms) + len(_DEMO_ETFS)) + ["SYNC"] * len(DEMO_CRYPTO),
            "provider": ["synthetic"] * (len(syms) + len(_DEMO_ETFS) + len(DEMO_CRYPTO)),
        }
    )
    lake.upsert(
        "instruments",
        universe.instruments_frame(rows, run_id, now=settings.clock()),
        run_id=run_id,
        stage="universe",
    )
    now = settings.clock()
    steps = _Steps(settings, "demo", run_id)
    try:
        steps.run(
            "sync:1D,1W",
            lambda: run_sync(
                settings,
                timeframes=["1D", "1W"],
                kinds=["ohlcv", "actions", "profile"],
                start=now - timedelta(days=3 * 365),
                progress=progress,
                trigger="demo",
            ),
        )
        steps.run(
            "sync:1h",
            lambda: run_sync(
                settings,
                timeframes=["1h"],
                start=now - timedelta(days=28),
                progress=progress,
                trigger="demo",
            ),
        )
        steps.run("compute", lambda: _compute(settings, progress, timeframes=["1D", "1h"]))
        if settings.dsn:
            steps.run("load", lambda: _load(settings, progress, trigger="demo"))
    finally:
        steps.flush(lake)
    summary = steps.summary(watch)
    from marketlake.pipeline.reports import status

    sample_sql = " ".join(
        line
        for line in load_sql("duckdb/demo_sample.sql").splitlines()
        if not line.startswith("--")
    )
    con = connect(lake, ["ohlcv", "indicators"])
    try:
        sample = con.sql(sample_sql).pl()
    except duckdb.Error:  # no indicators yet (compute failed): show bars only
        sample_sql = "SELECT symbol, count(*) AS bars FROM ohlcv GROUP BY symbol ORDER BY 1 LIMIT 8"
        sample = con.sql(sample_sql).pl()
    return {
        "status": summary.status,
        "run_id": run_id,
        "lake": str(settings.lake),
        "steps": [r.to_json() for r in steps.results],
        "status_rows": status(settings, lake, settings.clock()),  # as the run ends
        "sample_sql": sample_sql,
        "sample": sample,
        "duration_seconds": round(watch.elapsed, 2),
    }
