"""The remote side of a pull: rows of an exposed serving table changed since a time, streamed
from PostgreSQL as Arrow record batches (ADBC reads them batch by batch)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from marketlake.errors import ConfigError, UnknownSymbolError
from marketlake.pipeline.config import Settings
from marketlake.pipeline.serving.dsn import dsn_with
from marketlake.pipeline.serving.errors import driver_errors
from marketlake.pipeline.serving.sqltext import quote_ident, validate_schema


@dataclass(frozen=True)
class PullTable:
    """A serving table ``marketlake pull`` may read (``[serve.pull] tables``)."""

    name: str
    key: tuple[str, ...]
    updated_at: str
    deleted: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"key": list(self.key), "updated_at": self.updated_at, "deleted": self.deleted}


class NotExposed(UnknownSymbolError):
    """A table the remote's configuration does not expose for pull (404)."""


def exposed(settings: Settings) -> dict[str, PullTable]:
    """The tables ``[serve.pull]`` exposes."""
    pull: Mapping[str, Any] = (settings.serve or {}).get("pull") or {}
    return {
        name: PullTable(name, tuple(t["key"]), t.get("updated_at", "updated_at"), t.get("deleted"))
        for name, t in (pull.get("tables") or {}).items()
    }


def pull_table(settings: Settings, name: str) -> PullTable:
    tables = exposed(settings)
    if name not in tables:
        known = ", ".join(sorted(tables)) or "none"
        raise NotExposed(f"table {name!r} is not exposed for pull; exposed: {known}")
    return tables[name]


def rows_since(
    settings: Settings, table: PullTable, since: datetime | None
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The rows of ``table`` with ``updated_at >= since`` (all rows without ``since``), oldest
    change first, as a schema and a generator of batches that closes the connection when done
    (or when closed early)."""
    import adbc_driver_postgresql.dbapi as pg

    if not settings.dsn:
        raise ConfigError("the remote has no serving database (MARKETLAKE_DSN) to pull from")
    schema = validate_schema(settings.pg_schema)
    target = f"{quote_ident(schema)}.{quote_ident(table.name)}"
    stamp = quote_ident(table.updated_at)
    where = f" WHERE {stamp} >= $1::timestamptz" if since is not None else ""
    sql = f"SELECT * FROM {target}{where} ORDER BY {stamp}"  # noqa: S608 (identifiers quoted)
    secrets = settings.secrets()
    stack = ExitStack()
    try:
        with driver_errors("connect", secrets, connecting_to=settings.dsn):
            conn = stack.enter_context(
                pg.connect(dsn_with(settings.dsn, application_name="marketlake-pull"))
            )
        with driver_errors(f"pull {table.name}", secrets):
            cur = stack.enter_context(conn.cursor())
            cur.execute(sql, parameters=(since.isoformat(),) if since is not None else None)
            reader = cur.fetch_record_batch()
    except BaseException:
        stack.close()
        raise
    columns = set(reader.schema.names)
    missing = [c for c in (*table.key, table.updated_at, table.deleted) if c and c not in columns]
    if missing:
        stack.close()
        raise ConfigError(f"[serve.pull] {table.name}: the table has no column {missing[0]!r}")

    def batches() -> Iterator[pa.RecordBatch]:
        with stack:
            with driver_errors(f"pull {table.name}", secrets):
                yield from reader

    return reader.schema, batches()
