"""Schema evolution of existing lakes: a table created before a nullable column joined its
definition (``ohlcv.open_interest``, ``instruments.routes``) gains it without a rewrite.

Writers add the missing columns in one metadata-only commit before their first write (old
files read the column as null); readers of a table not yet evolved see it as a null column,
so every reader gets the table's current shape whichever version it reads.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, Field

from marketlake.lake._errors import lake_errors
from marketlake.lake.tables import TableDef, polars_schema
from marketlake.lake.writes import commit_properties


def missing_fields(dt: DeltaTable, tdef: TableDef) -> list[pa.Field]:
    """The defined columns the table lacks (nullable ones only: a required column cannot be
    added to rows that exist)."""
    have = set(dt.schema().to_arrow().names)
    return [f for f in tdef.schema if f.name not in have and f.nullable]


def add_missing_columns(dt: DeltaTable, tdef: TableDef, *, run_id: str, stage: str) -> bool:
    """Add the missing nullable columns in one metadata-only commit; whether it did."""
    missing = missing_fields(dt, tdef)
    if not missing:
        return False
    props = commit_properties(
        run_id, stage, {"schema_evolution": ",".join(f.name for f in missing)}
    )
    with lake_errors("add columns to", tdef.name):
        dt.alter.add_columns([Field.from_arrow(f) for f in missing], commit_properties=props)
    return True


def conform(scan: pl.LazyFrame, tdef: TableDef) -> pl.LazyFrame:
    """``scan`` with every defined column it lacks as a typed null column."""
    have = set(scan.collect_schema().names())
    types = polars_schema(tdef.name)
    missing = [c for c in tdef.columns if c not in have]
    if not missing:
        return scan
    return scan.with_columns([pl.lit(None, dtype=types[c]).alias(c) for c in missing])
