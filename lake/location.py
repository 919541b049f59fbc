"""Where the lake lives: a local directory, or an object-store URI (``s3://bucket/prefix``)
with the storage options that delta-rs, polars and obstore are all given for it.

Delta commits on S3 are safe for concurrent writers because the log entry for a version is
written with a conditional put (``If-None-Match: *``, ``aws_conditional_put=etag``): a second
writer of the same version is refused and retries from a fresh read. "Unsafe rename" is never
configured. Objects beside the tables (the writer lease, orphan listings, the log read by
``maintain``) go through obstore with the same options.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from marketlake.errors import LakeError

SCHEMES = ("s3",)
LEASE_S = 30.0  # a writer lease not renewed for this long belongs to a dead run


@dataclass(frozen=True)
class LakeLocation:
    """A lake root: ``uri`` is an absolute local path or ``s3://bucket/prefix``; ``options``
    the object store's settings (endpoint, region, credentials) as sorted pairs."""

    uri: str
    options: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    lease_s: float = LEASE_S

    @classmethod
    def local(cls, root: Path) -> LakeLocation:
        return cls(str(Path(root).absolute()))

    @classmethod
    def parse(
        cls, uri: str, options: Mapping[str, str] | None = None, *, lease_s: float = LEASE_S
    ) -> LakeLocation:
        """``s3://bucket/prefix`` (with ``options``), or a local path / ``file://`` URI."""
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            path = unquote(parsed.path) if parsed.scheme == "file" else uri
            return cls(str(Path(path).expanduser().absolute()), lease_s=lease_s)
        if parsed.scheme not in SCHEMES or not parsed.netloc:
            raise LakeError(f"lake URI must be s3://bucket/prefix or a local path, got {uri!r}")
        prefix = parsed.path.strip("/")
        norm = f"{parsed.scheme}://{parsed.netloc}" + (f"/{prefix}" if prefix else "")
        return cls(norm, tuple(sorted((options or {}).items())), lease_s)

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    @property
    def path(self) -> Path:
        """The local directory (a local lake only)."""
        if not self.is_local:
            raise LakeError(f"the lake at {self.uri} is not a local directory")
        return Path(self.uri)

    @property
    def storage_options(self) -> dict[str, str] | None:
        """For delta-rs and polars (None for a local lake)."""
        return None if self.is_local else dict(self.options)

    def table_uri(self, name: str) -> str:
        return str(self.path / name) if self.is_local else f"{self.uri}/{name}"

    def __str__(self) -> str:
        return self.uri

    # -- objects under the root (keys are relative, "/"-separated) -----------------------
    def store(self):
        return _store(self.uri, self.options)

    def list(self, prefix: str) -> dict[str, int]:
        """Every object under ``prefix`` (relative to ``prefix``) with its size in bytes."""
        import obstore

        base = prefix.rstrip("/") + "/"
        out: dict[str, int] = {}
        with storage_errors("list", prefix):
            for batch in obstore.list(self.store(), base):
                for meta in batch:
                    out[meta["path"][len(base) :]] = int(meta["size"])
        return out

    def get(self, key: str) -> bytes:
        import obstore

        with storage_errors("read", key):
            return bytes(obstore.get(self.store(), key).bytes())

    def put(self, key: str, data: bytes) -> None:
        import obstore

        with storage_errors("write", key):
            obstore.put(self.store(), key, data)

    def delete(self, key: str) -> None:
        import obstore

        try:
            with storage_errors("delete", key):
                obstore.delete(self.store(), key)
        except FileNotFoundError:
            pass


def _obstore_config(options: tuple[tuple[str, str], ...]) -> tuple[dict, dict]:
    config: dict[str, Any] = {}
    client: dict[str, Any] = {}
    for key, value in options:
        if key in ("aws_allow_http", "allow_http"):
            client["allow_http"] = value.lower() in ("1", "true", "yes")
        elif key.startswith("aws_"):
            config[key] = value
    return config, client


@functools.cache
def _store(uri: str, options: tuple[tuple[str, str], ...]):
    """One obstore client per process and location (workers build their own)."""
    from obstore.store import LocalStore, from_url

    if "://" not in uri:
        return LocalStore(uri, mkdir=True)
    config, client = _obstore_config(options)
    with storage_errors("open", uri):
        return from_url(uri, config=config, client_options=client)


@contextmanager
def storage_errors(action: str, key: str) -> Iterator[None]:
    """Turn obstore's errors into one-line :class:`LakeError`s naming the key (a missing
    object becomes FileNotFoundError, for callers that expect absence)."""
    import obstore.exceptions as oe

    try:
        yield
    except oe.NotFoundError as exc:
        raise FileNotFoundError(f"{key}: not found") from exc
    except (oe.AlreadyExistsError, oe.PreconditionError):
        raise  # a refused conditional write is an answer, for the caller to act on
    except (oe.BaseError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise LakeError(f"lake storage: {action} {key} failed: {first}") from exc
