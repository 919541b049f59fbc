"""Orchestration: the daily run and the offline demo, built from the stages.

Each step is its own task: a failing step is logged to ``sync_logs`` and the next step still
runs (the seeds' "task-level resilience").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import duckdb

from marketlake.errors import MarketlakeError
from marketlake.lake.duck import connect
from marketlake.lake.store import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import Settings
from marketlake.pipeline.redact import redact
from marketlake.pipeline.runs import StageResult, Stopwatch, TaskLog, new_run_id, utcnow
from marketlake.sql import load_sql

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


def _step(
    name: str, fn: Callable[[], StageResult], log: TaskLog, results: list, settings: Settings
) -> StageResult | None:
    started = utcnow()
    try:
        res = fn()
    except MarketlakeError as exc:
        msg = redact(exc, settings.secrets())
        log.add(f"daily:{name}", status="failed", error=msg, started_at=started)
        results.append({"stage": name, "status": "failed", "error": msg})
        return None
    log.add(
        f"daily:{name}",
        status="success" if res.status == "ok" else "failed",
        rows_updated=res.inserted + res.updated,
        started_at=started,
        error="; ".join(res.errors[:5]) or None,
        metadata={"run_id": res.run_id, **res.to_json()["rows"]},
    )
    results.append(res)
    return res


def _summarise(stage: str, run_id: str, results: list, watch: Stopwatch) -> StageResult:
    ok = sum(1 for r in results if isinstance(r, StageResult) and r.status == "ok")
    failed = len(results) - ok
    rs = [r for r in results if isinstance(r, StageResult)]
    errors = [f"{r['stage']}: {r['error']}" for r in results if isinstance(r, dict)]
    errors += [e for r in rs for e in r.errors][:50]
    return StageResult(
        run_id=run_id,
        stage=stage,
        tasks_ok=ok,
        tasks_failed=failed,
        inserted=sum(r.inserted for r in rs),
        updated=sum(r.updated for r in rs),
        unchanged=sum(r.unchanged for r in rs),
        quarantined=sum(r.quarantined for r in rs),
        duration_seconds=watch.elapsed,
        errors=tuple(errors),
        details={"steps": [r.to_json() if isinstance(r, StageResult) else r for r in results]},
    )


def run_daily(settings: Settings, *, progress: Progress | None = None) -> StageResult:
    """Universe refresh -> sync each segment -> compute -> load (when a DSN is set)."""
    from marketlake.pipeline.stages.ingest import run_sync

    watch = Stopwatch()
    run_id = new_run_id()
    lake = Lake(settings.home)
    log = TaskLog(run_id, "daily", "daily", settings.secrets())
    results: list = []
    if settings.universe_file is not None:

        def refresh() -> StageResult:
            w = Stopwatch()
            res, problems = universe.import_csv(lake, settings.universe_file, run_id=run_id)
            return StageResult(
                run_id,
                "universe",
                tasks_ok=1,
                inserted=res.inserted,
                updated=res.updated,
                unchanged=res.unchanged,
                duration_seconds=w.elapsed,
                errors=tuple(problems),
            )

        _step("universe", refresh, log, results, settings)
    segments = list(settings.segments) or sorted(
        set(universe.load(lake).get_column("asset_type").to_list())
    )
    for seg in segments:
        _step(
            f"sync:{seg}",
            lambda s=seg: run_sync(settings, segments=[s], progress=progress, trigger="daily"),
            log,
            results,
            settings,
        )
    _step("compute", lambda: _compute(settings, progress), log, results, settings)
    if settings.dsn:
        _step("load", lambda: _load(settings, progress), log, results, settings)
    log.flush(lake)
    return _summarise("daily", run_id, results, watch)


def _compute(settings: Settings, progress: Progress | None, **kw: Any) -> StageResult:
    from marketlake.pipeline.stages.compute import run_compute

    return run_compute(settings, progress=progress, **kw)


def _load(settings: Settings, progress: Progress | None) -> StageResult:
    from marketlake.pipeline.stages.load import run_load

    return run_load(settings, progress=progress, trigger="demo")


def run_demo(
    settings: Settings, *, equities: int = 40, progress: Progress | None = None
) -> dict[str, Any]:
    """The whole pipeline on the synthetic market: universe, sync (years of daily bars, weeks
    of hourly bars), compute, load when a DSN is set; returns what to show."""
    from marketlake.pipeline.stages.ingest import run_sync

    watch = Stopwatch()
    lake = Lake(settings.home)
    run_id = new_run_id()
    log = TaskLog(run_id, "demo", "demo", settings.secrets())
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
        "instruments", universe.instruments_frame(rows, run_id), run_id=run_id, stage="universe"
    )
    now = settings.now or utcnow()
    results: list = []
    _step(
        "sync",
        lambda: run_sync(
            settings,
            timeframes=["1D", "1W"],
            kinds=["ohlcv", "actions", "profile"],
            start=now - timedelta(days=3 * 365),
            progress=progress,
            trigger="demo",
        ),
        log,
        results,
        settings,
    )
    _step(
        "sync",
        lambda: run_sync(
            settings,
            timeframes=["1h"],
            start=now - timedelta(days=28),
            progress=progress,
            trigger="demo",
        ),
        log,
        results,
        settings,
    )
    _step(
        "compute",
        lambda: _compute(settings, progress, timeframes=["1D", "1h"]),
        log,
        results,
        settings,
    )
    if settings.dsn:
        _step("load", lambda: _load(settings, progress), log, results, settings)
    log.flush(lake)
    summary = _summarise("demo", run_id, results, watch)
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
        "steps": [
            r.to_json()
            if isinstance(r, StageResult)
            else {
                "stage": r["stage"],
                "status": "failed",
                "error": r["error"],
                "rows": {"inserted": 0, "updated": 0, "unchanged": 0},
                "duration_seconds": 0.0,
            }
            for r in results
        ],
        "status_rows": status(settings, lake, now),
        "sample_sql": sample_sql,
        "sample": sample,
        "duration_seconds": round(watch.elapsed, 2),
    }
