"""The client of a remote service: its address and token, the HTTP errors it answers turned
into our error tree, this home's source id, and the per-remote push watermarks."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from marketlake.errors import ConfigError, MarketlakeError
from marketlake.lake.atomic import atomic_write_bytes

SOURCE_FILE = "source-id"
MARKS_DIR = "remotes"


class RemoteError(MarketlakeError):
    """The remote refused or failed a request (one line: what, status, the remote's error)."""


@dataclass(frozen=True)
class Remote:
    """A remote service: ``url`` (http(s)://host[:port]) and its bearer token."""

    url: str
    token: str = field(repr=False)
    timeout_s: float = 600.0

    @classmethod
    def parse(cls, url: str | None, token: str | None) -> Remote:
        if not url:
            raise ConfigError("--remote: give the remote service's URL, e.g. https://host:8765")
        parts = urlparse(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"--remote: expected an http(s) URL, got {url!r}")
        if not token:
            raise ConfigError("MARKETLAKE_REMOTE_TOKEN is not set: the remote's API token")
        return cls(url.rstrip("/"), token)

    @property
    def slug(self) -> str:
        """The remote as a file name (host, port and path)."""
        parts = urlparse(self.url)
        return re.sub(r"[^A-Za-z0-9.-]+", "_", parts.netloc + parts.path).strip("_")

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx.Timeout(self.timeout_s, connect=10.0),
        )


def answer(res: httpx.Response, what: str) -> Any:
    """The ``data`` of a successful answer; otherwise one clear error."""
    if res.status_code == 401:
        raise ConfigError(f"{what}: the remote refused the token (MARKETLAKE_REMOTE_TOKEN)")
    try:
        body = res.json()
    except ValueError:
        body = {}
    if res.status_code >= 400 or not body.get("success"):
        err = body.get("error") or res.text[:200] or res.reason_phrase
        raise RemoteError(f"{what}: the remote answered {res.status_code}: {err}")
    return body.get("data")


def transport(what: str, exc: httpx.HTTPError) -> RemoteError:
    return RemoteError(
        f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    )


def source_id(home: Path) -> str:
    """This home's id as a push source (made once, kept in ``$MARKETLAKE_HOME/source-id``)."""
    path = home / SOURCE_FILE
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = uuid.uuid4().hex
    atomic_write_bytes(path, (value + "\n").encode())
    return value


class Marks:
    """Per table, the local version the remote acknowledged (with the local and the remote
    table ids it applies to), in ``$MARKETLAKE_HOME/remotes/<remote>.json``; every change is
    written atomically before the next table is pushed."""

    def __init__(self, home: Path, remote: Remote) -> None:
        self.path = home / MARKS_DIR / f"{remote.slug}.json"
        self.url = remote.url
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        except ValueError:
            data = {}  # a torn file cannot hold a watermark: the next push sends snapshots
        self.tables: dict[str, dict[str, Any]] = dict(data.get("tables") or {})

    def get(self, table: str) -> dict[str, Any] | None:
        return self.tables.get(table)

    def set(self, table: str, version: int, table_id: str, remote_table_id: str) -> None:
        self.tables[table] = {
            "version": version,
            "table_id": table_id,
            "remote_table_id": remote_table_id,
        }
        body = {"remote": self.url, "tables": self.tables}
        atomic_write_bytes(self.path, json.dumps(body, indent=1, sort_keys=True).encode())
