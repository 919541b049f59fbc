"""One ADBC connection to the serving PostgreSQL schema, and retries across reconnects.

Every statement goes through :class:`Serving`, whose driver calls run inside
:func:`~marketlake.pipeline.serving.errors.driver_errors`, so nothing but our error tree
leaves this module.
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
        self._conn: Any = None
        self._cur: Any = None
        self.broken = False

    # lifecycle
    def open(self, *, first: bool = True) -> Serving:
        import adbc_driver_postgresql.dbapi as pg

        try:
            with driver_errors("connect", self.secrets, connecting_to=self._dsn, first=first):
                self._conn = pg.connect(self._uri)
                self._cur = self._conn.cursor()
        except MarketlakeError:
            self._conn = self._cur = None
            raise
        self.broken = False
        self.query("session_setup")
        self.commit()
        return self

    def close(self) -> None:
        for obj in (self._cur, self._conn):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # closing a dead connection may complain; nothing to save
                    log.debug("ignored error while closing a serving connection")
        self._cur = self._conn = None

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
        with self._guard(what):
            self._cur.execute(text, parameters=tuple(params) if params else None)
            return self._cur.fetchall() if self._cur.description else []

    def query(self, name: str, params: Sequence[Any] = (), **parts: str) -> list[tuple]:
        """Run the named query ``sql/postgres/queries/<name>.sql``."""
        return self.run(self.sql(name, **parts), params, what=name)

    def script(self, text: str, what: str = "script") -> None:
        """Several statements in one round trip, inside the current transaction."""
        with self._guard(what):
            cur = self._conn.cursor()  # own statement: the shared cursor caches its last query
            try:
                cur.adbc_statement.set_sql_query(text)
                cur.adbc_statement.execute_update()
            finally:
                cur.close()

    def ingest(self, table: str, data: Any, *, mode: str, temporary: bool = False) -> int:
        """Binary COPY of arrow ``data`` into ``table`` (a temp table, or one in the schema)."""
        with self._guard(f"COPY into {table}"):
            return int(
                self._cur.adbc_ingest(
                    table,
                    data,
                    mode=mode,
                    db_schema_name=None if temporary else self.schema,
                    temporary=temporary,
                )
            )

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


def connect(settings: Settings, *, application_name: str = "marketlake") -> Serving:
    """An open :class:`Serving` connection (raises ConnectionConfigError when refused)."""
    return Serving(settings, application_name=application_name).open()
