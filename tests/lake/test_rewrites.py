"""Rewrites from Arrow tables laid out by the caller: the same checks and commit as frames."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest
from tests_helpers import bars, has_page_crcs

from marketlake.lake import Lake
from marketlake.lake.verified import checksummed

BODY = ["symbol", "ts", "sma_5", "computed_at", "run_id"]


def table(n: int = 3, **replace) -> pa.Table:
    rows = bars(["A"], days=n).select(
        "symbol", "ts", pl.col("close").alias("sma_5"), pl.col("ts").alias("computed_at")
    )
    arrow = rows.with_columns(pl.lit("r").alias("run_id")).to_arrow()
    arrow = arrow.cast(
        pa.schema(
            [
                ("symbol", pa.string()),
                ("ts", pa.timestamp("us", "UTC")),
                ("sma_5", pa.float64()),
                ("computed_at", pa.timestamp("us", "UTC")),
                ("run_id", pa.string()),
            ]
        )
    )
    for name, array in replace.items():
        arrow = arrow.set_column(arrow.schema.get_field_index(name), name, array)
    return arrow


def test_write_arrow_lands_checksummed_files_in_one_commit(home):
    lake = Lake(home)
    rw = lake.rewrite("indicators", "timeframe", "1D")
    assert rw.replaces_nothing()
    text = pa.array(["A"] * 3).dictionary_encode()  # text may come as a dictionary
    rw.write_arrow(BODY, [({"timeframe": "1D", "period": "2024"}, lambda: table(symbol=text))])
    rw.commit(run_id="r", stage="t")
    got = lake.read("indicators")
    assert got.height == 3 and got["sma_5"].to_list() == [1.0] * 3
    assert got.schema["symbol"] == pl.String and "sma_5" in got.columns
    paths = lake.table("indicators").get_add_actions(flatten=True).column("path").to_pylist()
    assert all(checksummed(lake.location, f"indicators/{p}") for p in paths)
    assert all(has_page_crcs(lake.path("indicators") / p) for p in paths)
    assert not lake.rewrite("indicators", "timeframe", "1D").replaces_nothing()
    assert lake.rewrite("indicators", "timeframe", "1h").replaces_nothing()


def test_write_arrow_refuses_files_outside_its_scope_or_of_other_columns(home):
    lake = Lake(home)
    rw = lake.rewrite("indicators", "timeframe", "1D")
    with pytest.raises(ValueError, match="outside timeframe=1D"):
        rw.write_arrow(BODY, [({"timeframe": "1h", "period": "2024-01"}, table)])
    floats = pa.array([1, 2, 3], pa.int64())
    with pytest.raises(ValueError, match="columns"):
        rw.write_arrow(BODY, [({"timeframe": "1D", "period": "2024"}, lambda: table(sma_5=floats))])
    with pytest.raises(ValueError, match="columns"):
        rw.write_arrow(
            BODY, [({"timeframe": "1D", "period": "2024"}, lambda: table().drop(["sma_5"]))]
        )
    rw.abandon()
    assert not list(lake.path("indicators").rglob("*.parquet"))
