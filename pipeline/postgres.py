"""The serving PostgreSQL database: ADBC connections, migrations and the error boundary.

Every statement goes through :class:`Serving`, which converts driver errors where they enter:
a refused login or unreachable server becomes one redacted :class:`ConnectionConfigError`
line (exit 2); a connection lost mid-statement becomes :class:`TransientLoadError`, which
:func:`retry` retries with exponential backoff on a new connection; anything else becomes
:class:`LoadError`. Converted errors are raised ``from None``: the driver's text is redacted
once, here, and a chained foreign message could still carry the DSN. SQL texts live in
``sql/postgres``; identifiers substituted into them are quoted, and the only one not fixed by
the code (or the lake's table definitions) is the validated serving schema name, besides the
indicator columns an evolving lake table grows, which must be plain identifiers too.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from marketlake.errors import (
    ConfigError,
    ConnectionConfigError,
    LoadError,
    MarketlakeError,
    Transient,
    TransientLoadError,
)
from marketlake.pipeline.config import Settings
from marketlake.pipeline.redact import redact
from marketlake.sql import list_sql, load_sql

log = logging.getLogger("marketlake.postgres")

T = TypeVar("T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# sqlstates meaning the session is gone (class 08, admin/crash shutdown, cannot connect now)
_LOST_STATES = ("08", "57P01", "57P02", "57P03")
_RETRY_STATES = ("40001", "40P01")  # serialization failure, deadlock: the transaction may rerun
_LOST_WORDS = (
    "no connection to the server",
    "server closed the connection",
    "terminating connection",
    "connection refused",
    "could not connect",
    "could not receive data",
    "could not send data",
    "connection reset",
    "broken pipe",
    "timeout expired",
    "the database system is starting up",
    "the database system is shutting down",
    "ssl syscall",
)
_LOGIN_WORDS = (
    "password authentication failed",
    "authentication failed",
    "no password supplied",
    "does not exist",  # role or database
    "no pg_hba.conf entry",
    "permission denied",
    "could not translate host name",
    "invalid connection option",
    "invalid uri",
    'missing "="',
)


# -- identifiers and SQL texts ---------------------------------------------------------------
def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier; only plain names (letters, digits, ``_``) pass."""
    if not _IDENT.match(name):
        raise LoadError(f"refusing SQL identifier {name!r}")
    return '"' + name + '"'


def validate_schema(name: str) -> str:
    """The serving schema name, checked once; a bad one is a configuration error."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ConfigError(
            f"postgres schema must be letters, digits and '_' (at most 63), got {name!r}"
        )
    return name


def render(text: str, **parts: str) -> str:
    """Fill the ``{name}`` placeholders of an SQL text with already-quoted fragments."""

    def fill(m: re.Match[str]) -> str:
        try:
            return parts[m.group(1)]
        except KeyError:
            raise LoadError(f"SQL text lacks a value for placeholder {m.group(0)}") from None

    return _PLACEHOLDER.sub(fill, text)


def query_sql(name: str, schema: str, **parts: str) -> str:
    """The named query ``sql/postgres/queries/<name>.sql`` rendered for ``schema``."""
    return render(load_sql(f"postgres/queries/{name}.sql"), schema=quote_ident(schema), **parts)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def migrations() -> list[Migration]:
    """The numbered migrations under ``sql/postgres``, in order."""
    out = []
    for name in list_sql("postgres"):
        m = _MIGRATION.match(name)
        if m:
            out.append(Migration(int(m.group(1)), name, load_sql(f"postgres/{name}")))
    return sorted(out, key=lambda mig: mig.version)


# -- DSNs and errors ----------------------------------------------------------------------------
def dsn_with(dsn: str, **params: str) -> str:
    """``dsn`` with libpq parameters added where it does not set them already."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for k, v in params.items():
            query.setdefault(k, v)
        return urlunsplit(parts._replace(query=urlencode(query)))
    present = {kv.split("=", 1)[0].strip() for kv in dsn.split() if "=" in kv}
    extra = " ".join(f"{k}={v}" for k, v in params.items() if k not in present)
    return f"{dsn} {extra}".strip()


def describe_dsn(dsn: str, secrets: Sequence[str] = ()) -> str:
    """Where a DSN points, for messages: no password, no query string."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return redact(f"{parts.scheme}://{user}{host}{port}{parts.path}", tuple(secrets))
    return redact(dsn, tuple(secrets))


def _one_line(exc: BaseException, secrets: Sequence[str]) -> str:
    text = str(exc).split("Query was:")[0].split("\nLINE ")[0]
    text = re.sub(r"^[A-Z_]+: ", "", text.strip()).replace("[libpq] ", "")
    text = re.sub(r"\s+", " ", text).strip(" .")
    state = getattr(exc, "sqlstate", None)
    if state and state not in text:
        text += f" (SQLSTATE {state})"
    return redact(text, tuple(secrets))


def _state(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    if state:
        return str(state)
    m = re.search(r"SQLSTATE:? ([0-9A-Z]{5})", str(exc))
    return m.group(1) if m else ""


def connection_lost(exc: BaseException) -> bool:
    """True when a driver error means the session is gone."""
    state = _state(exc)
    if state and state.startswith(_LOST_STATES):
        return True
    low = str(exc).lower()
    return any(w in low for w in _LOST_WORDS)


def convert_connect_error(
    exc: BaseException, dsn: str, secrets: Sequence[str], *, first: bool
) -> MarketlakeError:
    """A failed connect: a config error, unless it is a reconnect that may yet succeed."""
    line = _one_line(exc, secrets).removeprefix("Failed to connect: ")
    low = line.lower()
    if first or any(w in low for w in _LOGIN_WORDS) or not connection_lost(exc):
        return ConnectionConfigError(
            f"cannot connect to PostgreSQL at {describe_dsn(dsn, secrets)}: {line}"
        )
    return TransientLoadError(f"reconnecting to PostgreSQL failed: {line}")


def convert_error(exc: BaseException, secrets: Sequence[str], what: str = "") -> MarketlakeError:
    """A driver error raised by a statement, as one redacted line of our error tree."""
    line = _one_line(exc, secrets)
    prefix = f"{what}: " if what else ""
    state = _state(exc)
    if connection_lost(exc) or state in _RETRY_STATES:
        err: LoadError = TransientLoadError(f"{prefix}{line}")
    else:
        err = LoadError(f"{prefix}{line}")
    err.sqlstate = state  # type: ignore[attr-defined]
    return err


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
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as pg

        try:
            self._conn = pg.connect(self._uri)
            self._cur = self._conn.cursor()
        except adbc_driver_manager.Error as exc:
            self._conn = self._cur = None
            raise convert_connect_error(exc, self._dsn, self.secrets, first=first) from None
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
        import adbc_driver_manager

        if self._conn is None:
            raise TransientLoadError(f"{what}: not connected")
        try:
            yield
        except adbc_driver_manager.Error as exc:
            err = convert_error(exc, self.secrets, what)
            if isinstance(err, TransientLoadError) and connection_lost(exc):
                self.broken = True
            raise err from None

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
