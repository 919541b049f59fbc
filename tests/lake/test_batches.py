"""Reading a lake table in bounded batches: a table written as large row groups is read a few
thousand rows at a time (the memory held stays a small fraction of the table), with its
partition columns, in the table's schema."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pyarrow as pa

from marketlake.lake import Lake
from marketlake.lake.batches import count_rows, iter_batches, reader
from marketlake.lake.tables import period_expr


def many_bars(symbols: int, days: int) -> pl.DataFrame:
    ts = pl.datetime_range(
        datetime(2023, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, tzinfo=UTC), "1d", eager=True
    )[:days]
    frame = pl.DataFrame({"symbol": [f"S{i:04d}" for i in range(symbols)]}).join(
        pl.DataFrame({"ts": ts}), how="cross"
    )
    n = frame.height
    return frame.with_columns(
        timeframe=pl.lit("1D"),
        open=pl.int_range(n, eager=True).cast(pl.Float64),
        high=pl.lit(2.0),
        low=pl.lit(1.0),
        close=pl.lit(1.5),
        volume=pl.lit(10.0),
        provider=pl.lit("t"),
        is_final=pl.lit(True),
    ).with_columns(period_expr())


def test_big_row_groups_are_read_in_bounded_batches(home):
    lake = Lake(home)
    lake.upsert("ohlcv", many_bars(300, 730), run_id="r1", stage="sync")  # 219,000 rows
    dt = lake.table("ohlcv")
    whole = dt.to_pyarrow_dataset().to_table()
    assert whole.num_rows == count_rows(dt) == 219_000
    assert len(dt.get_add_actions().column("path")) == 2  # one file (one row group) a year

    pool = pa.default_memory_pool()
    base = pa.total_allocated_bytes()
    held = rows = biggest = 0
    for batch in iter_batches(dt, "ohlcv", batch_rows=2_000):
        held = max(held, pa.total_allocated_bytes() - base)
        biggest = max(biggest, batch.num_rows)
        rows += batch.num_rows
    assert rows == whole.num_rows and biggest <= 2_000
    # a whole row group decoded at once would hold about half the table
    assert held < whole.nbytes / 8, (held, whole.nbytes, pool.backend_name)

    seen = [b.select(["symbol", "ts", "open", "period"]) for b in iter_batches(dt, "ohlcv")]
    got = pa.Table.from_batches(seen).sort_by([("symbol", "ascending"), ("ts", "ascending")])
    want = whole.select(["symbol", "ts", "open", "period"]).sort_by(
        [("symbol", "ascending"), ("ts", "ascending")]
    )
    assert got.equals(want)


def test_reader_has_the_table_schema_and_nulls_for_columns_a_file_lacks(home):
    lake = Lake(home)
    lake.upsert("ohlcv", many_bars(3, 10), run_id="r1", stage="sync")
    dt = lake.table("ohlcv")
    cols = ["period", "symbol", "ts", "adj_close"]  # adj_close was never written
    table = reader(dt, "ohlcv", cols, batch_rows=7).read_all()
    assert table.schema.names == cols
    assert table.num_rows == 30
    assert table.column("adj_close").null_count == 30
    assert set(table.column("period").to_pylist()) == {"2023"}
