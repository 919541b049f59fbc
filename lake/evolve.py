"""Schema evolution of existing lakes: a table created before a nullable column joined its
definition (``ohlcv.open_interest``, ``instruments.routes``) gains it without a rewrite.

Writers add the missing columns in one metadata-only commit before their first write (old
files read the column as null); readers of a table not yet evolved see it as a null column,
so every reader gets the table's current shape whichever version it reads. Data that an
older release kept elsewhere moves into its column in the same commit that adds the column
(the table rewritten by the lake's checksummed writer; :data:`MOVES`: per-kind routes and the
listing source were reserved keys of ``instruments.provider_symbols``); readers of a table
not yet evolved see it moved.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, Field

from marketlake.lake._errors import lake_errors
from marketlake.lake.tables import TableDef, polars_schema
from marketlake.lake.writes import commit_properties


def out_of_provider_symbols(key: str, column: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """A move: the instruments whose ``provider_symbols`` still carry the reserved ``key``
    (how lakes before ``column`` kept it), with its value moved into ``column`` (JSON text
    for an object); only those rows."""

    def move(frame: pl.DataFrame) -> pl.DataFrame:
        if "provider_symbols" not in frame.columns:
            return frame.clear()
        moved, ids, values = [], [], []
        for i, raw in enumerate(frame.get_column("provider_symbols").to_list()):
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                continue
            if not isinstance(doc, dict) or key not in doc:
                continue
            found = doc.pop(key)
            moved.append(i)
            ids.append(json.dumps(doc, sort_keys=True))
            values.append(json.dumps(found, sort_keys=True) if isinstance(found, dict) else found)
        return frame[moved].with_columns(
            pl.Series("provider_symbols", ids, dtype=pl.String),
            pl.Series(column, values, dtype=pl.String),
        )

    return move


# (table, column) -> the rows to rewrite once the column is added (data that lived elsewhere)
MOVES = {
    ("instruments", "routes"): out_of_provider_symbols("routes", "routes"),
    ("instruments", "listed_by"): out_of_provider_symbols("source", "listed_by"),
}


def moved_rows(frame: pl.DataFrame, tdef: TableDef, added: list[str]) -> pl.DataFrame:
    """The rows of ``frame`` (a whole small table) the :data:`MOVES` of the ``added``
    columns rewrite, as rewritten."""
    out = frame.clear()
    for column in added:  # applied in turn: one row may carry several moved keys
        move = MOVES.get((tdef.name, column))
        if move is None:
            continue
        current = with_rows(frame, out, tdef)
        rows = move(current)
        out = with_rows(out, rows.select(frame.columns), tdef)
    return out


def with_rows(frame: pl.DataFrame, rows: pl.DataFrame, tdef: TableDef) -> pl.DataFrame:
    """``frame`` with ``rows`` replacing (or adding) the rows of their keys."""
    if rows.is_empty():
        return frame
    key = list(tdef.key)
    return pl.concat([frame.join(rows.select(key), on=key, how="anti"), rows])


def with_moves(frame: pl.DataFrame, tdef: TableDef, added: list[str]) -> pl.DataFrame:
    """``frame`` with the rows :func:`moved_rows` rewrites replaced."""
    return with_rows(frame, moved_rows(frame, tdef, added), tdef)


def missing_fields(dt: DeltaTable, tdef: TableDef) -> list[pa.Field]:
    """The defined columns the table lacks (nullable ones only: a required column cannot be
    added to rows that exist)."""
    have = set(dt.schema().to_arrow().names)
    return [f for f in tdef.schema if f.name not in have and f.nullable]


def add_missing_columns(dt: DeltaTable, tdef: TableDef, *, run_id: str, stage: str) -> list[str]:
    """Add the missing nullable columns in one metadata-only commit; the names added."""
    missing = missing_fields(dt, tdef)
    if not missing:
        return []
    props = commit_properties(
        run_id, stage, {"schema_evolution": ",".join(f.name for f in missing)}
    )
    with lake_errors("add columns to", tdef.name):
        dt.alter.add_columns([Field.from_arrow(f) for f in missing], commit_properties=props)
    return [f.name for f in missing]


def conform(scan: pl.LazyFrame, tdef: TableDef) -> pl.LazyFrame:
    """``scan`` with every defined column it lacks as a typed null column."""
    have = set(scan.collect_schema().names())
    types = polars_schema(tdef.name)
    missing = [c for c in tdef.columns if c not in have]
    if not missing:
        return scan
    return scan.with_columns([pl.lit(None, dtype=types[c]).alias(c) for c in missing])
