"""Maintenance of the lake's tables: compaction, vacuum, orphan removal, checksum verification.

Compaction rewrites only partitions holding more than one file or a file without the footer
mark of page checksums (one written by another tool or by delta-rs' own writer), so a second
run with nothing to compact commits nothing. Besides delta-rs' vacuum (files removed by old versions), files no
version references at all (left by a writer killed between writing files and committing) are
deleted: the writer lock is held, so no commit can be in flight.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import defaultdict
from typing import Any
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from marketlake.errors import LakeCorruptError
from marketlake.lake import merges
from marketlake.lake._errors import lake_errors
from marketlake.lake.location import LakeLocation
from marketlake.lake.lock import writer
from marketlake.lake.store import Lake
from marketlake.lake.tables import TABLES
from marketlake.lake.verified import checksummed, damaged, verify_file
from marketlake.lake.writes import (
    commit_properties,
    commit_swap,
    live_files,
    remove_unless_committed,
    write_partitioned,
)


def maintain(
    lake: Lake,
    *,
    tables: list[str] | None = None,
    vacuum_hours: int = 168,
    optimize: bool = True,
    vacuum: bool = True,
    run_id: str | None = None,
    wait: float | bool = False,
) -> dict[str, dict[str, Any]]:
    """Compact small files (z-ordered by symbol, ts where a table has them), checkpoint the
    log, delete files no version younger than ``vacuum_hours`` needs and files no version
    references; under the lake's writer lock (``wait`` as for :meth:`WriterLock.acquire`)."""
    run_id = run_id or f"maintain-{uuid.uuid4().hex[:8]}"
    with writer(lake.root, run_id, "maintain", wait=wait):
        out: dict[str, dict[str, Any]] = {}
        for name in tables or list(TABLES):
            if lake.table(name) is not None:
                out[name] = _maintain_table(lake, name, vacuum_hours, optimize, vacuum)
        return out


def _maintain_table(
    lake: Lake, name: str, vacuum_hours: int, optimize: bool, vacuum: bool
) -> dict[str, Any]:
    info: dict[str, Any] = {"files_added": 0, "files_removed": 0, "rewritten_for_checksums": 0}
    with lake_errors("maintenance of", name):
        if optimize:
            for files, unmarked in _partitions_to_rewrite(lake, name):
                _compact(lake, name, files)
                info["files_added"] += 1
                info["files_removed"] += len(files)
                info["rewritten_for_checksums"] += unmarked
            if info["files_removed"]:
                lake.table(name).create_checkpoint()
        info["vacuumed_files"] = 0
        if vacuum:
            dt = lake.table(name)
            stale = dt.vacuum(
                retention_hours=vacuum_hours, dry_run=True, enforce_retention_duration=False
            )
            present = set(lake.location.list(name)) if stale else set()
            # delta-rs lists tombstones whose files are already gone, and a vacuum commits
            # even when it has nothing to delete: run it only for files that still exist
            if any(unquote(f) in present for f in stale):
                removed = dt.vacuum(
                    retention_hours=vacuum_hours, dry_run=False, enforce_retention_duration=False
                )
                info["vacuumed_files"] = len(removed)
        info["orphans_removed"] = remove_orphans(lake, name)
    info["version"] = lake.version(name)
    return info


def _partitions_to_rewrite(lake: Lake, name: str) -> list[tuple[list[dict[str, Any]], int]]:
    """The add actions of each partition to rewrite as one file, with how many of them lack
    the page-checksum mark: partitions holding more than one file, and any partition with a
    file written without page checksums (by delta-rs' own writer or another tool), even
    alone. Only footers are read."""
    tdef = TABLES[name]
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for f in live_files(lake.table(name)):
        groups[tuple(f.get(f"partition.{p}") for p in tdef.partitions)].append(f)
    out = []
    for _, files in sorted(groups.items(), key=_order):
        unmarked = sum(not _marked(lake, name, f) for f in files)
        if len(files) > 1 or unmarked:
            out.append((files, unmarked))
    return out


