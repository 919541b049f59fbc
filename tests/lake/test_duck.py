from tests_helpers import bars

from marketlake.lake import Lake
from marketlake.lake.duck import connect


def test_views_over_every_table_even_empty(home):
    lake = Lake(home)
    con = connect(lake)
    assert con.execute("select count(*) from ohlcv").fetchone()[0] == 0
    assert con.execute("select count(*) from sync_logs").fetchone()[0] == 0


def test_query_sees_partitions_and_hostile_symbols(home):
    lake = Lake(home)
    lake.upsert("ohlcv", bars(["x'; DROP TABLE ohlcv;--", "BTC/IDR"]), run_id="r", stage="t")
    lake.upsert("ohlcv", bars(["BTC/IDR"], close=2.0), run_id="r", stage="t")
    con = connect(lake)
    rows = con.execute(
        "select symbol, timeframe, period, max(close) from ohlcv group by all order by symbol"
    ).fetchall()
    assert rows == [("BTC/IDR", "1D", "2024", 2.0), ("x'; DROP TABLE ohlcv;--", "1D", "2024", 1.0)]
