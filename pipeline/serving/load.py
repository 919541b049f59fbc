"""Loading lake tables into PostgreSQL: what changed in each since its last load.

Per table, in ONE server transaction (so a crash leaves the old state or the new one):

1. lock the table's load (advisory lock) and read its watermark: the lake version it equals;
2. read what changed since then from the Delta change data feed, keeping each key's last
   change (a snapshot of the current version instead when the table is new to the server, the
   lake table was recreated, or the feed cannot serve the range, e.g. after a vacuum);
3. binary COPY (``adbc_ingest``) the rows into a temp staging table, then ONE statement
   that deletes the keys the lake deleted and runs
   ``INSERT … ON CONFLICT … DO UPDATE … WHERE … IS DISTINCT FROM …`` for the rest, counting
   inserted / updated / deleted (an initial load into an empty table COPYs straight into the
   target instead, rebuilding its primary key afterwards when big);
4. advance the watermark, commit.

JSON columns (jsonb on the server) travel as text and are cast there: ADBC cannot COPY jsonb.
A connection lost mid-table rolls that table back and is retried on a new connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from marketlake.errors import LoadError
from marketlake.lake import batches
from marketlake.lake.changes import Changes, read_changes
from marketlake.lake.scratch import Scratch
from marketlake.lake.store import Lake
from marketlake.lake.tables import TableDef
from marketlake.pipeline.redact import redact
from marketlake.pipeline.serving.connection import Serving, retry
from marketlake.pipeline.serving.sqltext import quote_ident, render
from marketlake.sql import load_sql

log = logging.getLogger("marketlake.load")

STAGING = "_ml_stage"
FLAG = "_ml_delete"
# an initial COPY of at least this many rows drops the primary key and rebuilds it after
BULK_ROWS = 100_000
BATCH_ROWS = 256_000
# served tables range-partitioned by ts (yearly for daily bars, monthly for intraday)
TS_PARTITIONED = frozenset({"ohlcv", "indicators"})
_PG_TYPES = {
    pa.float64(): "double precision",
    pa.float32(): "real",
    pa.int64(): "bigint",
    pa.int32(): "integer",
    pa.bool_(): "boolean",
    pa.date32(): "date",
    pa.string(): "text",
    pa.large_string(): "text",
    pa.string_view(): "text",
}


@dataclass
class TableLoad:
    """What loading one table did."""

    table: str
    mode: str  # noop | changes | snapshot | copy
    lake_version: int
    from_version: int | None = None
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rows: int = 0  # rows the served table holds afterwards
    attempts: int = 1

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("table")
        return out


class _DuplicateKeys(Exception):
    """The snapshot held a key twice: redo the table with an in-memory dedupe."""


# -- one table --------------------------------------------------------------------------------------
class Loader:
    """Loads tables over one connection, reconnecting and retrying on connection loss."""

    def __init__(self, db: Serving, lake: Lake, run_id: str) -> None:
        self.db = db
        self.lake = lake
        self.run_id = run_id
        self.marks: dict[str, tuple[int, str | None, int]] = {}
        self._columns: dict[str, list[tuple[str, str]]] | None = None

    def _on_retry(self, what: str) -> Callable[[int, BaseException, float], None]:
        def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
            log.warning(
                "%s: attempt %d failed (%s); retrying in %.2fs",
                what,
                attempt,
                redact(exc, self.db.secrets),
                delay,
            )

        return on_retry

    def start(self) -> None:
        """Apply pending migrations and read every table's watermark (one query)."""

        def attempt() -> None:
            self.db.ensure_open()
            self.db.migrate()
            rows = self.db.query("watermarks")
            self.db.commit()
            self.marks = {t: (int(v), tid, int(n or 0)) for t, v, tid, n in rows}

        retry(attempt, on_retry=self._on_retry("migrations"))

    def columns(self, table: str) -> list[tuple[str, str]]:
        """The served table's (column, type) list, read once per run."""
        if self._columns is None:
            self._columns = self.db.columns()
        return self._columns.get(table, [])

    def load(self, tdef: TableDef) -> TableLoad | None:
        """Load one table (None when the lake has no such table yet)."""
        attempts = 0
        dedupe = False

        def attempt() -> TableLoad | None:
            nonlocal attempts, dedupe
            attempts += 1
            if self.db.broken:
                self.db.ensure_open()
                self._columns = None
            try:
                return self._load(tdef, dedupe=dedupe)
            except _DuplicateKeys:
                self.db.rollback()
                dedupe = True
                return self._load(tdef, dedupe=True)
            except BaseException:
                self.db.rollback()
                raise

        res = retry(attempt, on_retry=self._on_retry(f"load {tdef.name}"))
        if res is not None:
            res.attempts = attempts
        return res

    def _load(self, tdef: TableDef, *, dedupe: bool) -> TableLoad | None:
        """Bring one served table to the lake's current version, in one transaction."""
        db, name = self.db, tdef.name
        dt = self.lake.table(name)
        if dt is None:
            return None
        current = dt.version()
        table_id = dt.metadata().id
        mark = self.marks.get(name)
        if mark is not None and mark[:2] == (current, table_id):
            return TableLoad(name, "noop", current, current, rows=mark[2])
        db.query("advisory_xact_lock", (f"marketlake.load:{db.schema}.{name}",))
        found = db.query("watermark_get", (name,))  # re-read under the lock
        prev, prev_id, prev_rows = found[0] if found else (None, None, 0)
        prev_rows = int(prev_rows or 0)
        if prev_id == table_id and prev is not None and prev >= current:
            db.commit()  # a concurrent loader got there first (maybe with a newer version)
            return TableLoad(name, "noop", int(prev), int(prev), rows=prev_rows)

        lake_schema = pa.schema(dt.schema().to_arrow())
        server = self._server_columns(tdef, lake_schema)
        cols = [c for c, _ in server if c in lake_schema.names]
        jsonb = {c for c, typ in server if typ == "jsonb" and c in cols}
        target = db.table_name(name)

        with Scratch("load", self.lake.home) as work:  # the netted changes' spool
            changes = None
            if prev is not None and prev_id == table_id and prev < current:
                changes = read_changes(dt, tdef, prev, current, self.lake.location, work)
            if name in TS_PARTITIONED:  # the ts range partitions the rows need, made on demand
                ranges = (
                    _change_ts_ranges(changes)
                    if changes is not None
                    else _ts_ranges(self.lake.scan(name, version=current))
                )
                for tf, lo, hi in ranges:
                    db.query("ensure_ts_partitions", (target, tf, lo, hi))
            if changes is not None:
                res = TableLoad(name, "changes", current, prev)
                if changes.rows:
                    db.ingest(
                        STAGING, _columns(changes, [*cols, FLAG]), mode="replace", temporary=True
                    )
                    _apply(db, tdef, target, cols, jsonb, res, "apply_changes")
                res.unchanged = changes.upserts - res.inserted - res.updated
                res.rows = prev_rows + res.inserted - res.deleted
            else:
                (empty,) = db.query("target_is_empty", target=target)[0]
                source, count = _snapshot(self.lake, tdef, current, cols, dedupe=dedupe)
                res = TableLoad(name, "snapshot", current, prev)
                if empty and not jsonb:
                    res.mode = "copy"
                    res.inserted = _copy_into_empty(db, tdef, source, count)
                else:
                    db.ingest(STAGING, _with_flag(source), mode="replace", temporary=True)
                    _apply(
                        db,
                        tdef,
                        target,
                        cols,
                        jsonb,
                        res,
                        "apply_snapshot",
                        dups_possible=not dedupe,
                    )
                    res.unchanged = count - res.inserted - res.updated
                res.rows = count
        db.query("watermark_set", (name, current, table_id, res.rows, self.run_id))
        db.commit()
        self.marks[name] = (current, table_id, res.rows)
        return res

    def _server_columns(self, tdef: TableDef, lake_schema: pa.Schema) -> list[tuple[str, str]]:
        """The served table's columns, after adding the columns an evolving table grew."""
        server = self.columns(tdef.name)
        if not server:
            raise LoadError(f"served table {tdef.name} is missing: the migrations are incomplete")
        have = {c for c, _ in server}
        missing = [f for f in lake_schema if f.name not in have]
        if not missing:
            return server
        if not tdef.evolving:
            raise LoadError(
                f"served table {tdef.name} lacks lake columns "
                f"{', '.join(f.name for f in missing)}: a migration is missing"
            )
        target = self.db.table_name(tdef.name)
        for f in missing:
            typ = _PG_TYPES.get(f.type)
            if typ is None:
                raise LoadError(f"{tdef.name}.{f.name}: no PostgreSQL type for arrow {f.type}")
            self.db.query("add_column", target=target, column=quote_ident(f.name), type=typ)
        self._columns = None  # the ALTER may yet roll back: re-read next time
        return self.db.columns()[tdef.name]


