"""Compaction and vacuum of lake tables."""

from __future__ import annotations

from typing import Any

from deltalake.exceptions import DeltaError

from marketlake.errors import LakeError
from marketlake.lake.lock import writer
from marketlake.lake.store import Lake
from marketlake.lake.tables import TABLES


def maintain(
    lake: Lake,
    *,
    tables: list[str] | None = None,
    vacuum_hours: int = 168,
    optimize: bool = True,
    vacuum: bool = True,
    run_id: str = "maintain",
    wait: float | bool = False,
) -> dict[str, dict[str, Any]]:
    """Compact small files (z-ordered by symbol, ts where a table has them), checkpoint the
    log, and delete files no version younger than ``vacuum_hours`` references; under the
    lake's writer lock (``wait`` as for :meth:`WriterLock.acquire`)."""
    with writer(lake.root, run_id, "maintain", wait=wait):
        return _maintain(lake, tables, vacuum_hours, optimize, vacuum)


def _maintain(
    lake: Lake, tables: list[str] | None, vacuum_hours: int, optimize: bool, vacuum: bool
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in tables or list(TABLES):
        dt = lake.table(name)
        if dt is None:
            continue
        info: dict[str, Any] = {}
        try:
            if optimize:
                cols = [c for c in ("symbol", "ts") if c in TABLES[name].schema.names]
                m = dt.optimize.z_order(cols) if len(cols) == 2 else dt.optimize.compact()
                info["files_added"] = m.get("numFilesAdded", 0)
                info["files_removed"] = m.get("numFilesRemoved", 0)
                dt.create_checkpoint()
            if vacuum:
                removed = dt.vacuum(
                    retention_hours=vacuum_hours, dry_run=False, enforce_retention_duration=False
                )
                info["vacuumed_files"] = len(removed)
        except DeltaError as exc:
            raise LakeError(f"maintenance of {name} failed: {exc}") from exc
        info["version"] = lake.version(name)
        out[name] = info
    return out
