"""A lake written before a nullable column joined a table's definition gains it in a
metadata-only commit: no data file is rewritten, old rows read it as null."""

from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from tests_helpers import bars

from marketlake.lake import Lake
from marketlake.lake.frames import to_arrow
from marketlake.lake.tables import OHLCV, TableDef
from marketlake.lake.writes import TABLE_CONFIG


def _old_lake(lake: Lake) -> DeltaTable:
    """``ohlcv`` as a lake of the previous release wrote it: no ``open_interest``."""
    old = TableDef(
        "ohlcv",
        pa.schema([f for f in OHLCV.schema if f.name != "open_interest"]),
        OHLCV.key,
        OHLCV.partitions,
        OHLCV.bookkeeping,
    )
    data = to_arrow(old, bars(["A", "B"]))
    write_deltalake(
        lake.uri("ohlcv"), data, partition_by=list(old.partitions), configuration=TABLE_CONFIG
    )
    return DeltaTable(lake.uri("ohlcv"))


def test_an_existing_table_gains_the_column_without_a_rewrite(home):
    lake = Lake(home)
    dt = _old_lake(lake)
    old_files = set(dt.file_uris())
    assert "open_interest" not in dt.schema().to_arrow().names
    # readers see the current shape before any writer evolved the table
    before = lake.read("ohlcv")
    assert before["open_interest"].null_count() == before.height == 6
    assert lake.version("ohlcv") == 0
    # the first write adds the column (one metadata commit), then writes its rows
    fo = bars(["NIFTY FUT"]).with_columns(pl.lit(12_500.0).alias("open_interest"))
    res = lake.upsert("ohlcv", fo, run_id="r2", stage="sync")
    assert res.inserted == 3
    dt = DeltaTable(lake.uri("ohlcv"))
    assert dt.schema().to_arrow().field("open_interest").type == pa.float64()
    assert old_files <= set(dt.file_uris())  # nothing rewritten
    ops = [h["operation"] for h in reversed(dt.history())]
    assert ops[1] == "ADD COLUMN"
    out = lake.read("ohlcv").sort("symbol", "ts")
    assert out.filter(pl.col("symbol") == "NIFTY FUT")["open_interest"].to_list() == [12_500.0] * 3
    assert out.filter(pl.col("symbol") != "NIFTY FUT")["open_interest"].null_count() == 6
    # a second write finds nothing to add: no further metadata commit
    version = lake.version("ohlcv")
    assert not lake.evolve("ohlcv", run_id="r3", stage="sync")
    assert lake.version("ohlcv") == version


def test_time_travel_to_a_version_before_the_column(home):
    lake = Lake(home)
    _old_lake(lake)
    lake.upsert("ohlcv", bars(["C"]), run_id="r2", stage="sync")
    old = lake.read("ohlcv", version=0)
    assert "open_interest" in old.columns and old.height == 6
    assert lake.read("ohlcv").height == 9
    assert datetime.now(UTC) > old["ts"].max()
