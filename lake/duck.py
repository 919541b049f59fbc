"""In-process DuckDB over the lake: one view per Delta table, no database file to lock.

A view reads exactly the parquet files of the table's current Delta version (the snapshot's
file list), with the hive-style partition columns parsed from the paths as text; files written
before a column existed read it as NULL (``union_by_name``).
"""

from __future__ import annotations

from urllib.parse import unquote, urlparse

import duckdb

from marketlake.lake._errors import lake_errors
from marketlake.lake.store import Lake
from marketlake.lake.tables import TABLES
from marketlake.sql import load_sql


def _local(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_DUCK_TYPES = {"double": "DOUBLE", "string": "VARCHAR", "bool": "BOOLEAN", "int64": "BIGINT"}


def view_sql(name: str, files: list[str], present: set[str] | None = None) -> str:
    """The CREATE VIEW statement for one table over its snapshot's files.

    Table and column names come from the fixed TABLES registry; file paths are quoted literals.
    A column of the table's definition that no file holds yet (``present``: the columns the
    files have; a lake written before the column existed) is a typed NULL.
    """
    tdef = TABLES[name]
    cols = ", ".join(
        f'"{f.name}"'
        if present is None or f.name in present or f.name in tdef.partitions
        else f'CAST(NULL AS {_DUCK_TYPES.get(str(f.type), "VARCHAR")}) AS "{f.name}"'
        for f in tdef.schema
    )
    if tdef.evolving:  # indicator columns appear over time: keep whatever the files have
        cols = "*"
    opts = "union_by_name = true"
    if tdef.partitions:
        types = ", ".join(f"{_lit(p)}: 'VARCHAR'" for p in tdef.partitions)
        opts += f", hive_partitioning = true, hive_types = {{{types}}}"
    file_list = "[" + ", ".join(_lit(f) for f in files) + "]"
    return load_sql("duckdb/table_view.sql").format(
        name=name, columns=cols, files=file_list, options=opts
    )


def _file_columns(con: duckdb.DuckDBPyConnection, files: list[str]) -> set[str]:
    """The columns the parquet files hold (their footers only)."""
    with lake_errors("read the footers of", "lake files"):
        rows = con.execute(load_sql("duckdb/file_columns.sql"), [files]).fetchall()
    return {r[0] for r in rows}


def connect(
    lake: Lake, tables: list[str] | None = None, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per lake table (empty tables get an empty view).

    ``read_only`` (user SQL): file access is limited to the lake's own directory, extensions
    are neither installed nor loaded, and the configuration is locked, so no statement can
    lift the limits. Statement types are the caller's to check (COPY TO inside the lake
    directory is still a file write).

    A lake on object storage is read through delta-rs' pyarrow datasets registered with
    DuckDB: filters and projections are pushed down to the parquet files, which are fetched
    by range requests, never downloaded whole, and DuckDB needs no extension (nothing is
    installed at run time); file access from SQL is off entirely."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    remote = not lake.location.is_local
    for name in tables or list(TABLES):
        dt = lake.table(name)
        files: list[str] = []
        if dt is not None and remote:
            with lake_errors("open lake table", name):
                con.register(f"__{name}", dt.to_pyarrow_dataset())
            con.execute(load_sql("duckdb/empty_view.sql").format(name=name, relation=f"__{name}"))
            continue
        if dt is not None:
            with lake_errors("open lake table", name):
                files = [_local(u) for u in dt.file_uris()]
        if files:
            con.execute(view_sql(name, files, _file_columns(con, files)))
        else:
            con.register(f"__{name}", TABLES[name].schema.empty_table())
            con.execute(load_sql("duckdb/empty_view.sql").format(name=name, relation=f"__{name}"))
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
