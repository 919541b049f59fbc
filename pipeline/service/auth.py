"""The service's bearer token: from ``MARKETLAKE_API_TOKEN``, or generated at first start and
kept (mode 0600) in ``$MARKETLAKE_HOME/api-token``; compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from marketlake.errors import ConfigError

TOKEN_FILE = "api-token"
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    source: str  # "environment" or the token file's path

    def matches(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.value.encode())


def resolve_token(home: Path, configured: str | None) -> Token:
    """The configured token, else the one stored under ``home`` (made on first use)."""
    if configured is not None:
        configured = configured.strip()
        if len(configured) < MIN_TOKEN_CHARS:
            raise ConfigError(f"MARKETLAKE_API_TOKEN must be at least {MIN_TOKEN_CHARS} characters")
        return Token(configured, "environment")
    path = home / TOKEN_FILE
    try:
        if path.exists():
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
            value = path.read_text().strip()
            if len(value) >= MIN_TOKEN_CHARS:
                return Token(value, str(path))
        home.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot keep the API token in {path}: {exc.strerror or exc}") from exc
    return Token(value, str(path))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, configured_token: str | None) -> None:
    """Refuse a non-loopback address unless a token was configured explicitly."""
    if not is_loopback(host) and not configured_token:
        raise ConfigError(
            f"refusing to bind {host} (not loopback) without MARKETLAKE_API_TOKEN set: "
            "set a token, or bind 127.0.0.1"
        )
