import shutil
from datetime import UTC, datetime, timedelta

import numba
import numpy as np
import polars as pl
import pytest

from marketlake.errors import ConfigError
from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages.compute import last_watermark, run_compute
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
SPECS = ["sma(20)", "ema(21)", "rsi(14)", "macd(12,26,9)", "atr(14)", "vwap", "pivots"]


def setup(home, now=NOW):
    settings = load_settings(home=home, env={}, now=now)
    lake = Lake(home)
    universe.add_many(lake, ["AAA", "BBB"], run_id="u", provider="synthetic", asset_type="equity")
    universe.add(lake, "BTC/USD", run_id="u", provider="synthetic", asset_type="crypto")
    return settings, lake


def frame(lake):
    cols = [c for c in lake.read("indicators").columns if c not in ("computed_at", "run_id")]
    return lake.read("indicators").select(cols).sort("symbol", "timeframe", "ts")


def test_incremental_compute_equals_full_recompute(home, tmp_path):
    settings, lake = setup(home)
    run_sync(settings, timeframes=["1D", "1h"], start="2025-06-01")
    first = run_compute(settings, indicators=None)
    assert first.status == "ok" and first.inserted > 0
    assert last_watermark(lake) == lake.version("ohlcv")
    again = run_compute(settings)
    assert (again.inserted, again.updated) == (0, 0)

    later = settings.with_(now=datetime(2026, 11, 24, 18, 0, tzinfo=UTC))
    run_sync(later, timeframes=["1D", "1h"], start="2025-06-01")
    inc = run_compute(later)
    assert inc.details["series"] == 6 and inc.inserted > 0
    incremental = frame(lake)

    other = tmp_path / "other"
    other.mkdir()
    s2, lake2 = setup(other)
    run_sync(s2.with_(now=later.now), timeframes=["1D", "1h"], start="2025-06-01")
    run_compute(s2, full=True)
    full = frame(lake2)
    assert_same_indicators(incremental, full)


def assert_same_indicators(got: pl.DataFrame, full: pl.DataFrame) -> None:
    """The same rows and null positions; every value within the kernels' parity tolerance
    (1e-9 relative) of a full recompute's, and equal bit for bit but for the running sums of
    SMA and BBANDS (their last bits depend on rows before a resumed window)."""
    assert got.height == full.height
    assert got.columns == full.columns
    for c in got.columns:
        a, b = got.get_column(c), full.get_column(c)
        if not a.dtype.is_float() or not c.startswith(("sma_", "bb_")):
            assert a.equals(b), c
            continue
        assert a.is_null().equals(b.is_null()), c
        x, y = a.drop_nulls().to_numpy(), b.drop_nulls().to_numpy()
        assert (np.abs(x - y) <= 1e-9 * np.maximum(np.abs(y), 1e-12)).all(), c


