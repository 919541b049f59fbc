"""What ``sync SEGMENT`` runs for a segment whose task is not a plain sync: expired F&O by
expiry (``fo_expired``), or the indicators of the segment's instruments (``indicators``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import polars as pl

from marketlake.errors import ConfigError
from marketlake.lake.store import Lake
from marketlake.pipeline import segments as named_segments
from marketlake.pipeline import universe
from marketlake.pipeline.config import Settings
from marketlake.pipeline.runs import StageResult, new_run_id


def run_segment_task(
    settings: Settings,
    name: str,
    *,
    timeframes=None,
    symbols=None,
    start: str | datetime | None = None,
    dry_run: bool = False,
    progress: Callable[..., None] | None = None,
    trigger: str = "cli",
) -> StageResult:
    seg = named_segments.named(settings)[name]
    if seg.task == "fo_expired":
        if dry_run:
            from marketlake.pipeline.stages.fo_expired import finished

            done = len(finished(settings.open_lake(), name))
            tasks = [
                {
                    "symbol": u,
                    "timeframe": ",".join(timeframes or seg.timeframes),
                    "kind": "expiry",
                    "start": str(start or seg.start or ""),
                    "end": settings.clock().isoformat(),
                    "provider": seg.provider or "upstox",
                    "reason": f"expiries not yet checkpointed ({done} done)",
                    "segment": name,
                }
                for u in (symbols or seg.symbols)
            ]
            return StageResult(
                run_id=new_run_id(settings.clock()),
                stage="sync",
                details={"dry_run": True, "tasks": tasks},
            )
        from marketlake.pipeline.stages.fo_expired import run_fo_expired

        return run_fo_expired(
            settings,
            segment=name,
            underlyings=list(symbols) if symbols else None,
            timeframes=list(timeframes) if timeframes else None,
            start=start,
            progress=progress,
            trigger=trigger,
        )
    if seg.task == "indicators":
        from marketlake.pipeline.stages.compute import run_compute

        held = named_segments.select(seg, universe.load(settings.open_lake()))
        wanted = held.get_column("symbol").to_list()
        if symbols:
            wanted = [s for s in wanted if s in set(symbols)]
        if dry_run:
            return StageResult(
                run_id=new_run_id(settings.clock()),
                stage="sync",
                details={
                    "dry_run": True,
                    "tasks": [
                        {
                            "symbol": s,
                            "timeframe": ",".join(timeframes or seg.timeframes),
                            "kind": "indicators",
                            "start": "",
                            "end": "",
                            "provider": "kernels",
                            "reason": "compute where bars changed",
                            "segment": name,
                        }
                        for s in wanted
                    ],
                },
            )
        if not wanted:
            return StageResult(run_id=new_run_id(settings.clock()), stage="sync")
        return run_compute(
            settings,
            timeframes=list(timeframes or seg.timeframes),
            symbols=wanted,
            progress=progress,
            trigger=trigger,
        )
    raise ConfigError(f"segment {name!r}: unknown task {seg.task!r}")


def overview(settings: Settings, lake: Lake, now: datetime) -> list[dict]:
    """Every named segment: its task, description, instruments held, and its synced state
    (symbols with a status, failed, overdue, newest success) from ``sync_status``."""
    from marketlake.pipeline.reports import status

    try:
        instruments = universe.load(lake)
    except Exception:  # an empty or unreadable universe still lists the segments
        instruments = pl.DataFrame(schema={"symbol": pl.String, "asset_type": pl.String})
    per: dict[str, dict] = {}
    for r in status(settings, lake, now):
        agg = per.setdefault(r["segment"], {"failed": 0, "overdue": 0, "last_success_at": None})
        agg["failed"] += r.get("failed") or 0
        agg["overdue"] += r.get("overdue") or 0
        if r.get("last_success_at") and (
            agg["last_success_at"] is None or r["last_success_at"] > agg["last_success_at"]
        ):
            agg["last_success_at"] = r["last_success_at"]
    st = lake.read("sync_status")
    out = []
    for name, seg in named_segments.named(settings).items():
        held = (
            len(seg.symbols)
            if seg.task == "fo_expired"
            else (
                named_segments.select(seg, instruments).height
                if "exchange" in instruments.columns
                else 0
            )
        )
        mine = st.filter(pl.col("segment") == name) if not st.is_empty() else st
        agg = per.get(name, {})
        out.append(
            {
                "segment": name,
                "task": seg.task,
                "description": seg.description,
                "instruments": held,
                "synced": mine.height,
                "failed": agg.get("failed", 0),
                "overdue": agg.get("overdue", 0),
                "last_success_at": agg.get("last_success_at"),
                "configured": name in settings.segments,
            }
        )
    return out
