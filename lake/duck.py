"""In-process DuckDB over the lake: one view per Delta table, no database file to lock.

A view reads exactly the data files of the table's current Delta version through a pyarrow
dataset registered with DuckDB (:mod:`marketlake.lake.verified`): page checksums are
verified as pages are read (DuckDB's own parquet reader does not check them), filters and
projections are pushed down, and files written before a column existed read it as NULL.
"""

from __future__ import annotations

import re

import duckdb

from marketlake.errors import LakeError
from marketlake.lake._errors import lake_errors
from marketlake.lake.store import Lake
from marketlake.lake.tables import TABLES
from marketlake.lake.verified import dataset, find_damage
from marketlake.sql import load_sql

_DUCK_TYPES = {"double": "DOUBLE", "string": "VARCHAR", "bool": "BOOLEAN", "int64": "BIGINT"}
_PAGE_DAMAGE = re.compile(r"checksum|crc|page integrity|corrupt|parquet", re.IGNORECASE)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(
    lake: Lake, tables: list[str] | None = None, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per lake table (empty tables get an empty view).

    ``read_only`` (user SQL): file access is limited to the lake's own directory, extensions
    are neither installed nor loaded, and the configuration is locked, so no statement can
    lift the limits. Statement types are the caller's to check (COPY TO inside the lake
    directory is still a file write).

    On object storage the files are fetched by range requests, never downloaded whole, and
    DuckDB needs no extension (nothing is installed at run time); file access from SQL is
    off entirely there."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    remote = not lake.location.is_local
    for name in tables or list(TABLES):
        dt = lake.table(name)
        with lake_errors("open lake table", name):
            if dt is None:
                con.register(f"__{name}", TABLES[name].schema.empty_table())
            else:
                con.register(f"__{name}", dataset(lake.location, name, dt))
        relation = f"__{name}"
        absent = _absent(con, name, relation)
        if absent:  # a lake written before a column existed: the column is a typed NULL
            relation = f"__{name}_conformed"
            con.execute(
                load_sql("duckdb/conformed_view.sql").format(
                    name=relation, relation=f"__{name}", nulls=absent
                )
            )
        con.execute(load_sql("duckdb/empty_view.sql").format(name=name, relation=relation))
    if read_only:
        if not remote:
            root = lake.location.path
            roots = sorted({str(root.absolute()) + "/", str(root.resolve()) + "/"})
            con.execute(f"SET allowed_directories = [{', '.join(_lit(r) for r in roots)}]")
        for setting in (
            "enable_external_access = false",
            "autoinstall_known_extensions = false",
            "autoload_known_extensions = false",
            "lock_configuration = true",
        ):
            con.execute(f"SET {setting}")
    return con


def _absent(con: duckdb.DuckDBPyConnection, name: str, relation: str) -> str:
    """``, CAST(NULL AS <type>) AS "<col>"`` for each defined column ``relation`` lacks
    (names and types from the fixed TABLES registry)."""
    tdef = TABLES[name]
    if tdef.evolving:
        return ""
    have = set(con.table(relation).columns)
    return "".join(
        f', CAST(NULL AS {_DUCK_TYPES.get(str(f.type), "VARCHAR")}) AS "{f.name}"'
        for f in tdef.schema
        if f.name not in have
    )


def damage(lake: Lake, exc: duckdb.Error, tables: list[str] | None = None) -> LakeError | None:
    """For a DuckDB error caused by a damaged data file (a failed page checksum), the
    :class:`LakeCorruptError` naming table and file (found by verifying the tables' files);
    None for any other error."""
    if not _PAGE_DAMAGE.search(str(exc)):
        return None
    for name in tables or list(TABLES):
        dt = lake.table(name)
        found = None if dt is None else find_damage(lake.location, name, dt)
        if found is not None:
            return found
    return None
