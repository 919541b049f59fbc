"""The driver's plan, without numba: op codes, symbol groups of four and tasks per group.

Shared by the numba driver (``kernels.driver``) and the adapter, which builds a call's plan
before it knows whether numba's parallel driver or the one compiled ahead of time
(``kernels.aot``) runs it.
"""

from __future__ import annotations

import numpy as np

# Fibonacci retracement levels in thousandths, in the order of ``fib``'s output rows
FIB_LEVELS = (0, 236, 382, 500, 618, 786, 1000)
SMA, EMA, RSI, MACD, BBANDS, ATR, ADX, SUPERTREND, OBV, VWAP, PIVOTS, FIB, ADX_ATR = range(1, 14)
CODES = {
    "sma": SMA,
    "ema": EMA,
    "rsi": RSI,
    "macd": MACD,
    "bbands": BBANDS,
    "atr": ATR,
    "adx": ADX,
    "supertrend": SUPERTREND,
    "obv": OBV,
    "vwap": VWAP,
    "pivots": PIVOTS,
    "fib": FIB,
}
SESSION_CODES = (VWAP, PIVOTS)


def lane_groups(offsets: np.ndarray) -> np.ndarray:
    """Symbols in groups of four of similar length, longest first (``-1`` pads the last group).

    The ``*_lanes`` kernels interleave four series over their common length, so a group holds
    symbols of similar length; longest first lets the dynamic scheduler of ``run_plan``'s
    parallel loop balance the threads (the last, short tasks fill the gaps).
    """
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")
    n = order.shape[0]
    groups = np.full(((n + 3) // 4, 4), -1, dtype=np.int64)
    groups.ravel()[:n] = order
    return groups


def split_ops(n_groups: int, n_ops: int, n_threads: int) -> int:
    """Tasks per group for ``run_plan``: 1 (a task runs every op on its group) when there are
    enough groups to keep the threads busy, else ``n_ops`` (one task per op: a single long
    series still uses every core)."""
    return 1 if n_groups >= 4 * n_threads or n_ops <= 1 else n_ops


__all__ = ["ADX_ATR", "FIB_LEVELS", "CODES", "SESSION_CODES", "lane_groups", "split_ops"]
