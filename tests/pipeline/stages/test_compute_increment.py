"""The compute increment: the row order of a lake read (a few pieces each sorted by (symbol,
ts)), the resumed windows gathered through it, the indicator groups, and seeded indicators
continued from their stored values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from tests_helpers import sorted_pieces

from marketlake import kernels
from marketlake.kernels import registry, resume
from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages import compute_increment
from marketlake.pipeline.stages.compute import changed_series, last_watermark, run_compute
from marketlake.pipeline.stages.compute_increment import (
    _bar_columns,
    _chunks,
    _from_seam,
    _grouped,
    _groups,
    _key_order,
    _keyed,
    _sorted_key_order,
    increment,
    symbol_enum,
)
from marketlake.pipeline.stages.ingest import run_sync


def test_key_order_equals_a_lexsort() -> None:
    rng = np.random.default_rng(3)
    codes, ts = sorted_pieces(rng, 300, 7)
    order = _key_order(codes, ts)
    assert order is not None
    assert np.array_equal(order, np.lexsort((ts, codes)))


def test_key_order_of_sorted_rows_is_none() -> None:
    codes, ts = sorted_pieces(np.random.default_rng(4), 50, 1)
    assert _key_order(codes, ts) is None


def test_key_order_too_wide_for_one_key_falls_back_to_a_lexsort() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 1 << 20, 1000)
    ts = rng.integers(-(1 << 60), 1 << 60, 1000)  # a span of 61 bits
    assert np.array_equal(_key_order(codes, ts), np.lexsort((ts, codes)))


def test_grouped_sorts_by_symbol_then_ts() -> None:
    rng = np.random.default_rng(6)
    codes, ts = sorted_pieces(rng, 40, 4)
    bars = pl.DataFrame(
        {"symbol": [f"S{c:03d}" for c in codes], "ts": ts, "close": rng.random(len(ts))}
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    got = _grouped(bars)
    want = bars.sort("symbol", "ts")
    assert got.get_column("symbol").dtype == pl.Enum(sorted(set(want["symbol"])))
    assert got.with_columns(pl.col("symbol").cast(pl.String)).equals(want)


def test_keyed_orders_a_read_without_gathering_it() -> None:
    rng = np.random.default_rng(7)
    codes, ts = sorted_pieces(rng, 30, 3)
    bars = pl.DataFrame(
        {"symbol": [f"S{c:03d}" for c in codes], "ts": ts, "close": rng.random(len(ts))}
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    keyed, order = _keyed(bars)
    assert order is not None and keyed.n_chunks() == 1
    assert keyed.with_columns(pl.col("symbol").cast(pl.String)).equals(bars)  # rows as read
    assert keyed[order].equals(_grouped(bars))


def _walks(rng) -> pl.DataFrame:
    """Random-walk bars of 12 series in 4 pieces (a lake read's row order)."""
    codes, ts = sorted_pieces(rng, 12, 4)
    close = 100 + rng.standard_normal(len(ts)).cumsum()
    return pl.DataFrame(
        {
            "symbol": [f"S{c:03d}" for c in codes],
            "ts": ts,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": rng.random(len(ts)) * 1e6,
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


def test_windows_gathered_through_the_order_equal_windows_of_the_sorted_rows() -> None:
    keyed, order = _keyed(_walks(np.random.default_rng(8)))
    assert order is not None
    sorted_bars = keyed[order]
    bounds = np.searchsorted(
        sorted_bars.get_column("symbol").to_physical().to_numpy(), np.arange(13)
    )
    pos, end = bounds[1:] - 3, bounds[1:]  # each series' last 3 rows are new
    specs = registry.resolve(["sma(5)", "rsi(3)", "atr(4)", "obv"])
    zones = {f"S{c:03d}": "UTC" for c in range(12)}
    got = _from_seam(keyed, order, pos, end, specs, 6, zones, first=True)
    want = _from_seam(sorted_bars, None, pos, end, specs, 6, zones, first=True)
    assert got.height == 12 * 4 and got.equals(want)


@pytest.mark.parametrize("most", [1, 10, 25, 1_000])
def test_windows_computed_in_chunks_equal_one_call_over_all(monkeypatch, most) -> None:
    keyed, order = _keyed(_walks(np.random.default_rng(9)))
    sorted_bars = keyed[order]
    bounds = np.searchsorted(
        sorted_bars.get_column("symbol").to_physical().to_numpy(), np.arange(13)
    )
    pos, end = bounds[1:] - 1 - np.arange(12) % 3, bounds[1:]  # 1 to 3 new rows a series
    specs = registry.resolve(["sma(5)", "rsi(3)", "pivots", "bbands(4, 2)"])
    zones = {f"S{c:03d}": "UTC" for c in range(12)}
    whole = _from_seam(keyed, order, pos, end, specs, 6, zones, first=False)
    monkeypatch.setattr(compute_increment, "SEAM_ROWS", most)
    got = _from_seam(keyed, order, pos, end, specs, 6, zones, first=False)
    assert got.height == int((end - pos + 1).sum()) and got.equals(whole)


def test_chunks_cover_the_series_in_order_within_the_bound() -> None:
    lengths = np.array([5, 3, 9, 1, 1, 7, 2, 40, 3])
    for most in (1, 4, 9, 10, 20, 71, 1_000):
        chunks = _chunks(lengths, most)
        assert chunks[0][0] == 0 and chunks[-1][1] == lengths.size
        assert all(a < b for a, b in chunks)
        assert all(b == c for (_, b), (c, _) in zip(chunks, chunks[1:], strict=False))
        for a, b in chunks:  # within the bound, or one longer series alone
            assert lengths[a:b].sum() <= most or b - a == 1
        assert len(chunks) <= -(-lengths.sum() // most) + lengths.size


def test_bar_columns_are_the_indicators_inputs() -> None:
    assert _bar_columns(None) == ["symbol", "ts", "high", "low", "close", "volume"]
    assert _bar_columns(["sma(5)"]) == ["symbol", "ts", "close"]
    assert "open" not in _bar_columns(None)


def test_key_order_of_pieces_overlapping_in_time_sorts_every_row() -> None:
    # two pieces holding the same days of one symbol (no run order exists): a full stable sort
    codes = np.array([0, 0, 1, 0, 0, 1], np.uint16)
    ts = np.array([1, 2, 5, 2, 3, 4], np.int64)
    order = _key_order(codes, ts)
    assert np.array_equal(order, np.lexsort((ts, codes)))
    assert np.array_equal(order, _sorted_key_order(codes, ts))


def test_key_order_of_one_run_and_of_runs_in_order_is_none() -> None:
    assert _key_order(np.array([3], np.uint16), np.array([7], np.int64)) is None
    codes = np.array([0, 0, 1, 1, 1, 2], np.uint16)
    assert _key_order(codes, np.array([1, 2, 1, 5, 9, 0], np.int64)) is None


def test_symbol_enum_of_given_names_equals_the_found_ones() -> None:
    bars = pl.DataFrame({"symbol": ["B", "A", "C", "A"], "ts": [1, 2, 3, 4]})
    found = symbol_enum(bars)
    given = symbol_enum(bars.with_columns(pl.col("symbol").cast(pl.Categorical)), ["A", "B", "C"])
    assert found.equals(given)
    assert found.get_column("symbol").to_physical().to_list() == [1, 0, 2, 0]


@pytest.mark.parametrize("from_codes", [True, False])  # renumbered codes, or a cast
def test_symbol_enum_renumbers_a_categorical_as_a_cast_does(from_codes, monkeypatch) -> None:
    import marketlake.pipeline.stages.compute_increment as ci

    monkeypatch.setattr(ci, "FROM_CODES", from_codes and ci.FROM_CODES)
    rng = np.random.default_rng(2)
    for n in (3, 300):  # codes of one byte and of two
        names = np.array([f"S{i:03d}" for i in range(n)])
        text = pl.DataFrame({"symbol": names[rng.integers(0, n, 5000)], "ts": np.arange(5000)})
        coded = text.with_columns(pl.col("symbol").cast(pl.Categorical))
        want = text.with_columns(pl.col("symbol").cast(pl.Enum(sorted(set(text["symbol"])))))
        got = symbol_enum(coded)
        assert got.equals(want)
        assert got["symbol"].to_physical().equals(want["symbol"].to_physical())
        every = symbol_enum(coded, sorted(names))
        assert every["symbol"].cast(pl.String).equals(text["symbol"])
    bad = pl.DataFrame({"symbol": ["A", "Z"], "ts": [0, 1]})
    with pytest.raises(pl.exceptions.InvalidOperationError, match="Z"):  # names the stray one
        symbol_enum(bad.with_columns(pl.col("symbol").cast(pl.Categorical)), ["A"])


def test_symbol_enum_of_a_read_in_pieces_equals_a_cast() -> None:
    codes, ts = sorted_pieces(np.random.default_rng(9), 120, 5)
    text = pl.DataFrame({"symbol": [f"S{c:03d}" for c in codes], "ts": ts})
    want = text.with_columns(pl.col("symbol").cast(pl.Enum(sorted(set(text["symbol"])))))
    got = symbol_enum(text.with_columns(pl.col("symbol").cast(pl.Categorical)))
    assert got.equals(want)
    assert got["symbol"].to_physical().equals(want["symbol"].to_physical())


def test_groups_leave_out_the_seeded_indicators() -> None:
    groups = _groups(None, 0)
    names = {s.name for specs, _ in groups for s in specs}
    assert names.isdisjoint({"ema", "atr", "obv"}) and {"rsi", "macd", "sma"} <= names
    assert max(w for _, w in groups) == resume.window() + 1  # and the seam bar
    assert _groups(["ema(5)", "obv"], 0) == [([], 1)]


def test_seeded_indicators_alone_resume_from_their_stored_values(home, monkeypatch) -> None:
    from marketlake.pipeline.stages import compute_increment

    now = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    specs = ["ema(5)", "atr(3)", "obv"]
    settings = load_settings(home=home, env={}, now=now)
    lake = Lake(home)
    universe.add_many(lake, ["AAA", "BBB"], run_id="u", provider="synthetic", asset_type="equity")
    run_sync(settings, timeframes=["1D"], start="2026-01-01")
    run_compute(settings, indicators=specs)
    since = last_watermark(lake)
    later = settings.with_(now=now + timedelta(days=5))
    run_sync(later, timeframes=["1D"], start="2026-01-01")
    upto = lake.version("ohlcv")
    from_ts = {s: t for s, _, t in changed_series(lake, since, upto).iter_rows()}
    assert sorted(from_ts) == ["AAA", "BBB"]
    whole: list[str] = []
    reads = compute_increment._reads
    monkeypatch.setattr(
        compute_increment,
        "_reads",
        lambda lk, v, tf, syms, *c: whole.extend(syms) or reads(lk, v, tf, syms, *c),
    )
    columns = kernels.output_columns(specs)
    got = increment(
        lake,
        upto,
        "1D",
        sorted(from_ts),
        specs,
        columns,
        {},
        "inc",
        meta=None,
        computed_at=later.clock(),
        from_ts=from_ts,
    )
    assert whole == [] and got["inserted"] > 0  # both resumed, none read whole
    bars = lake.read("ohlcv").filter(pl.col("timeframe") == "1D")
    full = kernels.compute(bars.select("symbol", "ts", "high", "low", "close", "volume"), specs)
    want = full.select("symbol", "ts", *[pl.col(c).fill_nan(None) for c in columns])
    stored = lake.read("indicators").select("symbol", "ts", *columns).sort("symbol", "ts")
    assert stored.equals(want.with_columns(pl.col("symbol").cast(pl.String)))


def test_groups_split_by_cost_cover_each_indicator_once_over_its_memory() -> None:
    specs = [s for s in registry.resolve(None) if s.name not in resume.SEEDED]
    for series, sessions in ((1, 0), (2600, 0), (2600, 72)):
        groups = _groups(None, sessions, series)
        got = [s for members, _ in groups for s in members]
        assert sorted(map(str, got)) == sorted(map(str, specs))
        widths = [w for _, w in groups]
        assert widths == sorted(widths, reverse=True)
        for members, w in groups:
            assert w == max(resume.memory(s) + sessions + 1 for s in members)
    assert len(_groups(None, 0, 1)) == 1  # one series: the fixed cost of a call dominates
    # many series: the short indicators' many columns (pivots, Fibonacci) over short windows
    many = _groups(None, 0, 2600)
    assert len(many) > 1
    assert all(w < 200 for members, w in many for s in members if s.name == "pivots")
