"""Four-wide vector steps: the same bits as the scalar operations and kernels they replace."""

from __future__ import annotations

import numpy as np
import pytest
from kernels_testdata import random_walk
from numba import njit

from marketlake.kernels._common import fma
from marketlake.kernels._vec4 import lane, v4, vabs, vadd, vdiv, vfma, vmul, vsel_gt, vsel_lt, vsub
from marketlake.kernels.trend import adx_atr_lanes, adx_into, adx_lanes
from marketlake.kernels.volatility import atr_into, bbands_into, bbands_lanes

SPECIAL = [0.0, -0.0, 1.0, -1.0, 3.0, 1e-300, 1e300, np.inf, -np.inf, np.nan, 0.1, 7.0 / 3.0]


@njit(error_model="numpy")
def _vector_ops(a, b, c, out):
    va = v4(a[0], a[1], a[2], a[3])
    vb = v4(b[0], b[1], b[2], b[3])
    vc = v4(c[0], c[1], c[2], c[3])
    res = (
        vadd(va, vb), vsub(va, vb), vmul(va, vb), vdiv(va, vb), vfma(va, vb, vc), vabs(va),
        vsel_gt(va, vb, va, vc), vsel_lt(va, vb, va, vc),
    )  # fmt: skip
    for k in range(len(res)):
        for j in range(4):
            out[k, j] = lane(res[k], j)


@njit(error_model="numpy")
def _scalar_ops(a, b, c, out):
    for j in range(4):
        x, y, z = a[j], b[j], c[j]
        r = (x + y, x - y, x * y, x / y, fma(x, y, z), abs(x), x if x > y else z, x if x < y else z)
        for k in range(len(r)):
            out[k, j] = r[k]


def test_vector_ops_equal_scalar_ops_bit_for_bit():
    rng = np.random.default_rng(0)
    vals = np.array(SPECIAL)
    for _ in range(200):
        a, b, c = (rng.choice(vals, 4) * rng.choice([1.0, rng.normal()], 4) for _ in range(3))
        got = np.empty((8, 4))
        want = np.empty((8, 4))
        _vector_ops(a, b, c, got)
        _scalar_ops(a, b, c, want)
        assert np.array_equal(got.view(np.int64), want.view(np.int64)), (a, b, c)


def _lanes(lengths, seed, nan=False, flat=False):
    parts = [random_walk(n, seed + i) for i, n in enumerate(lengths)]
    h, lo, c = (np.concatenate([p[k] for p in parts]) for k in ("high", "low", "close"))
    if flat:
        h = lo = c = np.full(h.shape[0], 5.0)
    if nan:
        rng = np.random.default_rng(seed)
        h, lo, c = h.copy(), lo.copy(), c.copy()
        for a in (h, lo, c):
            a[rng.integers(0, a.shape[0], 3)] = np.nan
    ends = np.cumsum(lengths)
    return h, lo, c, np.concatenate([[0], ends[:-1]]).astype(np.int64), ends.astype(np.int64)


@pytest.mark.parametrize("period", [1, 2, 14, 30])
@pytest.mark.parametrize(
    "lengths", [[600, 600, 600, 600], [300, 700, 10, 500], [0, 3, 650, 29], [28, 29, 30, 31]]
)
@pytest.mark.parametrize("kind", ["plain", "nan", "flat"])
def test_adx_lanes_equal_one_series_at_a_time(period, lengths, kind):
    """The vector steps of four series give each series' scalar ADX/DI/ATR bit for bit."""
    h, lo, c, a, b = _lanes(lengths, 7, nan=kind == "nan", flat=kind == "flat")
    n = h.shape[0]
    fused = np.full((4, n), -1.0)
    alone = np.full((3, n), -1.0)
    adx_atr_lanes(h, lo, c, period, fused[0], fused[1], fused[2], fused[3], a, b)
    adx_lanes(h, lo, c, period, alone[0], alone[1], alone[2], a, b)
    want = np.full((4, n), -1.0)
    for s, e in zip(a, b, strict=True):
        adx_into(h[s:e], lo[s:e], c[s:e], period, want[0, s:e], want[1, s:e], want[2, s:e])
        atr_into(h[s:e], lo[s:e], c[s:e], period, want[3, s:e])
    assert np.array_equal(fused.view(np.int64), want.view(np.int64))
    assert np.array_equal(alone.view(np.int64), want[:3].view(np.int64))


@pytest.mark.parametrize("period", [1, 2, 5, 20])
@pytest.mark.parametrize(
    "lengths", [[1500, 1500, 1500, 1500], [300, 1700, 10, 500], [0, 3, 650, 29], [19, 20, 21, 22]]
)
@pytest.mark.parametrize("kind", ["plain", "nan", "flat", "offset"])
def test_bbands_lanes_equal_one_series_at_a_time(period, lengths, kind):
    """The vector steps give each series' scalar Bollinger Bands bit for bit, re-centrings
    (every ``32 n`` rows, and on cancellation: a large offset, flat stretches) included."""
    h, lo, c, a, b = _lanes(lengths, 11, nan=kind == "nan", flat=kind == "flat")
    if kind == "offset":  # variance tiny against the mean square: cancellation re-centrings
        c = 1e9 + c * 1e-3
        c[::97] = 5.0
    n = c.shape[0]
    got = np.full((3, n), -1.0)
    bbands_lanes(c, period, 2.0, got[0], got[1], got[2], a, b)
    want = np.full((3, n), -1.0)
    for s, e in zip(a, b, strict=True):
        bbands_into(c[s:e], period, 2.0, want[0, s:e], want[1, s:e], want[2, s:e])
    assert np.array_equal(got.view(np.int64), want.view(np.int64))