def _marked(lake: Lake, name: str, f: dict[str, Any]) -> bool:
    rel = unquote(f["path"])
    try:
        return checksummed(lake.location, f"{name}/{rel}")
    except (OSError, pa.ArrowException) as exc:
        raise damaged(name, rel, exc) from exc


def _order(item: tuple[tuple, list]) -> tuple[str, ...]:
    return tuple(str(v) for v in item[0])


def _compact(lake: Lake, name: str, files: list[dict[str, Any]]) -> None:
    """Rewrite one partition's files as one (sorted by symbol and time where the table has
    them; pages verified on the way in, checksummed on the way out) in one commit that
    changes no data (``dataChange`` false: the change feed skips it), pinned to the version
    read."""
    tdef = TABLES[name]
    dt = lake.table(name)
    body = pl.concat(
        [merges.read_file(lake.location, tdef, f) for f in files], how="diagonal_relaxed"
    )
    order = [c for c in ("symbol", "timeframe", "ts") if c in body.columns] or list(tdef.key)
    schema = pa.schema(dt.schema().to_arrow())
    columns = {f.name: f.type for f in schema if f.name not in tdef.partitions}
    adds = write_partitioned(lake.location, tdef, body.sort(order), columns)
    adds = [dataclasses.replace(a, data_change=False) for a in adds]
    props = commit_properties(f"maintain-{uuid.uuid4().hex[:8]}", "maintain")
    try:
        commit_swap(dt, tdef, files, adds, props, data_change=False)
    except BaseException as exc:
        remove_unless_committed(lake.location, name, [a.path for a in adds], exc)
        raise


def referenced_files(location: LakeLocation, name: str) -> set[str]:
    """Every data or change file any commit (or checkpoint) of the table's log names."""
    log = f"{name}/_delta_log"
    entries = location.list(log)
    out: set[str] = set()
    for commit in sorted(k for k in entries if k.endswith(".json") and "/" not in k):
        for line in location.get(f"{log}/{commit}").decode().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            for kind in ("add", "remove", "cdc"):
                if kind in action:
                    out.add(unquote(action[kind]["path"]))
    for cp in (k for k in entries if ".checkpoint" in k and k.endswith(".parquet")):
        t = pq.read_table(pa.BufferReader(location.get(f"{log}/{cp}")), columns=["add", "remove"])
        for col in ("add", "remove"):
            for v in t.column(col).to_pylist():
                if v and v.get("path"):
                    out.add(unquote(v["path"]))
    return out


def remove_orphans(lake: Lake, name: str) -> int:
    """Delete parquet files under the table that no version of its log references (left by a
    writer that died before its commit). Call with the writer lock held."""
    known = referenced_files(lake.location, name)
    removed = 0
    for rel in lake.location.list(name):
        if not rel.endswith(".parquet") or rel.startswith("_delta_log/") or rel in known:
            continue
        lake.location.delete(f"{name}/{rel}")
        removed += 1
    return removed


def verify(lake: Lake, tables: list[str] | None = None) -> list[dict[str, Any]]:
    """Read every row group of every data file of every table, checking parquet page
    checksums where the file has them; returns one problem per damaged file (table, file,
    row group, reason)."""
    problems: list[dict[str, Any]] = []
    for name in tables or list(TABLES):
        dt = lake._open(name)
        if dt is None:
            continue
        with lake_errors("list files of", name):
            paths = [
                unquote(p) for p in dt.get_add_actions(flatten=True).column("path").to_pylist()
            ]
        for rel in paths:
            problem = verify_file(lake.location, f"{name}/{rel}")
            if problem is not None:
                problems.append({"table": name, "file": rel, **problem})
    return problems


def raise_on_damage(problems: list[dict[str, Any]]) -> None:
    """One clear line naming every damaged file (table, file, row group)."""
    if not problems:
        return

    def one(p: dict[str, Any]) -> str:
        where = f" row group {p['row_group']}" if p["row_group"] is not None else ""
        return f"{p['table']} {p['file']}{where}: {p['reason']}"

    shown = "; ".join(one(p) for p in problems[:5])
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    first = problems[0]
    raise LakeCorruptError(
        f"{len(problems)} damaged data file(s): {shown}{more}",
        table=first["table"],
        file=first["file"],
    )
