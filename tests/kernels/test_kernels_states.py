"""Indicator states after a row and the rows continued from them (``kernels.states``): equal
bit for bit to what ``kernels.compute`` gives over the whole series, for every series of a
call, through leading NaNs and gaps; no state inside the warm-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from marketlake import kernels
from marketlake.kernels import resume
from marketlake.kernels.registry import resolve

SPECS = ["rsi(14)", "macd(12,26,9)", "macd(5,9,1)", "adx(14)", "supertrend(10,3)", "rsi(2)"]


def _bars(rng: np.random.Generator, lengths: list[int]) -> pl.DataFrame:
    parts = []
    for j, n in enumerate(lengths):
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
        high = close * (1 + rng.uniform(0, 0.03, n))
        low = close * (1 - rng.uniform(0, 0.03, n))
        close[: j % 3] = np.nan  # leading NaNs in some series
        if j == 0:
            high[150] = np.nan  # a gap inside one (ADX's and ATR's state NaN from there)
        parts.append(
            pl.DataFrame(
                {
                    "symbol": f"S{j}",
                    "ts": [datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=i) for i in range(n)],
                    "open": close,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": np.ones(n),
                }
            )
        )
    return pl.concat(parts)


@pytest.mark.parametrize("text", SPECS)
def test_rows_continued_from_a_state_equal_the_whole_computation(text: str) -> None:
    spec = resolve([text])[0]
    lengths = [400, 90, 257, 31]
    bars = _bars(np.random.default_rng(7), lengths)
    whole = kernels.compute(bars, [text])
    hi = np.cumsum(lengths)
    lo = hi - lengths
    keep = hi - 30
    keep = np.maximum(keep, lo)
    base = np.cumsum(hi - keep) - (hi - keep)
    cols = {
        c: np.array(bars.get_column(c).to_numpy(), np.float64) for c in ("high", "low", "close")
    }
    states = np.zeros((int((hi - keep).sum()), resume.width(spec)))
    resume.states_into(spec, cols, lo, hi, keep, base, states)
    continued = 0
    for j in range(len(lengths)):
        for seam in range(int(keep[j]), int(hi[j]) - 1):
            seed = states[base[j] + seam - keep[j]][None, :].copy()
            if not np.isfinite(seed).all():  # warm-up, or NaN for good: never continued from
                continue
            out = {c: np.full(len(bars), np.nan) for c in spec.columns}
            after = np.full((len(bars), resume.width(spec)), np.nan)
            starts, stops = np.array([seam + 1]), np.array([hi[j]])
            resume.continue_into(spec, cols, starts, stops, seed, out, after)
            for c in spec.columns:
                want = whole.get_column(c).to_numpy()[seam + 1 : hi[j]]
                assert np.array_equal(out[c][seam + 1 : hi[j]], want, equal_nan=True), (c, j)
            # the state after each continued row is the one the whole computation reaches
            got = after[seam + 1 : hi[j]]
            ref = states[base[j] + seam + 1 - keep[j] : base[j] + hi[j] - keep[j]]
            assert np.array_equal(got, ref, equal_nan=True)
            continued += 1
    assert continued > 50


def test_no_state_inside_the_warm_up() -> None:
    spec = resolve(["adx(14)"])[0]
    cols = {c: np.linspace(1.0, 2.0, 40) + (c == "high") for c in ("high", "low", "close")}
    states = np.zeros((40, 4))
    z = np.zeros(1, np.int64)
    resume.states_into(spec, cols, z, np.full(1, 40), z, z, states)
    assert np.isnan(states[:27]).all() and np.isfinite(states[27:]).all()  # ADX from 2n - 1
