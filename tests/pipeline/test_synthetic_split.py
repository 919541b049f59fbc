"""The synthetic market's compiled split: the numpy arithmetic it replaced, bit for bit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numba
import numpy as np
import pytest
from tests_helpers import run_without_polars, split_case

from marketlake.pipeline.config import ProviderSettings
from marketlake.pipeline.providers import synthetic, synthetic_split, synthetic_split_aot
from marketlake.pipeline.providers.base import FetchRequest


def numpy_split(parent, lay, draws):
    """The market's split as numpy passes over (sessions x parents x children) arrays: the
    implementation the kernel replaced, kept here as its reference."""
    o, h, lo, c, v = (x[..., None] for x in parent)
    sessions, parents = parent[0].shape
    z, wh, wl, u = draws.reshape(4, sessions, parents, -1)
    r = z.shape[2]
    sqrt_frac, cumfrac = lay["sqrt_frac"], lay["cumfrac"]
    span = h - lo
    walk = (z - 0.5) * sqrt_frac
    np.cumsum(walk, axis=2, out=walk)
    walk *= 12**0.5
    bridge_ = cumfrac * walk[..., -1:]
    np.subtract(walk, bridge_, out=bridge_)
    bridge_ *= span
    bridge_ *= 0.6
    close = (c - o) * cumfrac
    close += o
    close += bridge_
    np.clip(close, lo, h, out=close)
    np.copyto(close, c, where=lay["tail"])
    open_ = np.concatenate([o, close[..., :-1]], axis=2)
    wick = np.multiply(span * 0.3, sqrt_frac)
    hi_c = np.maximum(open_, close) + wh * wick
    lo_c = np.minimum(open_, close) - wl * wick
    high = np.minimum(hi_c, h)
    low = np.maximum(lo_c, lo)
    np.copyto(hi_c, -np.inf, where=lay["invalid"])
    np.copyto(lo_c, np.inf, where=lay["invalid"])
    first = np.arange(sessions * parents) * r
    high.reshape(-1)[first + np.argmax(hi_c, axis=2).ravel()] = h.ravel()
    low.reshape(-1)[first + np.argmin(lo_c, axis=2).ravel()] = lo.ravel()
    vol = lay["weight"] * (0.5 + u)
    total = vol.sum(axis=2, keepdims=True)
    vol = v * vol
    vol /= np.where(total > 0, total, 1.0)
    return tuple(x.reshape(sessions, -1) for x in (open_, high, low, close, vol))


@pytest.mark.parametrize(
    ("minutes", "level", "longest"),
    [
        (390, 0, 390),  # an equity day into 4h bars: 2 children
        (1440, 0, 1440),  # a crypto day into 4h bars: 6
        (390, 1, 390),  # 4h into 1h: 4, the last parent's partly padding
        (210, 1, 390),  # an early close split with the day's widest layout: padding parents
        (390, 2, 390),  # 1h into 30m
        (390, 4, 390),  # 15m into 1m: 15 children (numpy's eight-way pairwise sum)
    ],
)
def test_the_kernel_splits_as_the_numpy_passes_did(minutes, level, longest):
    parent, lay, draws = split_case(minutes, level, longest)
    want = numpy_split(parent, {k: x[None] for k, x in lay.items()}, draws)
    got = synthetic._split(parent, lay, draws)
    for name, a, b in zip(("open", "high", "low", "close", "volume"), want, got, strict=True):
        valid = np.broadcast_to(~lay["invalid"].reshape(-1), a.shape)
        assert np.array_equal(a[valid], b[valid]), name


def test_the_synthetic_market_uses_only_the_signature_built_ahead(monkeypatch):
    """The build-time cache holds the one signature the market's split passes, so an intraday
    request on a fresh install compiles nothing (numba's split: where no module was built
    ahead of time)."""
    monkeypatch.setattr(synthetic_split_aot, "_KERNEL", synthetic_split.split_into)
    now = datetime(2026, 1, 5, 22, tzinfo=UTC)
    p = synthetic.SyntheticProvider(
        ProviderSettings("synthetic", options={"seed": 3}), clock=lambda: now
    )
    for sym, inst in (("AAA", {}), ("BTC-USD", {}), ("BBRI", {"exchange": "IDX"})):
        for tf in ("4h", "1h", "15m", "1m"):
            start = now - timedelta(days=5)
            assert p.fetch(FetchRequest.bars(sym, tf, start, now, instrument=inst)).height > 0
    built = tuple(numba.typeof(a) for a in synthetic_split.example_args())
    assert set(map(tuple, synthetic_split.split_into.signatures)) <= {built}


def test_build_step_precompiles_the_split_without_polars():
    """setup.py precompiles the split too, in a build environment with numba and numpy only:
    the module imports and builds its example arguments without polars or pyarrow."""
    code = "from marketlake.pipeline.providers import synthetic_split as s\nprint(len(s.example_args()))"
    assert run_without_polars(code) == str(len(synthetic_split.example_args()))
