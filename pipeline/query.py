"""``marketlake query``: one read-only SELECT over the lake's tables (as DuckDB views).

The connection can read only the lake's own files and its configuration is locked
(:func:`marketlake.lake.duck.connect` with ``read_only``); on top of that exactly one
statement is accepted, and only a query (SELECT, or EXPLAIN of one): COPY TO, ATTACH,
INSTALL, LOAD, CREATE, SET, PRAGMA and the rest are refused before anything runs. Results are
written by the caller (``--out``), never by DuckDB.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from marketlake.errors import ConfigError
from marketlake.lake.duck import connect, damage
from marketlake.lake.store import Lake

_ALLOWED = {"SELECT", "EXPLAIN"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise ConfigError unless ``sql`` is exactly one SELECT (or EXPLAIN) statement."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ConfigError(f"query failed: {_first_line(exc)}") from exc
    if len(statements) != 1:
        raise ConfigError(f"query refused: expected one statement, got {len(statements)}")
    kind = statements[0].type.name
    if kind not in _ALLOWED:
        raise ConfigError(
            f"query refused: {kind} statements are not allowed (query is read-only; "
            "use --out to write results)"
        )


def check_out(lake: Lake, dest: Path | None) -> None:
    """Raise ConfigError when ``--out`` points inside the lake (it would change a table)."""
    if dest is None or not lake.location.is_local:
        return  # a lake on object storage has no local directory to write into
    root = lake.location.path.resolve()
    target = Path(dest).resolve()
    if target == root or root in target.parents:
        raise ConfigError(f"--out {dest}: refusing to write inside the lake ({root})")


def run_query(lake: Lake, sql: str) -> pl.DataFrame:
    """The result of one read-only query over the lake."""
    con = connect(lake, read_only=True)
    try:
        check_read_only(con, sql)
        try:
            return con.sql(sql).pl()
        except duckdb.PermissionException as exc:
            raise ConfigError(f"query refused: {_first_line(exc)}") from exc
        except duckdb.Error as exc:
            raise damage(lake, exc) or ConfigError(f"query failed: {_first_line(exc)}") from exc
    finally:
        con.close()
