"""A first full compute writes its files straight from the kernels' block: the same files
(rows, order, values, nulls, partitions, statistics) as the frame path writes."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import numba
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from marketlake.kernels import _cache, layout
from marketlake.lake import Lake
from marketlake.lake.rewrites import Rewrite
from marketlake.pipeline import universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages import compute_layout
from marketlake.pipeline.stages.compute import run_compute
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
SPECS = ["sma(20)", "rsi(14)", "macd(12,26,9)", "adx(14)", "obv", "vwap", "pivots"]


def files(lake: Lake) -> list[dict]:
    """Each live indicators file: partition, statistics and its rows (run id left out)."""
    dt = lake.table("indicators")
    out = []
    for f in pl.DataFrame(dt.get_add_actions(flatten=True)).to_dicts():
        rows = pl.from_arrow(pq.read_table(lake.path("indicators") / f["path"]))
        stats = {k: v for k, v in f.items() if k.startswith(("min.", "max.", "null_count."))}
        out.append(
            {
                "partition": (f["partition.timeframe"], f["partition.period"]),
                "records": f["num_records"],
                "stats": {k: v for k, v in stats.items() if "run_id" not in k},
                "rows": rows.drop("run_id"),
            }
        )
    return sorted(out, key=lambda f: (f["partition"], f["stats"].get("min.symbol") or ""))


def same_files(a: list[dict], b: list[dict]) -> None:
    assert [f["partition"] for f in a] == [f["partition"] for f in b]
    for x, y in zip(a, b, strict=True):
        assert x["records"] == y["records"] and x["stats"] == y["stats"], x["partition"]
        assert x["rows"].schema == y["rows"].schema
        assert x["rows"].equals(y["rows"]), x["partition"]
        assert x["rows"].equals(x["rows"].sort("symbol", "ts"))


@pytest.fixture
def lake_with_bars(home):
    settings = load_settings(home=home, env={}, now=NOW)
    lake = Lake(home)
    universe.add_many(lake, ["AAA", "BBB"], run_id="u", provider="synthetic", asset_type="equity")
    universe.add(lake, "BTC/USD", run_id="u", provider="synthetic", asset_type="crypto")
    run_sync(settings, timeframes=["1D", "1h"], start="2025-10-01")
    return settings, lake


def test_first_full_compute_writes_the_frame_paths_files(lake_with_bars, monkeypatch):
    from marketlake.pipeline.stages import compute

    settings, lake = lake_with_bars
    monkeypatch.setattr(compute, "BATCH_ROWS", 400)  # several batches per timeframe
    laid = []
    real = compute_layout.new_files
    monkeypatch.setattr(compute, "new_files", lambda *a: laid.append(a[1]) or real(*a))
    first = run_compute(settings, indicators=SPECS, full=True)
    assert first.status == "ok" and first.inserted == lake.read("indicators").height
    assert {"1D", "1h"} <= set(laid) and len(laid) > 2
    fast = files(lake)
    assert {p for p, _ in (f["partition"] for f in fast)} == {"1D", "1h"}
    assert any(p[1] == "2025-10" for p in (f["partition"] for f in fast))  # monthly periods
    shutil.rmtree(lake.path("indicators"))
    laid.clear()
    monkeypatch.setattr(Rewrite, "replaces_nothing", lambda self: False)  # the frame path
    again = run_compute(settings, indicators=SPECS, full=True)
    assert not laid and again.inserted == first.inserted
    same_files(fast, files(lake))
    # the layout ran in the signatures the build-time cache holds
    built = {
        (d.py_func.__name__, tuple(numba.typeof(a) for a in args))
        for d, args in _cache.precompile_calls()
    }
    for d in (layout.period_order, layout.take_valid, layout.take):
        assert {(d.py_func.__name__, tuple(sig)) for sig in d.signatures} <= built


def test_stored_columns_not_computed_are_written_as_nulls(lake_with_bars, monkeypatch):
    settings, lake = lake_with_bars
    run_compute(settings, indicators=["rsi(14)"], timeframes=["1h"])
    run_compute(settings, indicators=["ema(21)"], timeframes=["1D"], full=True)
    daily = lake.read("indicators").filter(pl.col("timeframe") == "1D")
    assert daily.height > 0 and daily["rsi_14"].null_count() == daily.height
    assert daily["ema_21"].null_count() < daily.height
    fast = files(lake)
    monkeypatch.setattr(Rewrite, "replaces_nothing", lambda self: False)
    lake.delete_keys(
        "indicators", daily.select("symbol", "timeframe", "ts"), run_id="d", stage="test"
    )
    run_compute(settings, indicators=["ema(21)"], timeframes=["1D"], full=True)
    same_files(fast, files(lake))
    # a re-run of the laid-out rows changes nothing
    monkeypatch.undo()
    res = run_compute(settings, indicators=["ema(21)"], timeframes=["1D"], full=True)
    assert (res.inserted, res.updated) == (0, 0)


def test_a_rewrite_computes_batches_of_about_equal_size(lake_with_bars, monkeypatch):
    # no short last batch: ceil(rows / BATCH_ROWS) batches, cut at whole series
    from marketlake.pipeline.stages import compute

    settings, lake = lake_with_bars
    daily = lake.read("ohlcv").filter(pl.col("timeframe") == "1D")
    monkeypatch.setattr(compute, "BATCH_ROWS", daily.height // 2 + 1)
    sizes = []
    real = compute_layout.new_files
    monkeypatch.setattr(compute, "new_files", lambda *a: sizes.append(a[0].height) or real(*a))
    run_compute(settings, indicators=["sma(20)"], timeframes=["1D"], full=True)
    longest = daily.group_by("symbol").len()["len"].max()
    assert len(sizes) == 2 and sum(sizes) == daily.height
    assert abs(sizes[0] - sizes[1]) <= longest


def test_filled_arrays_are_kept_read_only_and_one_value_a_type():
    stamp = compute_layout._filled(7, 100, np.int64)
    assert stamp.tolist() == [7] * 100 and not stamp.flags.writeable
    assert compute_layout._filled(7, 60, np.int64) is stamp  # a shorter batch: its slice
    longer = compute_layout._filled(7, 150, np.int64)
    assert longer.shape == (150,) and (longer == 7).all()
    zeros = compute_layout._filled(0, 10, np.int32)
    other = compute_layout._filled(8, 10, np.int64)  # a new stamp replaces the old one
    assert (other == 8).all() and compute_layout._filled(0, 10, np.int32) is zeros
    assert set(compute_layout._FILLED) == {(8, other.dtype.str), (0, zeros.dtype.str)}