@pytest.mark.parametrize("pushed", [64, 1], ids=["symbols-in-scan", "symbols-as-dictionary"])
def test_resumed_increment_equals_full_recompute(home, monkeypatch, pushed):
    # series with more bars than the window resume from their stored rows; a short series,
    # one whose history an adjustment rewrote and one whose stored rows the window does not
    # reproduce are recomputed whole. Long symbol lists (here: more than one) read the bars
    # and the plan's coverage with symbols as dictionaries, picked after the read
    from marketlake.kernels import _cache, resume, seeds
    from marketlake.pipeline import planning
    from marketlake.pipeline.stages import compute_increment

    monkeypatch.setattr(compute_increment, "PUSHED_SYMBOLS", pushed)
    monkeypatch.setattr(planning, "PUSHED_SYMBOLS", pushed)
    # calls free: the indicators split into several windows, as for thousands of series
    monkeypatch.setattr(compute_increment, "CALL_CELLS", 0)
    settings, lake = setup(home)
    run_sync(settings, timeframes=["1D"])  # the default history: about five years
    universe.add(lake, "NEW", run_id="u", provider="synthetic", asset_type="equity")
    run_sync(settings, timeframes=["1D"], symbols=["NEW"], start="2026-06-01")
    run_compute(settings)
    bars = lake.read("ohlcv")
    counts = dict(bars.group_by("symbol").len().iter_rows())
    assert counts["NEW"] < resume.window() < counts["AAA"] - 4  # NEW: fewer bars than the window

    later = settings.with_(now=NOW + timedelta(days=5))  # several new bars per series
    run_sync(later, timeframes=["1D"], symbols=["AAA", "BBB", "BTC/USD"])
    run_sync(later, timeframes=["1D"], symbols=["NEW"], start="2026-06-01")
    assert lake.read("ohlcv").filter(pl.col("symbol") == "NEW").height < resume.window()
    aaa = lake.read("ohlcv").filter(pl.col("symbol") == "AAA")
    split = aaa.with_columns(pl.col("open", "high", "low", "close") / 2, pl.col("volume") * 2)
    lake.upsert("ohlcv", split.drop("period"), run_id="split", stage="sync")  # all of AAA's past
    btc = lake.read("indicators").filter(pl.col("symbol") == "BTC/USD").sort("ts").tail(2)
    odd = btc.with_columns(pl.col("rsi_14") + 1.0)  # stored rows this window cannot continue
    lake.upsert("indicators", odd, run_id="odd", stage="compute")
    whole = []
    reads = compute_increment._reads
    monkeypatch.setattr(
        compute_increment,
        "_reads",
        lambda lk, v, tf, syms, *cols: whole.extend(syms) or reads(lk, v, tf, syms, *cols),
    )
    inc = run_compute(later)
    assert inc.status == "ok" and inc.details["series"] == 4
    assert sorted(whole) == ["AAA", "BTC/USD", "NEW"]  # BBB resumed
    resumed = frame(lake)
    assert resumed.filter(pl.col("symbol") == "BBB")["ts"].max() > NOW + timedelta(days=3)
    run_compute(later, full=True)
    odd_rows = odd.select("symbol", "timeframe", "ts")
    assert_same_indicators(
        resumed.join(odd_rows, on=["symbol", "timeframe", "ts"], how="anti"),
        frame(lake).join(odd_rows, on=["symbol", "timeframe", "ts"], how="anti"),
    )
    built = {
        (d.py_func.__name__, tuple(numba.typeof(a) for a in args))
        for d, args in _cache.precompile_calls()
    }  # the build-time cache holds what the resumed compute ran
    for d in (seeds.ema_resume, seeds.atr_resume, seeds.obv_resume):
        assert {(d.py_func.__name__, tuple(sig)) for sig in d.signatures} <= built
    assert (run_compute(later).inserted, run_compute(later).updated) == (0, 0)


def test_compute_options_and_bad_specs(home):
    settings, lake = setup(home)
    run_sync(settings, timeframes=["1D"], start="2026-01-01")
    res = run_compute(settings, indicators=SPECS, symbols=["AAA"])
    cols = set(lake.read("indicators").columns)
    assert {"sma_20", "ema_21", "rsi_14", "macd_hist_12_26_9", "vwap", "pivot_r3"} <= cols
    assert set(lake.read("indicators")["symbol"]) == {"AAA"}
    assert res.inserted == lake.read("indicators").height
    first_rows = lake.read("indicators").sort("ts").head(19)
    assert first_rows["sma_20"].null_count() == 19  # warm-up stored as nulls
    with pytest.raises(ConfigError, match="sma"):
        run_compute(settings, indicators=["smaa(20)"])
    assert run_compute(settings, indicators=SPECS, symbols=["AAA"]).updated == 0
    q = lake.read("indicators").join(lake.read("ohlcv"), on=["symbol", "timeframe", "ts"])
    assert q.filter(pl.col("vwap").is_not_null()).height > 0


def test_full_recompute_swaps_files_in_one_commit_instead_of_merging_rows(home):
    # regression: `compute --full` with another indicator set MERGEd every stored row one by
    # one (107 s for 5M rows); now the timeframe's files are swapped in one commit
    settings, lake = setup(home)
    run_sync(settings, timeframes=["1D"], start="2025-06-01")
    first = run_compute(settings, indicators=["sma(20)", "rsi(14)"])
    rows = lake.read("indicators").height
    assert first.inserted == rows > 0
    before = lake.version("indicators")
    full = run_compute(settings, indicators=["ema(21)", "sma(20)"], full=True)
    # every row past ema_21's warm-up gained a value
    assert (full.inserted, full.updated, full.unchanged) == (0, rows - 3 * 20, 3 * 20)
    new_commits = lake.history("indicators", lake.version("indicators") - before)
    assert not any("merge" in h for h in new_commits) and len(new_commits) <= 2  # column, swap
    after = frame(lake)
    assert after.height == rows
    assert after["rsi_14"].null_count() < rows  # a column not recomputed is carried over
    assert after["ema_21"].null_count() < rows
    assert last_watermark(lake) == lake.version("ohlcv")
    version = lake.version("indicators")
    again = run_compute(settings, indicators=["ema(21)", "sma(20)"], full=True)
    assert (again.inserted, again.updated) == (0, 0)
    assert frame(lake).equals(after)
    assert lake.version("indicators") <= version + 1  # at most the watermark mark
    # the files the unchanged re-run wrote were deleted, not left behind
    on_disk = {p.name for p in lake.path("indicators").rglob("*.parquet")}
    logged = set()
    for v in range(lake.version("indicators") + 1):
        logged |= {f.rsplit("/", 1)[-1] for f in lake.table("indicators", v).file_uris()}
    assert on_disk <= logged


