"""The lake: Delta tables of partitioned parquet under ``$MARKETLAKE_HOME/lake``."""

from lake.store import Lake, WriteResult
from lake.tables import TABLES, TableDef

__all__ = ["Lake", "TABLES", "TableDef", "WriteResult"]
