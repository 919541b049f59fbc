"""Shared data and assertions for the kernel tests (imported by the test modules)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
from tests_helpers import fixtures_dir, require

YAHOO = fixtures_dir() / "providers" / "yahoo"
FIXTURES = {
    "MSFT": "chart_MSFT_1d_2021-02-01_2022-01-31_dividends.cassette.json",
    "NVDA": "chart_NVDA_1d_2021-02-01_2022-01-31_split_4for1.cassette.json",
}
REL_TOL = 1e-9


def yahoo_ohlcv(symbol: str) -> dict[str, np.ndarray]:
    """OHLCV arrays (float64, None -> NaN) and ``ts`` (int64 seconds) of a recorded response."""
    path = require(YAHOO / FIXTURES[symbol], "recorded Yahoo response")
    result = json.loads(path.read_text())["response"]["bodyJson"]["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    out = {
        k: np.array([np.nan if v is None else v for v in quote[k]], dtype=np.float64)
        for k in ("open", "high", "low", "close", "volume")
    }
    out["ts"] = np.asarray(result["timestamp"], dtype=np.int64)
    return out


def random_walk(n: int, seed: int, start: float = 100.0) -> dict[str, np.ndarray]:
    """A seeded OHLCV random walk of ``n`` bars."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    high = close * (1.0 + np.abs(rng.normal(0.0, 0.01, n)))
    low = close * (1.0 - np.abs(rng.normal(0.0, 0.01, n)))
    open_ = np.clip(close * (1.0 + rng.normal(0.0, 0.005, n)), low, high)
    volume = rng.integers(1_000, 1_000_000, n).astype(np.float64)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def frame_of(series: dict[str, dict[str, np.ndarray]], step_s: int = 86_400) -> pl.DataFrame:
    """Long frame (symbol, ts, OHLCV) from ``{symbol: ohlcv arrays}``; bars ``step_s`` apart."""
    parts = []
    for sym, d in series.items():
        n = len(d["close"])
        ts = d.get("ts")
        if ts is None:
            ts = 1_600_000_000 + np.arange(n, dtype=np.int64) * step_s
        parts.append(
            pl.DataFrame(
                {
                    "symbol": [sym] * n,
                    "ts": pl.Series(ts * 1_000_000).cast(pl.Datetime("us", "UTC")),
                    **{k: d[k] for k in ("open", "high", "low", "close", "volume")},
                }
            )
        )
    return pl.concat(parts)


def assert_matches(actual, expected, label: str = "") -> None:
    """Identical NaN positions and max relative difference <= 1e-9."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, label
    nan_a = np.isnan(actual)
    nan_e = np.isnan(expected)
    bad = np.flatnonzero(nan_a != nan_e)
    assert bad.size == 0, f"{label}: NaN positions differ at rows {bad[:10].tolist()}"
    m = ~nan_e
    if m.any():
        a = actual[m]
        e = expected[m]
        rel = np.abs(a - e) / np.maximum(np.abs(e), 1e-12)
        worst = int(np.argmax(rel))
        assert rel[worst] <= REL_TOL, (
            f"{label}: max relative difference {rel[worst]:.3g} at row "
            f"{np.flatnonzero(m)[worst]} ({a[worst]!r} vs TA-Lib {e[worst]!r})"
        )