def test_full_rewrite_batches_read_once_equal_batches_read_apart(home, monkeypatch):
    from marketlake.pipeline.stages import compute

    settings, lake = setup(home)
    run_sync(settings, timeframes=["1D", "1h"], start="2026-08-01")
    monkeypatch.setattr(compute, "BATCH_ROWS", 150)  # several batches per timeframe
    run_compute(settings, indicators=SPECS, full=True)
    once = frame(lake)
    periods = dict(once.group_by("timeframe").agg(pl.col("period").unique().sort()).iter_rows())
    assert periods["1D"] == ["2026"] and periods["1h"] == [
        "2026-08",
        "2026-09",
        "2026-10",
        "2026-11",
    ]
    monkeypatch.setattr(compute, "READ_ONCE_ROWS", 0)  # each batch read from the lake on its own
    shutil.rmtree(lake.path("indicators"))
    run_compute(settings, indicators=SPECS, full=True)
    assert frame(lake).equals(once)
    monkeypatch.setattr(compute, "PUSHED_SYMBOLS", 1)  # symbol lists applied after the read
    for read_once in (0, 10**9):
        monkeypatch.setattr(compute, "READ_ONCE_ROWS", read_once)
        shutil.rmtree(lake.path("indicators"))
        run_compute(settings, indicators=SPECS, full=True)
        assert frame(lake).equals(once)


def test_full_rewrite_writes_nothing_until_a_batch_differs_then_every_batch(home, monkeypatch):
    # a no-change `--full` re-run only diffs (no file written); when a later batch differs,
    # the unchanged batches before it are written too (the swap replaces all their files)
    from marketlake.lake.rewrites import Rewrite
    from marketlake.pipeline.stages import compute

    settings, lake = setup(home)
    run_sync(settings, timeframes=["1D"], start="2026-08-01")
    monkeypatch.setattr(compute, "BATCH_ROWS", 150)  # one symbol per batch
    run_compute(settings, indicators=SPECS, full=True)
    stored = lake.read("indicators")
    written = []
    write = Rewrite.write
    monkeypatch.setattr(Rewrite, "write", lambda rw, f: (written.append(f.height), write(rw, f)))
    again = run_compute(settings, indicators=SPECS, full=True)
    assert (again.inserted, again.updated) == (0, 0) and written == []

    bars = lake.read("ohlcv").filter(pl.col("symbol") == "BTC/USD").sort("ts")  # last batch
    last = bars.tail(1).with_columns(pl.col("close") * 1.01, pl.col("high") * 1.01)
    lake.upsert("ohlcv", last, run_id="fix", stage="sync")
    res = run_compute(settings, indicators=SPECS, full=True)
    assert res.updated > 0 and res.inserted == 0
    assert sum(written) == stored.height  # every batch written, the unchanged ones too
    after = lake.read("indicators")
    assert after.height == stored.height
    kept = after.join(stored, on=["symbol", "timeframe", "ts"], suffix="_old")
    kept = kept.filter(pl.col("symbol") != "BTC/USD")
    assert (kept["computed_at"] == kept["computed_at_old"]).all()
    assert (kept["run_id"] == kept["run_id_old"]).all()
    rewritten = frame(lake)
    shutil.rmtree(lake.path("indicators"))
    run_compute(settings, indicators=SPECS, full=True)
    assert frame(lake).equals(rewritten)


def test_streamed_no_change_check_sees_any_difference(home):
    from marketlake import kernels
    from marketlake.pipeline.stages import compute

    settings, lake = setup(home)
    run_sync(settings, timeframes=["1D"], start="2026-08-01")
    run_compute(settings, indicators=SPECS, full=True)
    part = ["AAA", "BBB"]
    bars = lake.read("ohlcv").filter(pl.col("symbol").is_in(part), pl.col("timeframe") == "1D")
    cols = kernels.output_columns(SPECS)
    new = compute._computed(bars.select(compute.BAR_COLUMNS), "1D", part, SPECS, cols, {})
    assert compute._unchanged(lake, "1D", part, new, cols)
    i = new.height - 5
    changed = new.with_columns(
        pl.when(pl.int_range(pl.len()) == i).then(pl.col("sma_20") + 1e-12).otherwise("sma_20")
    )
    assert not compute._unchanged(lake, "1D", part, changed, cols)
    nulled = new.with_columns(
        pl.when(pl.int_range(pl.len()) == i).then(None).otherwise("rsi_14").alias("rsi_14")
    )
    assert not compute._unchanged(lake, "1D", part, nulled, cols)
    assert not compute._unchanged(lake, "1D", part, new.slice(0, new.height - 1), cols)
    only_a = new.filter(pl.col("symbol") == "AAA")  # BBB's stored rows would be deleted
    assert not compute._unchanged(lake, "1D", part, only_a, cols)
    assert not compute._unchanged(lake, "1D", part, new, [*cols, "ema_50"])  # not stored yet


