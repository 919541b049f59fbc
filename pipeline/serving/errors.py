"""The one place PostgreSQL driver errors enter marketlake and become our error tree.

:func:`driver_errors` wraps every driver call. A refused login or unreachable server becomes
one redacted :class:`ConnectionConfigError` line (exit 2); a connection lost mid-statement (or
a serialization failure) becomes :class:`TransientLoadError`, which the caller retries on a new
connection; anything else becomes :class:`LoadError`. Converted errors are raised ``from
None``: the driver's text is redacted once, here, and a chained foreign message could still
carry the DSN. The SQLSTATE travels on the converted error as ``sqlstate``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from marketlake.errors import ConnectionConfigError, LoadError, MarketlakeError, TransientLoadError
from marketlake.pipeline.redact import redact
from marketlake.pipeline.serving.dsn import describe_dsn

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


def driver_error_types() -> tuple[type[BaseException], ...]:
    """The driver error classes converted here: ADBC's, and psycopg's once it is loaded
    (an error of a driver nobody imported cannot be raised, so it is not imported here)."""
    import adbc_driver_manager

    types: list[type[BaseException]] = [adbc_driver_manager.Error]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        types.append(psycopg.Error)
    return tuple(types)


def _one_line(exc: BaseException, secrets: Sequence[str]) -> str:
    text = str(exc).split("Query was:")[0].split("\nLINE ")[0]
    text = re.sub(r"^[A-Z_]+: ", "", text.strip()).replace("[libpq] ", "")
    text = re.sub(r"\s+", " ", text).strip(" .")
    state = getattr(exc, "sqlstate", None)
    if state and state not in text:
        text += f" (SQLSTATE {state})"
    return redact(text, tuple(secrets))


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a driver (or converted) error, '' when it has none."""
    state = getattr(exc, "sqlstate", None)
    if state:
        return str(state)
    m = re.search(r"SQLSTATE:? ([0-9A-Z]{5})", str(exc))
    return m.group(1) if m else ""


def connection_lost(exc: BaseException) -> bool:
    """True when a driver error means the session is gone."""
    state = sqlstate(exc)
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
    state = sqlstate(exc)
    if connection_lost(exc) or state in _RETRY_STATES:
        err: LoadError = TransientLoadError(f"{prefix}{line}")
    else:
        err = LoadError(f"{prefix}{line}")
    err.sqlstate = state  # type: ignore[attr-defined]
    return err


@contextmanager
def driver_errors(
    what: str,
    secrets: Sequence[str],
    *,
    connecting_to: str | None = None,
    first: bool = True,
    on_lost: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Convert driver errors raised inside the block (the mapping, in the manner of httpx's
    ``map_exceptions``). ``connecting_to`` is the DSN while opening a connection;
    ``on_lost`` is called when the session is gone."""
    try:
        yield
    except driver_error_types() as exc:
        if connecting_to is not None:
            raise convert_connect_error(exc, connecting_to, secrets, first=first) from None
        err = convert_error(exc, secrets, what)
        if on_lost is not None and isinstance(err, TransientLoadError) and connection_lost(exc):
            on_lost()
        raise err from None
