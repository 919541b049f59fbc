"""kernels.compute: sorting, extra columns, nulls, short symbols, no leakage across symbols."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import talib
from kernels_testdata import assert_matches, frame_of, random_walk

from marketlake import kernels
from marketlake.kernels.levels import fib
from marketlake.kernels.momentum import macd, rsi
from marketlake.kernels.moving import ema, sma
from marketlake.kernels.sessions import session_ids
from marketlake.kernels.trend import adx
from marketlake.kernels.volatility import atr, bbands, supertrend
from marketlake.kernels.volume import obv, vwap

LENGTHS = {"AAA": 900, "BBB": 333, "CCC": 35, "DDD": 7, "EEE": 1}


@pytest.fixture(scope="module")
def walks():
    return {sym: random_walk(n, seed=n) for sym, n in LENGTHS.items()}


@pytest.fixture(scope="module")
def sorted_frame(walks):
    return frame_of(walks, step_s=3 * 3600).with_columns(
        pl.int_range(pl.len()).alias("row_id"), pl.lit("x").alias("note")
    )


def shuffled(df: pl.DataFrame, seed: int = 1) -> pl.DataFrame:
    return df.sample(fraction=1.0, shuffle=True, seed=seed)


def test_unsorted_input_gives_sorted_output_with_extra_columns(sorted_frame):
    out = kernels.compute(shuffled(sorted_frame), ["sma(20)", "obv"])
    assert out.columns == sorted_frame.columns + ["sma_20", "obv"]
    assert out.height == sorted_frame.height
    assert out.select("symbol", "ts").equals(
        sorted_frame.sort("symbol", "ts").select("symbol", "ts")
    )
    # extra columns travel with their rows
    assert out["row_id"].to_list() == sorted_frame.sort("symbol", "ts")["row_id"].to_list()
    assert out["note"].to_list() == ["x"] * out.height
    assert out.schema["sma_20"] == pl.Float64 and out.schema["obv"] == pl.Float64


def test_same_result_whatever_the_row_order(sorted_frame):
    a = kernels.compute(sorted_frame)
    b = kernels.compute(shuffled(sorted_frame, seed=5))
    assert a.equals(b)


def test_no_leakage_across_symbols(walks, sorted_frame):
    """Each symbol's rows equal the standalone kernels run on that symbol alone."""
    out = kernels.compute(shuffled(sorted_frame))
    for sym, d in walks.items():
        part = out.filter(pl.col("symbol") == sym)
        alone = kernels.compute(sorted_frame.filter(pl.col("symbol") == sym))
        assert part.equals(alone), sym
        c, h, lo, v = d["close"], d["high"], d["low"], d["volume"]
        expect = {
            "sma_9": sma(c, 9),
            "sma_200": sma(c, 200),
            "ema_50": ema(c, 50),
            "rsi_14": rsi(c, 14),
            "macd_hist_12_26_9": macd(c, 12, 26, 9)[2],
            "bb_lower_20_2": bbands(c, 20, 2.0)[2],
            "atr_14": atr(h, lo, c, 14),
            "adx_14": adx(h, lo, c, 14)[0],
            "minus_di_14": adx(h, lo, c, 14)[2],
            "supertrend_10_3": supertrend(h, lo, c, 10, 3.0)[0],
            "obv": obv(c, v),
            "fib_100_618": fib(h, lo, 100)[4],
        }
        ts_us = part["ts"].to_physical().to_numpy()
        expect["vwap"] = vwap(h, lo, c, v, session_ids(ts_us))
        for col, want in expect.items():
            np.testing.assert_array_equal(part[col].to_numpy(), want, err_msg=f"{sym} {col}")


def test_symbols_shorter_than_the_warmup_get_nan(sorted_frame):
    specs = ["sma(200)", "adx(14)", "macd(12,26,9)", "fib(100)", "rsi(14)"]
    out = kernels.compute(sorted_frame, specs)
    # leading NaN rows per column on gap-free data (DI columns warm up in n, ADX in 2n - 1)
    warm = {"sma_200": 199, "adx_14": 27, "plus_di_14": 14, "macd_12_26_9": 33,
            "fib_100_0": 99, "rsi_14": 14}  # fmt: skip
    for sym, n in LENGTHS.items():
        part = out.filter(pl.col("symbol") == sym)
        for col, w in warm.items():
            nan = part[col].is_nan().to_numpy()
            assert nan[: min(w, n)].all(), (sym, col)
            assert not nan[w:].any(), (sym, col)


