"""One ADBC connection to the serving PostgreSQL schema, and retries across reconnects.

Every statement goes through :class:`Serving`, whose driver calls run inside
:func:`~marketlake.pipeline.serving.errors.driver_errors`, so nothing but our error tree
leaves this module. It speaks ADBC's low-level API (``adbc_driver_manager``): its DB-API
module imports ``pyarrow.dataset`` and with it pandas (a quarter of a second of a nightly
load's CPU), and prepares every new statement in a round trip of its own. Parameters travel
as a one-row polars frame (``pyarrow.array`` of Python values would import pandas too);
rows come back as tuples of Python values, as from a DB-API cursor.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from marketlake.errors import ConfigError, LoadError, MarketlakeError, Transient, TransientLoadError
from marketlake.pipeline.config import Settings
from marketlake.pipeline.serving.dsn import dsn_with
from marketlake.pipeline.serving.errors import driver_errors
from marketlake.pipeline.serving.sqltext import (
    Migration,
    migrations,
    query_sql,
    quote_ident,
    render,
    validate_schema,
)

log = logging.getLogger("marketlake.serving")

T = TypeVar("T")


def retry(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    base_s: float = 0.25,
    max_s: float = 4.0,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it returns, retrying :class:`Transient` errors with exponential
    backoff and jitter; the last error is re-raised."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not isinstance(exc, Transient) or attempt == attempts:
                raise
            delay = min(max_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# -- the connection -----------------------------------------------------------------------------
class Serving:
    """One ADBC connection to the serving schema, in explicit-commit mode.

    Statements run inside a transaction that lasts until :meth:`commit` or :meth:`rollback`;
    ``adbc_ingest`` (binary COPY) takes part in the same transaction.
    """

    def __init__(self, settings: Settings, *, application_name: str = "marketlake") -> None:
        if not settings.dsn:
            raise ConfigError("no serving database: set --dsn or MARKETLAKE_DSN")
        self.schema = validate_schema(settings.pg_schema)
        self.secrets = settings.secrets()
        self._dsn = settings.dsn
        self._uri = dsn_with(settings.dsn, application_name=application_name, connect_timeout="10")
        self._db: Any = None
        self._conn: Any = None
        self.broken = False

    # lifecycle
    def open(self, *, first: bool = True) -> Serving:
        import adbc_driver_manager
        import adbc_driver_postgresql

        db = conn = None
        try:
            with driver_errors("connect", self.secrets, connecting_to=self._dsn, first=first):
                db = adbc_driver_postgresql.connect(self._uri)
                conn = adbc_driver_manager.AdbcConnection(db)
                conn.set_autocommit(False)  # explicit transactions, as the loads need
        except MarketlakeError:
            for obj in (conn, db):
                _close(obj)
            raise
        self._db, self._conn = db, conn
        self.broken = False
        self.query("session_setup")
        self.commit()
        return self

    def close(self) -> None:
        for obj in (self._conn, self._db):
            _close(obj)
        self._conn = self._db = None

    def ensure_open(self) -> None:
        """Reconnect after the session was lost (used between retries)."""
        if self._conn is None or self.broken:
            self.close()
            self.open(first=False)

    def __enter__(self) -> Serving:
        return self.open() if self._conn is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # statements
    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        if self._conn is None:
            raise TransientLoadError(f"{what}: not connected")
        with driver_errors(what, self.secrets, on_lost=self._mark_broken):
            yield

    def _mark_broken(self) -> None:
        self.broken = True

    def sql(self, name: str, **parts: str) -> str:
        return query_sql(name, self.schema, **parts)

    def run(self, text: str, params: Sequence[Any] = (), what: str = "query") -> list[tuple]:
        """Execute one statement (``$1``-style parameters) and return its rows."""
        with self._guard(what), self._statement() as stmt:
            stmt.set_sql_query(text)
            if params:
                stmt.bind_stream(_parameters(params))
            handle, _ = _blocking_call(stmt.execute_query, (), {}, stmt.cancel)
            return _rows(handle, stmt.cancel)

    def query(self, name: str, params: Sequence[Any] = (), **parts: str) -> list[tuple]:
        """Run the named query ``sql/postgres/queries/<name>.sql``."""
        return self.run(self.sql(name, **parts), params, what=name)

    def script(self, text: str, what: str = "script") -> None:
        """Several statements in one round trip, inside the current transaction."""
        with self._guard(what), self._statement() as stmt:
            stmt.set_sql_query(text)
            _blocking_call(stmt.execute_update, (), {}, stmt.cancel)

    def ingest(self, table: str, data: Any, *, mode: str, temporary: bool = False) -> int:
        """Binary COPY of arrow ``data`` (a table or a stream of batches) into ``table`` (a
        temp table, or one in the schema)."""
        options = {
            "adbc.ingest.target_table": table,
            "adbc.ingest.mode": _INGEST_MODES[mode],
            "adbc.ingest.temporary": "true" if temporary else "false",
        }
        if not temporary:
            options["adbc.ingest.target_db_schema"] = self.schema
        with self._guard(f"COPY into {table}"), self._statement() as stmt:
            stmt.set_options(**options)
            stmt.bind_stream(data)
            return int(_blocking_call(stmt.execute_update, (), {}, stmt.cancel))

    @contextmanager
    def _statement(self) -> Iterator[Any]:
        """A new statement on the connection, closed after use."""
        import adbc_driver_manager

        stmt = adbc_driver_manager.AdbcStatement(self._conn)
        try:
            yield stmt
        finally:
            stmt.close()

    def commit(self) -> None:
        with self._guard("commit"):
            self._conn.commit()

    def rollback(self) -> None:
        """Roll back; on a dead session there is nothing to roll back."""
        if self._conn is None or self.broken:
            return
        try:
            with self._guard("rollback"):
                self._conn.rollback()
        except TransientLoadError:
            pass

    # schema
    def table_name(self, table: str) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(table)}"

    def columns(self) -> dict[str, list[tuple[str, str]]]:
        """Each served table's columns and types, in table order."""
        out: dict[str, list[tuple[str, str]]] = {}
        for table, column, typ in self.query("schema_columns", (self.schema,)):
            out.setdefault(table, []).append((column, typ))
        return out

    def pending_migrations(self) -> list[Migration]:
        """Migrations not yet recorded in the schema (all of them on a fresh server)."""
        todo = migrations()
        try:
            done = {row[0] for row in self.query("applied_migrations")}
        except LoadError as exc:
            if getattr(exc, "sqlstate", "") not in ("42P01", "3F000"):  # no table / schema
                raise
            self.rollback()
            return todo
        return [m for m in todo if m.version not in done]

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded, each in its own transaction, under an
        advisory lock so concurrent loaders apply each exactly once. Returns applied names."""
        if not self.pending_migrations():
            self.commit()
            return []
        key = f"marketlake.migrate:{self.schema}"
        self.query("advisory_lock", (key,))
        applied: list[str] = []
        try:
            self.script(self.sql("bootstrap"), what="bootstrap")
            self.commit()
            for mig in self.pending_migrations():  # re-read under the lock
                self.script(render(mig.text, schema=quote_ident(self.schema)), what=mig.name)
                self.query("record_migration", (mig.version, mig.name, mig.checksum))
                self.commit()
                applied.append(mig.name)
                log.info("applied migration %s to schema %s", mig.name, self.schema)
        except MarketlakeError:
            self.rollback()
            raise
        finally:
            if not self.broken:
                self.query("advisory_unlock", (key,))
                self.commit()
        return applied


_INGEST_MODES = {
    "append": "adbc.ingest.mode.append",
    "create": "adbc.ingest.mode.create",
    "create_append": "adbc.ingest.mode.create_append",
    "replace": "adbc.ingest.mode.replace",
}


def _blocking_call(fn: Callable[..., T], args: tuple, kwargs: dict, cancel: Callable) -> T:
    """``fn(*args, **kwargs)`` under the driver manager's SIGINT bridge (the one its DB-API
    layer uses): Ctrl-C cancels the running statement instead of waiting for its end."""
    try:
        from adbc_driver_manager._lib import _blocking_call as bridged
    except ImportError:  # a driver manager without it (private API): no Ctrl-C bridge
        return fn(*args, **kwargs)
    return bridged(fn, args, kwargs, cancel)


def _parameters(params: Sequence[Any]) -> Any:
    """Bind parameters ``$1, $2, ...`` as a one-row frame (columns named by position)."""
    import polars as pl

    return pl.DataFrame({str(i): [v] for i, v in enumerate(params)}).to_arrow()


def _rows(handle: Any, cancel: Callable[[], None]) -> list[tuple]:
    """A result stream's rows as tuples of Python values (none for a statement without
    columns). Read through the driver manager's reader, which raises a failure met while
    streaming (the server's error on a row) as the driver's error, with its SQLSTATE."""
    try:
        from adbc_driver_manager._reader import AdbcRecordBatchReader as Reader
    except ImportError:  # a driver manager without it (private API): pyarrow's own reader
        from pyarrow import RecordBatchReader as Reader

    reader = Reader._import_from_c(handle.address)
    table = _blocking_call(reader.read_all, (), {}, cancel)
    if not table.num_columns:
        return []
    return list(zip(*(column.to_pylist() for column in table.columns), strict=True))


def _close(obj: Any) -> None:
    """Close an ADBC object; closing a dead connection may complain: nothing to save."""
    if obj is None:
        return
    try:
        obj.close()
    except Exception:
        log.debug("ignored error while closing a serving connection")


def connect(settings: Settings, *, application_name: str = "marketlake") -> Serving:
    """An open :class:`Serving` connection (raises ConnectionConfigError when refused)."""
    return Serving(settings, application_name=application_name).open()