@pytest.mark.parametrize("from_codes", [True, False])  # counted codes, or polars' unique
def test_scanned_series_are_the_distinct_pairs_of_every_timeframe(from_codes, monkeypatch):
    from marketlake.pipeline.stages import compute
    from marketlake.pipeline.stages.compute import _scanned_series as _all_series

    monkeypatch.setattr(compute, "FROM_CODES", from_codes and compute.FROM_CODES)

    rng = np.random.default_rng(5)
    names = np.array([f"S{i:03d}" for i in range(300)])
    bars = pl.DataFrame(
        {
            "symbol": names[rng.integers(0, 300, 20_000)],
            "timeframe": np.array(["1D", "1h", "5m"])[rng.integers(0, 3, 20_000)],
        }
    ).filter(~((pl.col("timeframe") == "5m") & (pl.col("symbol") > "S100")))
    coded = bars.lazy().with_columns(pl.col("symbol", "timeframe").cast(pl.Categorical))
    want = bars.unique().sort("timeframe", "symbol")
    assert _all_series(coded).sort("timeframe", "symbol").equals(want)
    one = coded.filter(pl.col("timeframe") == "1h")
    assert _all_series(one).sort("symbol").equals(want.filter(pl.col("timeframe") == "1h"))
    assert _all_series(coded.clear()).is_empty()


@pytest.mark.parametrize("enum", [True, False])
def test_series_bounds_of_unsorted_rows_follow_their_sorted_order(enum):
    from marketlake.pipeline.stages.compute import _series_bounds

    symbols = pl.Series("symbol", ["B", "A", "D", "B", "A", "B"])
    if enum:
        symbols = symbols.cast(pl.Enum(["A", "B", "C", "D"]))  # C: a name with no rows
    order = symbols.arg_sort().to_numpy()
    offsets, names = _series_bounds(symbols, order)
    assert offsets.tolist() == [0, 2, 5, 6] and names == ["A", "B", "D"]


_NO_NUMBA = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages.compute import run_compute
from marketlake.pipeline.stages.ingest import run_sync
home = Path(sys.argv[1])
now = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
settings = load_settings(home=home, env={}, now=now)
universe.add_many(Lake(home), ["AAA", "BBB"], run_id="u", provider="synthetic",
                  asset_type="equity")
run_sync(settings, timeframes=["1D"], start="2024-01-01")
first = run_compute(settings)
later = settings.with_(now=now + timedelta(days=3))
run_sync(later, timeframes=["1D"])
again = run_compute(later)
print(first.inserted > 0, again.inserted > 0, "numba" in sys.modules)
"""


def test_a_small_lakes_first_compute_and_increments_never_load_numba(tmp_path):
    """A pipeline process computing a small lake whole, then an increment (resumed from the
    stored rows), runs every call on the kernels compiled ahead of time: numba (0.4 s of CPU
    to import and load) is never imported, by the preload at import nor by the stage."""
    import subprocess
    import sys

    home = tmp_path / "lake"
    out = subprocess.run(
        [sys.executable, "-c", _NO_NUMBA, str(home)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True", "False"], out.stderr


def test_a_full_compute_of_a_large_lake_starts_loading_numba_beside_its_read(home, monkeypatch):
    """With more bars in the lake's log than the kernels compiled ahead of time take, a full
    run starts numba's load at once, beside the read (the pipeline turned the preload at
    import off); an increment does not."""
    import marketlake
    from marketlake import kernels
    from marketlake.kernels import aot
    from marketlake.pipeline.stages import compute

    assert marketlake.PRELOAD_KERNELS is False  # the pipeline is imported
    started = []
    monkeypatch.setattr(kernels, "preload", lambda: started.append(True))
    settings, lake = setup(home)
    run_sync(settings, timeframes=["1D"], start="2026-01-01")
    bars = lake.read("ohlcv").height
    monkeypatch.setattr(aot, "SERIAL_ROWS", bars)  # the lake fits: nothing started
    compute._preload_kernels(lake, lake.version("ohlcv"))
    assert started == []
    monkeypatch.setattr(aot, "SERIAL_ROWS", bars - 1)
    run_compute(settings)  # the first run: full
    assert started == [True]
    run_sync(settings.with_(now=NOW + timedelta(days=2)), timeframes=["1D"])
    run_compute(settings.with_(now=NOW + timedelta(days=2)))  # an increment
    assert started == [True]