def test_warmup_rows_are_nan_not_null(sorted_frame):
    out = kernels.compute(sorted_frame, ["sma(20)"])
    assert out["sma_20"].null_count() == 0
    aaa = out.filter(pl.col("symbol") == "AAA")["sma_20"]
    assert aaa.is_nan().sum() == kernels.warmup(["sma(20)"])


def test_nulls_in_ohlcv_are_nan_and_behave_like_talib(walks):
    d = {k: v.copy() for k, v in walks["AAA"].items()}
    f = frame_of({"AAA": d}).with_columns(
        pl.when(pl.int_range(pl.len()) == 400).then(None).otherwise(pl.col("close")).alias("close"),
        pl.when(pl.int_range(pl.len()) == 600).then(None).otherwise(pl.col("high")).alias("high"),
    )
    assert f["close"].null_count() == 1
    out = kernels.compute(f, ["rsi(14)", "atr(14)", "adx(14)", "obv"])
    d["close"][400] = np.nan
    d["high"][600] = np.nan
    c, h, lo, v = d["close"], d["high"], d["low"], d["volume"]
    assert_matches(out["rsi_14"].to_numpy(), talib.RSI(c, 14), "rsi")
    assert_matches(out["atr_14"].to_numpy(), talib.ATR(h, lo, c, 14), "atr")
    assert_matches(out["adx_14"].to_numpy(), talib.ADX(h, lo, c, 14), "adx")
    assert_matches(out["obv"].to_numpy(), talib.OBV(c, v), "obv")


def test_other_numeric_dtypes_are_cast(walks):
    f = frame_of({"AAA": walks["AAA"]}).with_columns(
        pl.col("volume").cast(pl.Int64), pl.col("close").cast(pl.Float32)
    )
    out = kernels.compute(f, ["obv", "sma(5)"])
    c = walks["AAA"]["close"].astype(np.float32).astype(np.float64)
    assert_matches(out["obv"].to_numpy(), talib.OBV(c, np.floor(walks["AAA"]["volume"])), "obv")
    assert_matches(out["sma_5"].to_numpy(), talib.SMA(c, 5), "sma")


def test_categorical_symbols(sorted_frame):
    f = sorted_frame.with_columns(pl.col("symbol").cast(pl.Categorical))
    out = kernels.compute(shuffled(f), ["ema(9)"])
    ref = kernels.compute(sorted_frame, ["ema(9)"])
    np.testing.assert_array_equal(out["ema_9"].to_numpy(), ref["ema_9"].to_numpy())


def test_existing_output_column_is_replaced(sorted_frame):
    f = sorted_frame.with_columns(pl.lit(-1.0).alias("sma_20"))
    out = kernels.compute(f, ["sma(20)"])
    assert out.columns.count("sma_20") == 1
    assert not (out["sma_20"] == -1.0).any()


def test_empty_frame_and_empty_indicator_list(sorted_frame):
    empty = sorted_frame.clear()
    out = kernels.compute(empty)
    assert out.height == 0
    assert out.columns == empty.columns + kernels.output_columns()
    assert all(out.schema[c] == pl.Float64 for c in kernels.output_columns())
    same = kernels.compute(shuffled(sorted_frame), [])
    assert same.equals(sorted_frame.sort("symbol", "ts"))


def test_only_needed_columns_are_required():
    f = pl.DataFrame(
        {
            "symbol": ["A"] * 30,
            "ts": pl.datetime_range(
                pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 30), "1d", time_zone="UTC", eager=True
            ),
            "close": np.arange(30, dtype=np.float64),
        }
    )
    out = kernels.compute(f, ["sma(3)", "ema(3)", "rsi(3)"])
    assert out["sma_3"][-1] == 28.0
    with pytest.raises(ValueError, match="missing column"):
        kernels.compute(f, ["atr(3)"])


def test_input_errors(sorted_frame):
    with pytest.raises(kernels.IndicatorSpecError):
        kernels.compute(sorted_frame, ["sma(0)"])
    with pytest.raises(ValueError, match="'ts' must be a polars Datetime"):
        kernels.compute(sorted_frame.with_columns(pl.col("ts").cast(pl.Int64)), ["sma(3)"])
    with pytest.raises(ValueError, match="has nulls"):
        kernels.compute(
            sorted_frame.with_columns(pl.lit(None, pl.String).alias("symbol")), ["sma(3)"]
        )
    with pytest.raises(TypeError):
        kernels.compute(sorted_frame.to_pandas(), ["sma(3)"])  # type: ignore[arg-type]


