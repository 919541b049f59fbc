"""SQL texts for the serving database: quoted identifiers, placeholders and migrations.

Texts live in ``sql/postgres``; identifiers substituted into them are quoted, and the only one
not fixed by the code (or the lake's table definitions) is the validated serving schema name,
besides the indicator columns an evolving lake table grows, which must be plain identifiers too.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from marketlake.errors import ConfigError, LoadError
from marketlake.sql import list_sql, load_sql

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


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
