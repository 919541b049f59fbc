"""Connection strings: libpq parameters added to a DSN, and where a DSN points (for messages)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from marketlake.pipeline.redact import redact


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
