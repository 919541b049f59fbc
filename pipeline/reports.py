"""Read-only views for the CLI: per-segment status and recent ``sync_logs``."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from marketlake.lake.store import Lake
from marketlake.pipeline import freshness, universe
from marketlake.pipeline import timeframes as tfs
from marketlake.pipeline.config import Settings
from marketlake.pipeline.planning import NO_TIMEFRAME, SyncRequest, select_segments


def _expected(settings: Settings, lake: Lake) -> pl.DataFrame:
    """One row per (segment, symbol, timeframe, kind) the universe's segments ask for, so
    symbols never synced are counted too."""
    instruments = universe.load(lake)
    if instruments.is_empty():
        return pl.DataFrame(schema=_KEY_SCHEMA)
    rows = []
    for seg, frame in select_segments(settings, SyncRequest(), instruments):
        for kind in seg.kinds:
            if kind == "market":  # not per symbol
                continue
            for tf in seg.timeframes if kind == "ohlcv" else (NO_TIMEFRAME,):
                for sym in frame.get_column("symbol").to_list():
                    rows.append((seg.name, sym, tf, kind))
    return pl.DataFrame(rows, schema=_KEY_SCHEMA, orient="row")


_KEY_SCHEMA = {"segment": pl.String, "symbol": pl.String, "timeframe": pl.String, "kind": pl.String}


def _overdue(settings: Settings, frame: pl.DataFrame, now: datetime) -> list[bool]:
    """Per row: never synced, or its newest bar is older than the last closed session's
    bar (calendar-aware, after the segment's tolerance), or its last success is older than
    the segment's schedule (plus tolerance) allows."""
    expected: dict[tuple[str, str, timedelta], datetime] = {}
    out = []
    for r in frame.iter_rows(named=True):
        seg = settings.segments.get(r["segment"])
        cal = freshness.calendar_for(r["exchange"], r["asset_type"], r["timezone"])
        grace = freshness.tolerance(seg, cal)
        if r["last_success_at"] is None:
            out.append(True)
            continue
        late = r["last_success_at"] < now - freshness.schedule_interval(seg, settings) - grace
        if not late and r["kind"] == "ohlcv" and r["timeframe"] in tfs.DURATION:
            key = (cal, r["timeframe"], grace)
            if key not in expected:
                expected[key] = freshness.expected_last_bar(cal, r["timeframe"], now - grace)
            late = r["last_ts"] is None or r["last_ts"] < expected[key]
        out.append(late)
    return out


def status(settings: Settings, lake: Lake, now: datetime) -> list[dict]:
    """Per segment and timeframe/kind: coverage, freshness, overdue (see
    :mod:`marketlake.pipeline.freshness`), symbols never synced, and the last error."""
    lake.check_files("ohlcv")  # damaged bar files fail status (exit 1), not look fine
    st = lake.read("sync_status")
    grid = _expected(settings, lake)
    if st.is_empty() and grid.is_empty():
        return []
    keys = list(_KEY_SCHEMA)
    rows = grid.join(st, on=keys, how="full", coalesce=True)
    places = lake.read("instruments").select("symbol", "exchange", "asset_type", "timezone")
    rows = rows.join(places, on="symbol", how="left")
    rows = rows.with_columns(pl.Series("_overdue", _overdue(settings, rows, now)))
    per = (
        rows.group_by("segment", "timeframe", "kind")
        .agg(
            pl.len().alias("symbols"),
            (pl.col("status") == "ok").sum().alias("ok"),
            (pl.col("status") == "failed").sum().alias("failed"),
            pl.col("last_success_at").is_null().sum().alias("never"),
            pl.col("rows").sum().alias("rows"),
            pl.col("first_ts").min().alias("first_ts"),
            pl.col("last_ts").max().alias("last_ts"),
            pl.col("last_ts").min().alias("oldest_last_ts"),
            pl.col("last_success_at").max().alias("last_success_at"),
            pl.col("_overdue").sum().alias("overdue"),
            pl.col("error").filter(pl.col("error").is_not_null()).last().alias("last_error"),
        )
        .sort("segment", "timeframe", "kind")
    )
    out = []
    for r in per.iter_rows(named=True):
        age = None
        if r["last_success_at"] is not None:
            age = round((now - r["last_success_at"]).total_seconds() / 3600.0, 2)
        out.append(
            {
                **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()},
                "freshness_hours": age,
            }
        )
    return out


def logs(
    lake: Lake, *, limit: int = 20, failed: bool = False, task: str | None = None
) -> pl.DataFrame:
    """Recent ``sync_logs`` rows, newest first."""
    scan = lake.scan("sync_logs")
    if failed:
        scan = scan.filter(pl.col("status") == "failed")
    if task:
        scan = scan.filter(pl.col("task_name").str.contains(task, literal=True))
    return (
        scan.sort("completed_at", descending=True, nulls_last=True)
        .head(limit)
        .select(
            "completed_at",
            "run_id",
            "task_name",
            "status",
            "rows_updated",
            "duration_seconds",
            "error_message",
            "trigger",
        )
        .collect()
    )
