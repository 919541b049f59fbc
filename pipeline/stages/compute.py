"""The compute stage: indicators for every series whose bars changed since the last compute.

Changed (symbol, timeframe) pairs come from the lake's own history: the change data feed of
``ohlcv`` since the version recorded by the last complete compute (kept in the ``indicators``
commit metadata, so the watermark lands atomically with the data). Those series are recomputed
in full (recursive indicators stay exact), diffed against the stored rows, and only rows that
changed are merged. A re-run changes 0 rows. Warm-up values are stored as nulls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import polars as pl

from marketlake.errors import ConfigError, LakeError
from marketlake.lake.store import Lake
from marketlake.lake.tables import period_expr
from marketlake.pipeline import timeframes as tfs
from marketlake.pipeline.config import Settings
from marketlake.pipeline.runs import StageResult, Stopwatch, TaskLog, exclusive, new_run_id

WATERMARK = "compute_ohlcv_version"
BATCH_SYMBOLS = 400
KEY = ["symbol", "timeframe", "ts"]


def last_watermark(lake: Lake) -> int | None:
    """The ohlcv version the last complete compute saw, from the indicators' commit log."""
    for entry in lake.history("indicators"):
        if WATERMARK in entry:
            return int(entry[WATERMARK])
    return None


def changed_series(lake: Lake, since: int | None, upto: int) -> pl.DataFrame | None:
    """(symbol, timeframe) pairs whose bars changed in ohlcv versions (since, upto];
    None when the history cannot tell (no watermark, or the change feed was vacuumed)."""
    if since is None:
        return None
    if since >= upto:
        return pl.DataFrame(schema={"symbol": pl.String, "timeframe": pl.String})
    try:
        cdf = lake.changes("ohlcv", since + 1, upto)
    except Exception:  # change feed files vacuumed or unreadable: fall back to everything
        return None
    if cdf.is_empty():
        return pl.DataFrame(schema={"symbol": pl.String, "timeframe": pl.String})
    return cdf.select("symbol", "timeframe").unique()


@exclusive("compute")
def run_compute(
    settings: Settings,
    *,
    indicators: list[str] | None = None,
    timeframes: list[str] | None = None,
    symbols: list[str] | None = None,
    full: bool = False,
    progress: Callable[..., None] | None = None,
    trigger: str = "cli",
    run_id: str | None = None,
) -> StageResult:
    """Recompute indicators where bars changed and merge the rows that differ (under the
    lake's writer lock)."""
    from marketlake import kernels

    progress = progress or (lambda *a, **k: None)
    watch = Stopwatch()
    lake = Lake(settings.home)
    run_id = run_id or new_run_id(settings.clock())
    log = TaskLog(run_id, "compute", trigger, settings.secrets(), clock=settings.clock)
    try:
        columns = kernels.output_columns(indicators)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if timeframes:
        timeframes = list(tfs.check(timeframes))
    upto = lake.version("ohlcv")
    if upto is None:
        return StageResult(run_id, "compute", duration_seconds=watch.elapsed)
    since = None if (full or symbols or timeframes or indicators) else last_watermark(lake)
    todo = changed_series(lake, since, upto)
    series = lake.scan("ohlcv", version=upto)
    if todo is None:
        todo = series.select("symbol", "timeframe").unique().collect()
    if timeframes:
        todo = todo.filter(pl.col("timeframe").is_in(timeframes))
    if symbols:
        todo = todo.filter(pl.col("symbol").is_in(symbols))
    todo = todo.sort("timeframe", "symbol")
    tz = {
        r[0]: r[1] or "UTC"
        for r in lake.read("instruments").select("symbol", "timezone").iter_rows()
    }
    totals = {"inserted": 0, "updated": 0, "unchanged": 0}
    ok = failed = 0
    errors: list[str] = []
    progress("start", total=todo.height)
    groups = todo.group_by("timeframe", maintain_order=True).agg(pl.col("symbol"))
    batches = [
        (tf, syms[i : i + BATCH_SYMBOLS])
        for tf, syms in groups.iter_rows()
        for i in range(0, len(syms), BATCH_SYMBOLS)
    ]
    for n, (tf, syms) in enumerate(batches):
        started = settings.clock()
        try:
            res = _batch(
                lake,
                series,
                tf,
                syms,
                indicators,
                columns,
                tz,
                run_id,
                last=n == len(batches) - 1,
                computed_at=settings.clock(),
                upto=upto,
            )
            for k in totals:
                totals[k] += res[k]
            ok += len(syms)
            log.add(
                f"compute:{tf}:{len(syms)} symbols",
                status="success",
                rows_updated=res["inserted"] + res["updated"],
                started_at=started,
                metadata={"symbols": len(syms), **res},
            )
        except (LakeError, ValueError) as exc:
            failed += len(syms)
            errors.append(f"{tf} {syms[0]}..: {exc}")
            log.add(
                f"compute:{tf}:{len(syms)} symbols",
                status="failed",
                error=str(exc),
                started_at=started,
            )
        progress("advance", advance=len(syms), symbol=f"{tf}", rows=0)
    if not batches and since is not None and since < upto and not failed:
        lake.mark("indicators", run_id=run_id, stage="compute", metadata={WATERMARK: str(upto)})
    log.flush(lake)
    return StageResult(
        run_id,
        "compute",
        tasks_ok=ok,
        tasks_failed=failed,
        duration_seconds=watch.elapsed,
        errors=tuple(errors),
        details={"ohlcv_version": upto, "series": todo.height},
        **totals,
    )