def _ts_ranges(rows: pl.LazyFrame) -> list[tuple[str, Any, Any]]:
    """(timeframe, first ts, last ts) of the rows about to be served."""
    return (
        rows.group_by("timeframe")
        .agg(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
        .sort("timeframe")
        .collect()
        .rows()
    )


def _change_ts_ranges(changes: Changes) -> list[tuple[str, Any, Any]]:
    """:func:`_ts_ranges` of the changes' upserts, batch by batch."""
    spans: dict[str, tuple[Any, Any]] = {}
    for batch in changes.batches():
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        for tf, lo, hi in _ts_ranges(frame.lazy().filter(~pl.col(FLAG))):
            if tf in spans:
                lo, hi = min(lo, spans[tf][0]), max(hi, spans[tf][1])
            spans[tf] = (lo, hi)
    return [(tf, *spans[tf]) for tf in sorted(spans)]


def _columns(changes: Changes, cols: list[str]) -> pa.RecordBatchReader:
    """The changes' ``cols``, streamed."""
    schema = pa.schema([changes.schema.field(c) for c in cols])
    return pa.RecordBatchReader.from_batches(schema, (b.select(cols) for b in changes.batches()))


def _snapshot(
    lake: Lake, tdef: TableDef, version: int, cols: list[str], *, dedupe: bool
) -> tuple[pa.RecordBatchReader | pa.Table, int]:
    """The table at ``version`` as a stream of ``cols`` (deduplicated in memory on request)."""
    if dedupe:
        frame = (
            lake.read(tdef.name, version=version)
            .unique(subset=list(tdef.key), keep="last", maintain_order=True)
            .select(cols)
        )
        return frame.to_arrow(), frame.height
    dt = lake.table(tdef.name, version=version)  # streamed in bounded batches
    return batches.reader(dt, tdef.name, cols, BATCH_ROWS), batches.count_rows(dt)


def _with_flag(source: pa.RecordBatchReader | pa.Table) -> pa.RecordBatchReader:
    """``source`` with a false ``_ml_delete`` column, streamed."""
    schema = source.schema.append(pa.field(FLAG, pa.bool_()))

    def batches() -> Iterator[pa.RecordBatch]:
        for b in source.to_batches() if isinstance(source, pa.Table) else source:
            flag = pa.repeat(pa.scalar(False), b.num_rows)
            yield pa.RecordBatch.from_arrays([*b.columns, flag], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _copy_into_empty(
    db: Serving, tdef: TableDef, source: pa.RecordBatchReader | pa.Table, count: int
) -> int:
    """COPY straight into the (empty) target; big loads rebuild the primary key afterwards,
    which is much cheaper than maintaining it row by row. Duplicate keys roll back and
    trigger a deduplicated retry."""
    target = db.table_name(tdef.name)
    pkey = db.query("primary_key", (db.schema, tdef.name)) if count >= BULK_ROWS else []
    if pkey:
        db.query("drop_constraint", target=target, constraint=quote_ident(pkey[0][0]))
    try:
        n = db.ingest(tdef.name, source, mode="append")
        if pkey:
            db.query("set_local", ("maintenance_work_mem", "512MB"))
            db.query(
                "add_constraint",
                target=target,
                constraint=quote_ident(pkey[0][0]),
                definition=pkey[0][1],
            )
    except LoadError as exc:
        if getattr(exc, "sqlstate", "") == "23505":
            raise _DuplicateKeys(tdef.name) from exc
        raise
    return n


def _apply(
    db: Serving,
    tdef: TableDef,
    target: str,
    cols: list[str],
    jsonb: set[str],
    res: TableLoad,
    query: str,
    *,
    dups_possible: bool = False,
) -> None:
    """Merge the staging table into the target (``apply_changes`` or ``apply_snapshot``);
    the counts go to ``res``."""
    key = list(tdef.key)
    nonkey = [c for c in cols if c not in key]
    if not nonkey:
        raise LoadError(f"{tdef.name}: a table of key columns only cannot be upserted")
    q = {c: quote_ident(c) for c in cols}
    nullable = {f.name for f in tdef.schema if f.nullable}
    parts = {
        "target": target,
        "staging": quote_ident(STAGING),
        "columns": ", ".join(q[c] for c in cols),
        "values": ", ".join(f"s.{q[c]}::jsonb" if c in jsonb else f"s.{q[c]}" for c in cols),
        "key": ", ".join(q[c] for c in key),
        "assignments": ", ".join(f"{q[c]} = EXCLUDED.{q[c]}" for c in nonkey),
        "target_values": ", ".join(f"t.{q[c]}" for c in nonkey),
        "excluded_values": ", ".join(f"EXCLUDED.{q[c]}" for c in nonkey),
        "key_match": " AND ".join(
            f"t.{q[c]} IS NOT DISTINCT FROM s.{q[c]}" if c in nullable else f"t.{q[c]} = s.{q[c]}"
            for c in key
        ),
    }
    if tdef.name in TS_PARTITIONED:  # RETURNING cannot read xmax of a partitioned table
        parts["inserted_flag"] = "NULL::boolean"
        parts["inserted"] = render(
            load_sql("postgres/queries/count_new_keys.sql"),
            staging=parts["staging"],
            target=target,
            key_match=parts["key_match"],
        )
    else:
        parts["inserted_flag"] = "(t.xmax = 0)"
        parts["inserted"] = "count(*) FILTER (WHERE inserted)"
    try:
        inserted, updated, deleted = db.query(query, **parts)[0]
    except LoadError as exc:
        if dups_possible and getattr(exc, "sqlstate", "") in ("21000", "23505"):
            raise _DuplicateKeys(tdef.name) from exc
        raise
    res.inserted, res.updated, res.deleted = int(inserted), int(updated), int(deleted)
