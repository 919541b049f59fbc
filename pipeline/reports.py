"""Read-only views for the CLI: per-segment status and recent ``sync_logs``."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from marketlake.lake.store import Lake
from marketlake.pipeline.config import Settings


def status(settings: Settings, lake: Lake, now: datetime) -> list[dict]:
    """Per segment and timeframe/kind: coverage, freshness, overdue and the last error."""
    st = lake.read("sync_status")
    if st.is_empty():
        return []
    overdue_before = now - timedelta(hours=settings.stale_after_hours)
    per = (
        st.group_by("segment", "timeframe", "kind")
        .agg(
            pl.len().alias("symbols"),
            (pl.col("status") == "ok").sum().alias("ok"),
            (pl.col("status") != "ok").sum().alias("failed"),
            pl.col("rows").sum().alias("rows"),
            pl.col("first_ts").min().alias("first_ts"),
            pl.col("last_ts").max().alias("last_ts"),
            pl.col("last_ts").min().alias("oldest_last_ts"),
            pl.col("last_success_at").max().alias("last_success_at"),
            ((pl.col("last_success_at").is_null()) | (pl.col("last_success_at") < overdue_before))
            .sum()
            .alias("overdue"),
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
