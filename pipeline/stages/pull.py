"""The pull stage: rows of the remote's app tables (watchlists, portfolios, ...) changed since
the last pull, into local lake tables of the same name, one MERGE commit per table.

The remote exposes a table with its key, an ``updated_at`` column every change stamps and
optionally a soft-delete column. Rows whose soft-delete column is set are deleted locally. The
time to ask from next is the newest ``updated_at`` pulled, kept in the same commit's metadata
(so a crash leaves the old table and the old mark, or both new); the remote compares with
``>=``, so rows stamped in the same instant are pulled again and merged as no-ops. A row the
remote deletes outright (a hard delete) leaves no change to pull: ``--full`` reads the whole
table and removes local rows the remote no longer has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from marketlake.errors import ConfigError, LakeError, MarketlakeError
from marketlake.lake._errors import lake_errors
from marketlake.lake.location import LakeLocation
from marketlake.lake.scratch import Scratch
from marketlake.lake.store import Lake
from marketlake.lake.tables import TABLES, TableDef
from marketlake.lake.writes import commit_properties
from marketlake.pipeline.config import Settings
from marketlake.pipeline.redact import redact
from marketlake.pipeline.remote.apply import PushBatch, apply_push
from marketlake.pipeline.remote.client import Remote, answer, transport
from marketlake.pipeline.remote.wire import FLAG, check_table_name, read_file
from marketlake.pipeline.runs import StageResult, Stopwatch, exclusive

log = logging.getLogger("marketlake.pull")

HISTORY_LIMIT = 200

Progress = Callable[..., None]


def select_tables(tables: Iterable[str] | None) -> list[str]:
    names = list(dict.fromkeys(tables or ()))
    if not names:
        raise ConfigError("--tables: name the remote tables to pull, e.g. watchlists,portfolios")
    for name in names:
        check_table_name(name, "--tables:")
        if name in TABLES:
            raise ConfigError(f"--tables: {name} is a lake table of its own and cannot be pulled")
    return names


def open_table(location: LakeLocation, name: str) -> DeltaTable | None:
    """The pulled table ``name`` of the lake at ``location`` (None before the first pull)."""
    try:
        with lake_errors("open", name):
            return DeltaTable(location.table_uri(name), storage_options=location.storage_options)
    except LakeError as exc:
        if isinstance(exc.__cause__, TableNotFoundError):
            return None
        raise


def last_pull(dt: DeltaTable | None, name: str, remote: Remote) -> str | None:
    """The ``updated_at`` to pull from next (None: pull everything)."""
    if dt is None:
        return None
    with lake_errors("read the history of", name):
        history = dt.history(HISTORY_LIMIT)
    for commit in history:  # newest first
        if commit.get("pull_remote") == remote.slug and commit.get("pull_since"):
            return str(commit["pull_since"])
    return None


@exclusive("pull")
def run_pull(
    settings: Settings,
    remote: Remote,
    *,
    tables: Iterable[str] | None,
    full: bool = False,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> StageResult:
    """Pull the named tables from ``remote`` into the local lake."""
    names = select_tables(tables)
    watch = Stopwatch()
    emit = progress or (lambda event, **info: None)
    lake = settings.open_lake()
    results: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    with remote.client() as client:
        for name in names:
            emit("table_start", table=name)
            try:
                out = _pull_table(lake, client, remote, name, full=full, run_id=run_id or "")
            except (MarketlakeError, httpx.HTTPError) as exc:
                if isinstance(exc, ConfigError):
                    raise
                if isinstance(exc, httpx.HTTPError):
                    exc = transport(f"pull {name}", exc)
                msg = redact(f"pull {name}: {exc}", settings.secrets() + (remote.token,))
                errors.append(msg)
                log.error("%s", msg)
                emit("table_done", table=name, status="failed", error=msg)
                continue
            results[name] = out
            emit("table_done", table=name, status="ok", rows=out["rows"])
    return StageResult(
        run_id=run_id or "",
        stage="pull",
        tasks_ok=len(results),
        tasks_failed=len(errors),
        inserted=sum(r["inserted"] for r in results.values()),
        updated=sum(r["updated"] for r in results.values()),
        unchanged=sum(r["unchanged"] for r in results.values()),
        duration_seconds=watch.elapsed,
        errors=tuple(errors),
        details={
            "remote": remote.url,
            "deleted": sum(r["deleted"] for r in results.values()),
            "tables": results,
        },
    )


def _pull_table(
    lake: Lake, client: httpx.Client, remote: Remote, name: str, *, full: bool, run_id: str
) -> dict[str, Any]:
    dt = open_table(lake.location, name)
    since = None if full else last_pull(dt, name, remote)
    work = Scratch(f"pull-{name}", lake.home)  # removed on the next run if killed
    raw, flagged = work.path / "raw.arrows", work.path / "flagged.arrows"
    try:
        params = {"since": since} if since else {}
        with client.stream("GET", f"/api/v1/sync/pull/{name}", params=params) as res:
            if res.status_code != 200:
                res.read()
                answer(res, f"pull {name}")
            key = [k for k in res.headers.get("x-marketlake-key", "").split(",") if k]
            stamp = res.headers.get("x-marketlake-updated-at", "")
            deleted = res.headers.get("x-marketlake-deleted") or None
            if not key or not stamp:
                raise ConfigError(f"pull {name}: the remote did not say the table's key")
            with raw.open("wb") as fh:
                for chunk in res.iter_bytes():
                    fh.write(chunk)
        schema, rows, newest = _flag(raw, flagged, stamp, deleted)
        out = {"since": since, "rows": rows, "inserted": 0, "updated": 0, "deleted": 0}
        out["unchanged"] = 0
        if rows == 0 and not full:
            return out | {"next_since": since}
        tdef = TableDef(name, schema, tuple(key), bookkeeping=(), evolving=True)
        next_since = newest or since
        meta = {"pull_remote": remote.slug, "pull_since": next_since or ""}
        batch = PushBatch(name, "", "", None, 0, "snapshot" if full else "changes", rows)
        res = apply_push(
            dt,
            lake.location,
            tdef,
            batch,
            flagged,
            lambda _m: commit_properties(run_id, "pull", meta),
            work.path,
        )
        return out | {
            "inserted": res.inserted,
            "updated": res.updated,
            "deleted": res.deleted,
            "unchanged": res.unchanged,
            "version": res.version,
            "next_since": next_since,
        }
    finally:
        work.close()


def _flag(
    raw: Path, out: Path, stamp: str, deleted: str | None
) -> tuple[pa.Schema, int, str | None]:
    """Rewrite the pulled stream with the delete flag (``deleted`` set); returns its data
    schema, its rows and the newest ``updated_at`` in it (ISO)."""
    reader = read_file(raw)
    if stamp not in reader.schema.names:
        raise ConfigError(f"pulled rows lack their updated_at column {stamp!r}")
    schema = reader.schema
    rows, newest = 0, None
    with (
        pa.OSFile(str(out), "wb") as sink,
        pa.ipc.new_stream(sink, schema.append(pa.field(FLAG, pa.bool_()))) as writer,
    ):
        for b in reader:
            rows += b.num_rows
            flag = (
                pc.is_valid(b.column(deleted))
                if deleted and deleted in schema.names
                else pa.repeat(pa.scalar(False), b.num_rows)
            )
            writer.write_batch(b.append_column(FLAG, flag))
            top = pc.max(b.column(stamp)).as_py()
            if top is not None and (newest is None or top > newest):
                newest = top
    return schema, rows, _iso(newest)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)
