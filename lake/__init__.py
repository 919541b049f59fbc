"""The lake: Delta tables of partitioned parquet under ``$MARKETLAKE_HOME/lake``."""

from marketlake.lake.store import Lake, WriteResult
from marketlake.lake.tables import TABLES, TableDef

__all__ = ["Lake", "TABLES", "TableDef", "WriteResult"]