def test_duplicate_timestamps_are_kept(sorted_frame):
    f = pl.concat([sorted_frame, sorted_frame.filter(pl.col("symbol") == "DDD")])
    out = kernels.compute(f, ["obv"])
    assert out.height == f.height
    assert out.filter(pl.col("symbol") == "DDD").height == 2 * LENGTHS["DDD"]


def test_output_blocks_are_recycled_once_dropped(sorted_frame, monkeypatch):
    from marketlake.kernels.adapter import POOL

    monkeypatch.setattr(POOL, "min_bytes", 0)
    POOL.clear()
    specs = ["sma(20)", "adx(14)", "fib(10)", "pivots", "vwap"]
    first = kernels.compute(sorted_frame, specs)
    # a deep copy (clone() would share the block)
    reference = pl.DataFrame(
        [pl.Series(c, first[c].to_list(), first.schema[c]) for c in first.columns]
    )
    held = kernels.compute(sorted_frame, specs)  # `first` still alive: new memory
    ptr = first["sma_20"].to_numpy().ctypes.data
    assert held["sma_20"].to_numpy().ctypes.data != ptr
    del first
    for raw in POOL._blocks:  # dirty the free block: every output row must be rewritten
        if raw.ctypes.data == ptr:
            raw[:] = 12345.0
    again = kernels.compute(sorted_frame, specs)
    assert again["sma_20"].to_numpy().ctypes.data == ptr  # recycled
    assert again.equals(reference)
    assert held.equals(reference)
    POOL.clear()


@pytest.mark.parametrize("long_names", [False, True])
def test_symbol_runs_from_string_views(long_names):
    """Run detection on the Arrow string views (inline <= 12 bytes, else the rle_id fallback)."""
    from marketlake.kernels.adapter import _runs

    names = ["", "A", "AB", "AB.C", "ÄÖÜ", "ABCDEFGHIJKL", "ABCDEFGHIJKM", "BRK-B", "X" * 12]
    if long_names:
        names += ["ABCDEFGHIJKLM", "ABCDEFGHIJKLN", "Z" * 40]
    names = sorted(names)
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 30, len(names))
    symbols = np.repeat(np.array(names, dtype=object), sizes)
    n = len(symbols)
    ts = pl.Series(np.tile(np.arange(30), len(names))[:n]).cast(pl.Datetime("us", "UTC"))
    df = pl.DataFrame({"symbol": symbols.tolist(), "ts": ts})
    expected = np.concatenate([[0], np.cumsum(sizes)])
    for part in (df, df.slice(sizes[0], n - sizes[0])):  # also a sliced (offset) array
        offsets, _ = _runs(part, part["ts"].to_physical().to_numpy())
        want = expected if part is df else expected[1:] - sizes[0]
        np.testing.assert_array_equal(offsets, want)


def test_sorted_pieces_are_gathered_as_a_stable_sort_would_order_them(sorted_frame):
    """A frame made of pieces each sorted by (symbol, ts) -- a lake read, one file per period
    -- comes out as a stable sort orders it, also when pieces overlap in time (full sort)."""
    from marketlake.kernels.adapter import _run_order, _runs, sort_frame

    period = pl.col("ts").dt.strftime("%Y-%m")  # 900 bars 3 h apart: 5 months
    pieces = sorted_frame.with_columns(period.alias("p")).sort("p", "symbol", "ts").drop("p")
    offsets, within = _runs(pieces, pieces["ts"].to_physical().to_numpy())
    assert within and _run_order(pieces, offsets) is not None  # gathered, not sorted
    overlapping = pl.concat([sorted_frame.slice(0, 700), sorted_frame.slice(500, 200)])
    dups = pl.concat([sorted_frame.slice(0, 10), sorted_frame.slice(9, 5)])  # a shared ts
    for frame in (pieces, overlapping, dups, shuffled(sorted_frame)):
        out, offsets = sort_frame(frame)
        want = frame.sort("symbol", "ts", maintain_order=True)
        assert out.equals(want)
        firsts = np.flatnonzero(want["symbol"].rle_id().diff().fill_null(1).to_numpy() != 0)
        np.testing.assert_array_equal(offsets, np.append(firsts, want.height))


