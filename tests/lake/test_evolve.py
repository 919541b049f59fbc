"""A lake written before a nullable column joined a table's definition gains it in a
metadata-only commit: no data file is rewritten, old rows read it as null."""

import json
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from tests_helpers import bars, has_page_crcs, old_instruments

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


def test_reserved_keys_move_out_of_provider_symbols_with_their_columns_in_one_commit(home):
    lake = Lake(home)
    old_instruments(lake)
    # before any writer: readers see the routes in their column already
    seen = lake.read("instruments").sort("symbol")
    assert seen["routes"].to_list() == [None, '{"profile": "coingecko"}']
    assert json.loads(seen["provider_symbols"][1]) == {"coingecko": "bitcoin", "indodax": "btcidr"}
    assert lake.version("instruments") == 0
    # the first write moves them: one commit adds the column and rewrites the moved row
    lake.upsert(
        "instruments",
        pl.DataFrame({"symbol": ["MSFT"], "asset_type": ["equity"], "provider_symbols": ["{}"]}),
        run_id="r2",
        stage="universe",
    )
    dt = DeltaTable(lake.uri("instruments"))
    # the move (columns and rows: one commit), then the write itself (one merge commit)
    moved, write = list(reversed(dt.history()))[1:]
    assert moved["schema_evolution"] == "routes,listed_by" and write["merge"] == "upsert"
    assert DeltaTable(lake.uri("instruments"), version=1).schema().to_arrow().names[-2:] == [
        "routes",
        "listed_by",
    ]
    # written by the lake's own writer: every file carries page checksums
    paths = dt.get_add_actions(flatten=True).column("path").to_pylist()
    assert paths and all(has_page_crcs(lake.path("instruments") / p) for p in paths)
    stored = pl.read_delta(lake.uri("instruments")).sort("symbol")
    assert stored["symbol"].to_list() == ["AAPL", "BTC/IDR", "MSFT"]
    btc = stored.row(1, named=True)
    assert json.loads(btc["routes"]) == {"profile": "coingecko"}
    assert "routes" not in json.loads(btc["provider_symbols"])
    assert stored.filter(pl.col("symbol") != "BTC/IDR")["routes"].null_count() == 2
    # the listing source, likewise out of provider_symbols
    assert stored["listed_by"].to_list() == ["file", None, None]
    assert stored["provider_symbols"][0] == "{}"
    # and planning routes BTC/IDR's profile by its own route
    from marketlake.pipeline.planning import instrument_routes

    assert instrument_routes(btc) == {"profile": "coingecko"}


def test_query_views_of_a_lake_from_before_the_column(home):
    from marketlake.lake.duck import connect

    lake = Lake(home)
    _old_lake(lake)
    con = connect(lake, ["ohlcv"], read_only=True)
    rows = con.execute("SELECT count(*), count(open_interest) FROM ohlcv").fetchall()
    assert rows == [(6, 0)]
    fo = bars(["NIFTY FUT"]).with_columns(pl.lit(12_500.0).alias("open_interest"))
    lake.upsert("ohlcv", fo, run_id="r2", stage="sync")
    con = connect(lake, ["ohlcv"], read_only=True)
    rows = con.execute("SELECT count(*), sum(open_interest) FROM ohlcv").fetchall()
    assert rows == [(9, 37_500.0)]
