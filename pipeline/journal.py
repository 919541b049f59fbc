"""The run journal: one ``run:<stage>`` row per run in ``sync_logs``, written ``running`` when the
run starts and finished (``success``/``partial``/``failed``) when it ends.

A process killed with ``kill -9`` never finishes its row; the next process that takes the
lake's writer lock marks every ``running`` row that no live process holds as ``interrupted``,
so no run stays ``running`` for ever. Scheduled runs record their slot in the row's metadata
(manual full runs the schedules they cover and their start): the scheduler computes its next
run from the last completed one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import polars as pl

from marketlake.lake.store import Lake
from marketlake.pipeline.redact import redact

RUNNING, INTERRUPTED = "running", "interrupted"
COMPLETED = ("success", "partial", "failed")
_STATUS = {"ok": "success", "partial": "partial", "failed": "failed"}


def task_name(stage: str) -> str:
    return f"run:{stage}"


def _row(
    run_id: str,
    stage: str,
    *,
    status: str,
    trigger: str,
    started_at: datetime,
    completed_at: datetime | None = None,
    rows_updated: int = 0,
    error: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "task_name": task_name(stage),
        "stage": stage,
        "status": status,
        "rows_updated": int(rows_updated),
        "error_message": error,
        "started_at": started_at,
        "completed_at": completed_at,
        "duration_seconds": (completed_at - started_at).total_seconds() if completed_at else None,
        "trigger": trigger,
        "metadata": json.dumps(metadata or {}, default=str),
    }


def _write(lake: Lake, rows: list[dict[str, Any]], run_id: str) -> None:
    ts = pl.Datetime("us", "UTC")
    frame = pl.DataFrame(
        rows,
        schema_overrides={
            "started_at": ts,
            "completed_at": ts,
            "duration_seconds": pl.Float64,
            "error_message": pl.String,
        },
    )
    lake.upsert("sync_logs", frame, run_id=run_id, stage="journal")


def record_start(
    lake: Lake,
    run_id: str,
    stage: str,
    *,
    trigger: str,
    started_at: datetime,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write the run's ``running`` row (call it holding the writer lock)."""
    _write(
        lake,
        [
            _row(
                run_id,
                stage,
                status=RUNNING,
                trigger=trigger,
                started_at=started_at,
                metadata=metadata,
            )
        ],
        run_id,
    )


def record_end(
    lake: Lake,
    run_id: str,
    stage: str,
    *,
    trigger: str,
    started_at: datetime,
    completed_at: datetime,
    result: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    secrets: tuple[str, ...] = (),
) -> None:
    """Finish the run's row with the stage's ``--json`` object as ``metadata.result``."""
    rows = result.get("rows") or {}
    errors = result.get("errors") or []
    _write(
        lake,
        [
            _row(
                run_id,
                stage,
                status=_STATUS.get(result.get("status", "failed"), "failed"),
                trigger=trigger,
                started_at=started_at,
                completed_at=completed_at,
                rows_updated=int(rows.get("inserted", 0)) + int(rows.get("updated", 0)),
                error=redact("; ".join(map(str, errors[:5])), secrets) if errors else None,
                metadata={**(metadata or {}), "result": result},
            )
        ],
        run_id,
    )


def runs(lake: Lake, *, statuses: Iterable[str] | None = None) -> pl.DataFrame:
    """The journal's ``run:*`` rows (optionally only these statuses), newest first."""
    scan = lake.scan("sync_logs").filter(pl.col("task_name").str.starts_with("run:"))
    if statuses is not None:
        scan = scan.filter(pl.col("status").is_in(list(statuses)))
    return scan.sort("started_at", descending=True, nulls_last=True).collect()


def recover_interrupted(
    lake: Lake, *, live: Iterable[str] = (), now: datetime | None = None
) -> list[str]:
    """Mark every ``running`` run not in ``live`` as ``interrupted``; returns their ids. Call
    it holding the writer lock: only then is no other ``running`` row alive."""
    now = now or datetime.now(UTC)
    found = runs(lake, statuses=[RUNNING]).filter(~pl.col("run_id").is_in(sorted(set(live))))
    rows = []
    for r in found.iter_rows(named=True):
        meta = json.loads(r["metadata"] or "{}")
        rows.append(
            _row(
                r["run_id"],
                r["stage"] or r["task_name"].removeprefix("run:"),
                status=INTERRUPTED,
                trigger=r["trigger"] or "",
                started_at=r["started_at"],
                completed_at=now,
                error="interrupted: the process running it ended before the run finished",
                metadata={**meta, "interrupted_detected_at": now.isoformat()},
            )
        )
    if rows:
        _write(lake, rows, rows[0]["run_id"])
    return [r["run_id"] for r in rows]


def last_slots(lake: Lake) -> dict[str, datetime]:
    """Per schedule name, the slot of its last completed run: a scheduled run's slot
    (``schedule``), or the start of a manual run of the same work (``covers``)."""
    out: dict[str, datetime] = {}
    done = runs(lake, statuses=COMPLETED)
    for meta in done.get_column("metadata").to_list():
        info = json.loads(meta or "{}")
        names, slot = info.get("covers") or [info.get("schedule")], info.get("slot")
        if not slot:
            continue
        when = datetime.fromisoformat(slot)
        for name in names:
            if name and (name not in out or when > out[name]):
                out[name] = when
    return out


def find(lake: Lake, run_id: str) -> dict[str, Any] | None:
    """The journal row of ``run_id`` (metadata parsed), or None."""
    hit = runs(lake).filter(pl.col("run_id") == run_id)
    if hit.is_empty():
        return None
    row = hit.row(0, named=True)
    row["metadata"] = json.loads(row["metadata"] or "{}")
    return row
