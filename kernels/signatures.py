"""The kernels' entry points and the argument types their callers pass, without numba.

One example call per signature: ``kernels._cache`` compiles them into numba's cache at build
time, ``kernels.aot`` compiles the ones a small call needs ahead of time and checks every call
of its module against them. The argument types mirror the callers' exactly (read-only inputs,
writable outputs, C-contiguous): for numba another layout or writability would be another
signature, compiled again on first use; the module compiled ahead of time has no other.
``tests/kernels`` checks the two stay in step.
"""

from __future__ import annotations

import numpy as np

from marketlake.kernels.plan import SMA

# the modules holding the entry points, by the name an example call gives
MODULES = {
    "ema_resume": "seeds",
    "atr_resume": "seeds",
    "obv_resume": "seeds",
    "rsi_states": "states",
    "macd_states": "states",
    "adx_states": "states",
    "supertrend_states": "states",
    "rsi_continue": "states",
    "macd_continue": "states",
    "adx_continue": "states",
    "supertrend_continue": "states",
    "period_order": "layout",
    "take_valid": "layout",
    "take": "layout",
    "scan_string_views": "driver",
    "scan_runs": "driver",
    "run_gather_index": "driver",
    "run_plan": "driver",
}


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def example_calls() -> list[tuple[str, tuple]]:
    """``(function name, args)`` pairs covering every signature ``kernels.compute``, the
    incremental compute's resumed indicators (``kernels.resume``), a full recompute's output
    layout (``kernels.layout``) and its run gathers use."""
    n = 4
    ts = _ro(np.arange(n, dtype=np.int64))
    price = _ro(np.linspace(1.0, 2.0, n))
    views = np.zeros(n * 16, np.uint8)
    views[0::16] = 1  # every string one byte long, all equal: one run
    buf = _ro(views).data
    ops = np.array([[SMA, 0, 2, 0, 0]], np.int64)
    one = np.zeros(1, np.int64)
    # the incremental compute's resumed indicators: writable copies, as it passes them
    x = np.linspace(1.0, 2.0, n)
    rows = (np.array([1], np.int64), np.array([n], np.int64), np.ones(1, np.float64))
    order = _ro(np.arange(n, dtype=np.int64))
    # series spans (lo, hi, first row kept, its row in the states) and continued rows
    spans = tuple(np.array([v], np.int64) for v in (0, n, n - 1, 0))
    steps = (np.array([1], np.int64), np.array([n], np.int64))

    def states(width: int) -> np.ndarray:
        return np.zeros((n, width), np.float64)

    return [
        ("ema_resume", (x, *rows, 2, x.copy())),
        ("atr_resume", (x, x, x, *rows, 2, x.copy())),
        ("obv_resume", (x, x, *rows, x.copy())),
        # the states kept for the next resume (kernels.states), and rows continued from them
        ("rsi_states", (x, *spans, 2, states(2))),
        ("macd_states", (x, *spans, 2, 3, 2, states(3))),
        ("adx_states", (x, x, x, *spans, 2, states(4))),
        ("supertrend_states", (x, x, x, *spans, 2, 3.0, states(5))),
        ("rsi_continue", (x, *steps, states(2), 2, x.copy(), states(2))),
        ("macd_continue", (x, *steps, states(3), 2, 3, 2, x.copy(), x.copy(), x.copy(), states(3))),
        ("adx_continue", (x, x, x, *steps, states(4), 2, x.copy(), x.copy(), x.copy(), states(4))),
        (
            "supertrend_continue",
            (x, x, x, *steps, states(5), 2, 3.0, x.copy(), x.copy(), states(5)),
        ),
        # a full recompute's layout of the output block (read-only inputs, writable outputs)
        ("period_order", (ts, 86_400_000_000, False)),
        (
            "take_valid",
            (_ro(np.zeros((2, n))), order, np.empty((2, n)), np.empty((2, 1), np.uint8)),
        ),
        ("take", (ts, order, np.empty(n, np.int64))),
        ("take", (_ro(np.zeros(n, np.int32)), order, np.empty(n, np.int32))),
        (
            "scan_string_views",
            (
                np.frombuffer(buf, np.int64).reshape(-1, 2),
                np.frombuffer(buf, np.int32).reshape(-1, 4),
                np.frombuffer(buf, np.uint8).reshape(-1, 16),
                ts,
            ),
        ),
        ("scan_runs", (_ro(np.zeros(n, np.uint32)), ts)),
        # a sort by runs: their starts and lengths (read only)
        ("run_gather_index", (_ro(np.zeros(1, np.int64)), _ro(np.full(1, n, np.int64)))),
        (
            "run_plan",
            (
                np.array([0, n], np.int64),
                np.array([[0, -1, -1, -1]], np.int64),
                price,
                price,
                price,
                price,
                ts,
                one.copy(),
                np.array([0, 1], np.int64),
                np.array([np.iinfo(np.int64).min], np.int64),
                one.copy(),
                86_400_000_000,
                ops,
                np.zeros(1, np.float64),
                np.empty((1, n), np.float64),
                1,
            ),
        ),
    ]


__all__ = ["MODULES", "example_calls"]
