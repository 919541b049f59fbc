"""The serving PostgreSQL database: connections, SQL texts and migrations, the driver-error
boundary, and loading lake tables into it."""

from marketlake.pipeline.serving.connection import Serving, connect, retry
from marketlake.pipeline.serving.sqltext import (
    Migration,
    migrations,
    query_sql,
    quote_ident,
    render,
    validate_schema,
)

__all__ = [
    "Migration",
    "Serving",
    "connect",
    "migrations",
    "query_sql",
    "quote_ident",
    "render",
    "retry",
    "validate_schema",
]