def _batch(
    lake: Lake,
    series: pl.LazyFrame,
    tf: str,
    syms: list[str],
    indicators,
    columns,
    tz: dict[str, str],
    run_id: str,
    *,
    last: bool,
    upto: int,
    computed_at: datetime,
) -> dict[str, int]:
    from marketlake import kernels

    bars = (
        series.filter((pl.col("timeframe") == tf) & pl.col("symbol").is_in(syms))
        .select("symbol", "ts", "open", "high", "low", "close", "volume")
        .collect()
    )
    out = kernels.compute(bars, indicators, session_tz={s: tz.get(s, "UTC") for s in syms})
    new = out.select(
        "symbol",
        pl.lit(tf).alias("timeframe"),
        "ts",
        *[pl.col(c).fill_nan(None) for c in columns],
    ).with_columns(period_expr())
    old = lake.scan("indicators").filter((pl.col("timeframe") == tf) & pl.col("symbol").is_in(syms))
    old_cols = old.collect_schema().names()
    have = [c for c in columns if c in old_cols]
    old = old.select(*KEY, *[pl.col(c).alias(f"{c}__old") for c in have]).collect()
    old = old.with_columns(pl.lit(True).alias("__exists"))
    j = new.join(old, on=KEY, how="left")
    same = pl.col("__exists").fill_null(False) & pl.all_horizontal(
        [
            pl.col(c).eq_missing(pl.col(f"{c}__old")) if c in have else pl.col(c).is_null()
            for c in columns
        ]
    )
    j = j.with_columns(same.alias("__same"))
    write = (
        j.filter(~pl.col("__same"))
        .select(new.columns)
        .with_columns(
            pl.lit(computed_at).cast(pl.Datetime("us", "UTC")).alias("computed_at"),
            pl.lit(run_id).alias("run_id"),
        )
    )
    unchanged = j.height - write.height
    meta = {WATERMARK: str(upto)} if last else None
    if write.is_empty():
        if last:
            lake.mark("indicators", run_id=run_id, stage="compute", metadata=meta)
        return {"inserted": 0, "updated": 0, "unchanged": unchanged}
    res = lake.upsert("indicators", write, run_id=run_id, stage="compute", metadata=meta)
    return {
        "inserted": res.inserted,
        "updated": res.updated,
        "unchanged": unchanged + res.unchanged,
    }