@pytest.mark.parametrize("period", [2, 14])
def test_adx_and_atr_of_one_period_computed_in_one_pass_equal_each_alone(period):
    """ADX and ATR of the same period run fused (one pass sharing the true range); the values
    equal each computed alone, bit for bit, and TA-Lib's, with NaNs inside the series and
    series around the warm-up lengths (n, 2n - 1, 2n, 2n + 1 bars) in one group of four."""
    n = period
    walks = {f"L{k:03d}": random_walk(k, seed=k) for k in (n, 2 * n - 1, 2 * n, 2 * n + 1)}
    walks["LONG"] = random_walk(400, seed=7)
    walks["LONG"]["close"][50] = np.nan
    walks["LONG"]["high"][300] = np.nan
    walks["GAPS"] = random_walk(120, seed=9)
    walks["GAPS"]["low"][:3] = np.nan  # leading NaNs are skipped, as the TA-Lib wrapper does
    frame = frame_of(walks)
    cols = [f"atr_{n}", f"adx_{n}", f"plus_di_{n}", f"minus_di_{n}"]
    fused = kernels.compute(frame, [f"atr({n})", "rsi(5)", f"adx({n})"])
    apart = kernels.compute(frame, [f"atr({n})"]).join(
        kernels.compute(frame, [f"adx({n})"]).select("symbol", "ts", *cols[1:]), on=["symbol", "ts"]
    )
    assert fused.select(cols).equals(apart.select(cols))
    for sym, d in walks.items():
        got = fused.filter(pl.col("symbol") == sym)
        h, lo, c = d["high"], d["low"], d["close"]
        assert_matches(got[f"atr_{n}"], talib.ATR(h, lo, c, n), f"{sym} atr")
        assert_matches(got[f"adx_{n}"], talib.ADX(h, lo, c, n), f"{sym} adx")
        assert_matches(got[f"plus_di_{n}"], talib.PLUS_DI(h, lo, c, n), f"{sym} +di")


@pytest.mark.parametrize("size", [1, 1 << 30], ids=["built-ahead", "numba"])
@pytest.mark.parametrize("symbol_dtype", [pl.String, pl.Categorical, "long"])
def test_runs_scanned_in_parts_equal_one_scan(sorted_frame, symbol_dtype, size, monkeypatch):
    """Run offsets and the ts-order check come out the same when the rows are scanned in
    parts on several threads, with cuts inside runs, on run boundaries, and an out-of-order ts
    right at a cut (string views, categorical codes, and the rle_id fallback of long names),
    with the scans compiled ahead of time and numba's."""
    from marketlake.kernels import adapter

    eng = adapter.engine(size)._replace(threads=3)
    assert eng.parallel == (size > 1)

    frame = sorted_frame.select("symbol", "ts")
    if symbol_dtype == "long":
        frame = frame.with_columns(("A_RATHER_LONG_SYMBOL_" + pl.col("symbol")).alias("symbol"))
    else:
        frame = frame.with_columns(pl.col("symbol").cast(symbol_dtype))
    ts = adapter._timestamps(frame)  # read-only, as compute passes it (one compiled signature)
    whole, ascending = adapter._runs(frame, ts, eng._replace(threads=1))
    assert ascending
    swapped = ts.copy()
    for rows in (10, 300, 410, 411, 412, 900):  # 3 parts: cuts at n/3 and 2n/3; 900 = a run end
        monkeypatch.setattr(adapter, "_SPLIT_ROWS", rows)
        offsets, ascending = adapter._runs(frame, ts, eng)
        np.testing.assert_array_equal(offsets, whole)
        assert ascending
        n = len(ts)
        cut = n * 1 // min(3, n // rows)
        if cut < n and frame["symbol"][cut] == frame["symbol"][cut - 1]:
            swapped[:] = ts
            swapped[cut - 1], swapped[cut] = ts[cut], ts[cut - 1]
            assert not adapter._runs(frame, adapter._readonly(swapped), eng)[1]


def test_fresh_blocks_are_zeroed_whichever_way_their_pages_are_faulted_in(monkeypatch):
    """A large block is populated by several threads (``MADV_POPULATE_WRITE``); where that
    call fails (kernels before Linux 5.14) its pages are touched instead. Either way the
    memory is zeroed, writable and of the size asked for."""
    import numba

    from marketlake.kernels import adapter

    monkeypatch.setattr(adapter, "_SPLIT_BYTES", 1 << 16)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 3)
    n = 3 * (1 << 14) + 7  # not a whole number of pages
    block = adapter.fresh_block(n)
    assert block.shape == (n,) and block.flags.writeable and not block.any()
    if adapter._MADVISE is not None:
        monkeypatch.setattr(adapter, "_MADVISE", lambda *args: -1)
        block = adapter.fresh_block(n)
        assert block.shape == (n,) and not block.any()
    block[:] = 1.5
    assert (block == 1.5).all()
