"""The layout of a full recompute's output: periods of rows, gathers with validity bitmaps."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from marketlake.kernels import layout

DAY_US = 86_400_000_000


def ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a).view()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("monthly", [False, True])
def test_period_order_groups_rows_by_polars_year_or_month_stably(monthly):
    rng = np.random.default_rng(7)
    # series after series, each ascending: ~300 years around the epoch, then a descending tail
    runs = [np.sort(rng.integers(-5 * 10**15, 5 * 10**15, 5_000)) for _ in range(4)]
    ts = np.concatenate([*runs, runs[0][::-1][:500], np.array([0, -1, DAY_US * 59 - 1])])
    order, codes, bounds = layout.period_order(ro(ts), DAY_US, monthly)
    when = pl.Series(ts).cast(pl.Datetime("us", "UTC"))
    want = when.dt.year().cast(pl.Int64)
    if monthly:
        want = want * 100 + when.dt.month().cast(pl.Int64)
    want = want.to_numpy()
    assert (order == np.argsort(want, kind="stable")).all()
    assert codes.tolist() == sorted(set(want.tolist()))
    for k, c in enumerate(codes):
        assert (want[order[bounds[k] : bounds[k + 1]]] == c).all()
    assert bounds[0] == 0 and bounds[-1] == ts.shape[0]


def test_period_order_of_no_rows():
    order, codes, bounds = layout.period_order(ro(np.zeros(0, np.int64)), DAY_US, False)
    assert order.shape == codes.shape == (0,) and bounds.tolist() == [0]


@pytest.mark.parametrize("n", [1, 7, 8, 9, layout.CHUNK + 13])
def test_take_valid_gathers_columns_and_clears_the_bits_of_nan(n):
    rng = np.random.default_rng(n)
    block = rng.random((3, n + 5))
    block[rng.random(block.shape) < 0.3] = np.nan
    order = rng.permutation(n + 5)[:n].astype(np.int64)
    out = np.empty((3, n))
    bits = np.full((3, (n + 7) // 8), 0xFF, np.uint8)
    layout.take_valid(ro(block), ro(order), out, bits)
    want = block[:, order]
    assert np.array_equal(out, want, equal_nan=True)
    valid = np.unpackbits(bits, axis=1, bitorder="little")[:, :n].astype(bool)
    assert (valid == ~np.isnan(want)).all()
    ints = np.arange(n + 5, dtype=np.int64) * 3
    got = np.empty(n, np.int64)
    layout.take(ro(ints), ro(order), got)
    assert (got == ints[order]).all()


def test_take_valid_copies_runs_of_consecutive_rows_across_chunks():
    # period order: each series' rows of one period are consecutive source rows
    n = 3 * layout.CHUNK + 101
    block = np.random.default_rng(3).random((2, n))
    block[:, ::7] = np.nan
    pieces = np.array_split(np.arange(n, dtype=np.int64), 37)
    order = np.concatenate(pieces[1::2] + pieces[0::2])
    out = np.empty((2, n))
    bits = np.empty((2, (n + 7) // 8), np.uint8)
    layout.take_valid(ro(block), ro(order), out, bits)
    assert np.array_equal(out, block[:, order], equal_nan=True)
    valid = np.unpackbits(bits, axis=1, bitorder="little")[:, :n].astype(bool)
    assert (valid == ~np.isnan(block[:, order])).all()
