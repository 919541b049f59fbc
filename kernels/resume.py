"""Resuming indicators after a stored row: what an incremental compute needs to equal a full
recompute without reading each series' whole history.

Per indicator, one of two ways:

* seeded (EMA, ATR, OBV): the indicator's whole state is its own last value (plus the last
  close), so from the value stored at the row before the first new one (the *seam*) the
  recurrence continues with the very step the full computation runs (``_ema_run``,
  ``_atr_run``, ``_obv_run``): bit for bit a full recompute's values;
* continued from a kept state (RSI, MACD, ADX, Supertrend; :data:`STATEFUL`): their outputs
  do not determine their state, so the state after each series' last rows is kept beside
  the lake and the recurrence continues from the one at the seam (:func:`continue_into`;
  ``kernels.states``). Where none is kept, they are windowed:
* windowed (the others): recomputed over the last :func:`memory` bars before the first new
  row. Finite lookbacks (SMA, BBANDS, Fibonacci, pivots, VWAP) need only their window.
  Recursive indicators whose outputs do not determine their state (RSI's two averages, MACD's
  two EMAs, ADX's smoothed DM and TR, Supertrend's ATR and bands) forget their seed
  geometrically: :func:`memory` covers the bars after which its weight is below ``e**-47``,
  far under float64's rounding unit, so the values equal a full recompute's to rounding
  (SMA's and BBANDS' running sums carry last-bit differences from older rows).

Intraday session indicators (VWAP, pivots) need whole sessions: the caller adds them, since
bars per session depend on the calendar (:func:`sessions_needed`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from marketlake.kernels import aot
from marketlake.kernels.registry import IndicatorSpec, resolve

SEEDED = ("ema", "atr", "obv")
# the indicators continued from a kept state (``kernels.states``), by its values per row
STATEFUL = {"rsi": 2, "macd": 3, "adx": 4, "supertrend": 5}
_FORGET = 47.0  # e**-47 ~ 4e-21: a seed's weight below float64's relative rounding unit


def _forget(decay: float) -> int:
    """Bars after which a first-order recursion with factor ``decay`` has forgotten its seed."""
    return 0 if decay <= 0.0 else math.ceil(_FORGET / -math.log(decay))


def memory(spec: IndicatorSpec) -> int:
    """Bars before the first new row that a recompute must include so the new rows equal a
    full recompute's (seeded indicators: 1, the seam bar)."""
    name, p = spec.name, spec.params
    if name in SEEDED:
        return 1
    if name in ("sma", "bbands", "fib"):
        return int(p[0])
    if name in ("pivots", "vwap"):
        return 1  # daily and longer bars; intraday sessions: see sessions_needed
    if name == "rsi":
        return int(p[0]) + _forget(1.0 - 1.0 / p[0])
    if name == "macd":
        return int(p[1] + p[2]) + _forget(1.0 - 2.0 / (p[1] + 1))
    if name == "adx":
        return int(2 * p[0]) + _forget(1.0 - 1.0 / p[0])
    if name == "supertrend":
        return int(p[0]) + _forget(1.0 - 1.0 / p[0])
    raise ValueError(f"no resume rule for {spec}")


def window(indicators: Iterable[str | IndicatorSpec] | str | None = None) -> int:
    """Bars before the first new row a resumed compute of ``indicators`` needs."""
    return max((memory(s) for s in resolve(indicators)), default=1)


def sessions_needed(indicators: Iterable[str | IndicatorSpec] | str | None = None) -> bool:
    """Whether ``indicators`` hold session indicators (on intraday bars they need the
    previous and current sessions whole)."""
    return any(s.name in ("vwap", "pivots") for s in resolve(indicators))


def seeded(indicators: Iterable[str | IndicatorSpec] | str | None = None) -> list[IndicatorSpec]:
    """The specs of ``indicators`` resumed from their stored value."""
    return [s for s in resolve(indicators) if s.name in SEEDED]


def resume_into(
    spec: IndicatorSpec,
    bars: dict[str, np.ndarray],
    starts: np.ndarray,
    stops: np.ndarray,
    seeds: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write rows ``starts[j]:stops[j]`` of the seeded ``spec``'s column into ``out`` from the
    stored values ``seeds`` one row before each; ``bars`` holds float64 ``close`` (and
    ``high``, ``low``, ``volume`` as the indicator needs), all arrays contiguous and writable.
    Runs the loops compiled ahead of time when they are built (``kernels.aot``: a resume
    touches only the new rows, far less work than loading numba), else numba's."""
    if spec.name not in SEEDED:
        raise ValueError(f"{spec} is not resumed from a stored value")
    fn = aot.entry(f"{spec.name}_resume", 0)
    if spec.name == "ema":
        fn(bars["close"], starts, stops, seeds, int(spec.params[0]), out)
    elif spec.name == "atr":
        fn(bars["high"], bars["low"], bars["close"], starts, stops, seeds, int(spec.params[0]), out)
    else:
        fn(bars["close"], bars["volume"], starts, stops, seeds, out)


def stateful(indicators: Iterable[str | IndicatorSpec] | str | None = None) -> list[IndicatorSpec]:
    """The specs of ``indicators`` continued from a kept state when one is kept."""
    return [s for s in resolve(indicators) if s.name in STATEFUL]


def width(spec: IndicatorSpec) -> int:
    """Values in one row of ``spec``'s state (``kernels.states``)."""
    return STATEFUL[spec.name]


def states_into(
    spec: IndicatorSpec,
    bars: dict[str, np.ndarray],
    lo: np.ndarray,
    hi: np.ndarray,
    keep: np.ndarray,
    base: np.ndarray,
    states: np.ndarray,
) -> None:
    """``spec`` computed over each series ``lo[j]:hi[j]`` of ``bars`` (float64 ``close``, and
    ``high`` and ``low`` as it needs), the state after each of its rows from ``keep[j]`` on
    written to ``states[base[j] + row - keep[j]]`` (NaN where it has none yet); ``states``
    holds :func:`width` columns. Index arrays int64, all contiguous, outputs writable."""
    fn = aot.entry(f"{spec.name}_states", int(states.shape[0]))
    fn(*(bars[c] for c in spec.inputs), lo, hi, keep, base, *spec.params, states)


def continue_into(
    spec: IndicatorSpec,
    bars: dict[str, np.ndarray],
    starts: np.ndarray,
    stops: np.ndarray,
    seeds: np.ndarray,
    out: dict[str, np.ndarray],
    states: np.ndarray,
) -> None:
    """Rows ``starts[j]:stops[j]`` of ``spec``'s columns (``out``, by name) continued from the
    kept states ``seeds[j]`` one row before each (its bar still in ``bars``), each row's state
    into the same row of ``states``."""
    fn = aot.entry(f"{spec.name}_continue", 0)
    cols = [out[c] for c in spec.columns]
    fn(*(bars[c] for c in spec.inputs), starts, stops, seeds, *spec.params, *cols, states)


__all__ = [
    "SEEDED",
    "STATEFUL",
    "continue_into",
    "memory",
    "resume_into",
    "seeded",
    "sessions_needed",
    "stateful",
    "states_into",
    "width",
    "window",
]
