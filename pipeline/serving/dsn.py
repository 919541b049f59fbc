"""Connection strings: libpq parameters added to a DSN, and where a DSN points (for messages)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from marketlake.errors import ConfigError
from marketlake.pipeline.redact import DsnError, parse_dsn, redact
from marketlake.pipeline.redact import describe_dsn as describe


def dsn_with(dsn: str, **params: str) -> str:
    """``dsn`` with libpq parameters added where it does not set them already; a DSN that
    does not parse by libpq's rules is a :class:`ConfigError` that never shows its text."""
    try:
        present = parse_dsn(dsn)
    except DsnError as exc:
        raise ConfigError(f"the serving DSN does not parse ({exc}); it is not shown") from None
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for k, v in params.items():
            query.setdefault(k, v)
        return urlunsplit(parts._replace(query=urlencode(query)))
    extra = " ".join(f"{k}={v}" for k, v in params.items() if k not in present)
    return f"{dsn} {extra}".strip()


def describe_dsn(dsn: str, secrets: Sequence[str] = ()) -> str:
    """Where a DSN points, for messages: no password, no query string; a DSN that does not
    parse is described as such, never shown."""
    return redact(describe(dsn), tuple(secrets))
