"""The one error tree of marketlake.

::

    MarketlakeError
    ├── ConfigError                 bad flags, settings or environment      (exit 2)
    │   └── HomeNotWritableError
    ├── ConnectionConfigError       wrong password, unreachable server      (exit 2)
    ├── ValidationError             a row or file that breaks the lake's rules
    ├── UnknownSymbolError          a symbol the universe lacks               (exit 2)
    ├── LakeError                   a Delta/parquet/DuckDB failure
    │   ├── LakeCorruptError                      a damaged data file (named) in a table
    │   └── LakeConflictError                     other writers kept committing first
    ├── LakeBusyError               another run holds the lake's writer lock
    ├── ProviderError               anything a provider raised, converted at the boundary
    │   ├── TransientProviderError (Transient)   5xx, timeouts, dropped connections
    │   │   └── RateLimitedError                  429, carries retry_after
    │   └── TerminalProviderError (Terminal)     never retried
    │       ├── AuthError                         401/403: abort the provider's remaining tasks
    │       ├── InvalidSymbolError                400/404/"invalid pair": skip the symbol
    │       └── BadResponseError                  unparseable or truncated body
    ├── LoadError                   the serving database refused a load
    │   └── TransientLoadError (Transient)       connection lost mid-load: retried
    └── TaskError                   a failed task, wrapped with stage, symbol and run_id

``Transient`` and ``Terminal`` are mix-ins: retry loops ask ``isinstance(err, Transient)``.
Foreign errors (httpx, deltalake, duckdb, adbc) are converted where they enter and raised
``from`` their cause, so the chain is kept and the message stays one clear line.
"""

from __future__ import annotations


class Transient:
    """Mix-in: the operation may succeed if retried later."""


class Terminal:
    """Mix-in: retrying cannot help."""


class MarketlakeError(Exception):
    """Root of every error marketlake raises on purpose."""

    exit_code = 1


class ConfigError(MarketlakeError):
    """Bad command-line flags, settings file or environment."""

    exit_code = 2


class HomeNotWritableError(ConfigError):
    """MARKETLAKE_HOME cannot be created or written."""


class ConnectionConfigError(MarketlakeError):
    """The serving database cannot be reached or refuses the credentials."""

    exit_code = 2


class ValidationError(MarketlakeError):
    """Input that breaks the lake's rules (missing columns, naive timestamps, ...)."""


class UnknownSymbolError(MarketlakeError):
    """A symbol that is not in the universe: the user named it, so a usage error."""

    exit_code = 2


class LakeError(MarketlakeError):
    """A failure reading or writing the lake."""


class LakeCorruptError(LakeError):
    """A data file of a lake table is damaged (truncated, missing, failed checksum)."""

    def __init__(self, message: str, *, table: str = "", file: str = "") -> None:
        super().__init__(message)
        self.table = table
        self.file = file


class LakeConflictError(LakeError):
    """A write kept losing to commits of other writers (someone bypassing the writer lock)."""


class LakeBusyError(MarketlakeError):
    """Another run holds the lake's writer lock; ``holder`` says which (a LockInfo)."""

    def __init__(self, holder) -> None:
        started = holder.started_at.isoformat(timespec="seconds")
        super().__init__(
            f"a run {holder.run_id} ({holder.stage}) started at {started} is in progress"
        )
        self.holder = holder


class ProviderError(MarketlakeError):
    """A provider failed; ``provider`` and ``symbol`` say where."""

    def __init__(self, message: str, *, provider: str = "", symbol: str = "") -> None:
        super().__init__(message)
        self.provider = provider
        self.symbol = symbol


class TransientProviderError(ProviderError, Transient):
    """5xx, timeouts and dropped connections: retried with backoff."""


class RateLimitedError(TransientProviderError):
    """HTTP 429: wait ``retry_after`` seconds, then retry."""

    def __init__(self, message: str, *, retry_after: float = 10.0, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class TerminalProviderError(ProviderError, Terminal):
    """A provider answer that retrying cannot change."""


class AuthError(TerminalProviderError):
    """401/403: the provider's remaining tasks are aborted."""


class InvalidSymbolError(TerminalProviderError):
    """400/404 or an 'invalid pair' body: this symbol is skipped."""


class BadResponseError(TerminalProviderError):
    """A body that cannot be parsed (truncated JSON, wrong shape)."""


class LoadError(MarketlakeError):
    """The serving database refused a load."""


class TaskError(MarketlakeError):
    """A failed task, wrapped with where it failed."""

    def __init__(self, message: str, *, stage: str, symbol: str = "", run_id: str = "") -> None:
        where = f"{stage}" + (f" {symbol}" if symbol else "")
        super().__init__(f"{where}: {message}")
        self.stage = stage
        self.symbol = symbol
        self.run_id = run_id


class TransientLoadError(LoadError, Transient):
    """The serving connection dropped mid-load (terminated backend, restart, network): the
    table's transaction was rolled back, so the load is retried on a new connection."""
