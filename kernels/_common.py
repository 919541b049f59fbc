"""Helpers shared by the kernels: TA-Lib's float tests, ``fma`` and the TA-Lib wrapper's NaN skip.

The TA-Lib Python wrapper (``talib._func``) does not hand the whole array to the C function:
it first skips the *leading* rows where any input is NaN (``check_begidx1/2/3``; when every row
has a NaN it starts at the last row) and computes from there. NaNs further inside the series go
straight into the C arithmetic. The ``first_valid*`` helpers reproduce that skip so that each
kernel, run on the same slice, yields exactly what ``talib.<FUNC>`` yields.

The reference is the TA-Lib C library the ``talib`` wrapper in this environment links (0.8.x):
its zero test uses ``TA_EPSILON = 1e-14`` and some recurrences use a fused multiply-add, which
``fma`` reproduces (LLVM's ``llvm.fma.f64``: one rounding, on any CPU).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

NAN = np.nan
TA_EPSILON = 1e-14
# numba options of every kernel: cached machine code, GIL released, and numpy's float error
# model (x / 0 gives inf/NaN like C instead of raising and without a zero check per division)
JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
# per-row helpers are inlined at numba level: LLVM would not always inline them, and a real
# call (arrays are passed as multi-word structs, tuples returned through memory) costs more
# than the step itself
STEP = {**JIT, "inline": "always"}


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` with a single rounding (C's ``fma``)."""
    sig = types.float64(a, b, c)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        vals = [
            context.cast(builder, v, t, types.float64)
            for v, t in zip(args, signature.args, strict=True)
        ]
        fnty = ir.FunctionType(d, [d, d, d])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f64")
        return builder.call(fn, vals)

    return sig, codegen


@njit(**STEP)
def div_rn(a, b, inv_b):
    """``a / b`` correctly rounded -- bit-identical to the division -- from ``inv_b = 1.0 / b``.

    Markstein's correction (q = a*y, r = fma(-q, b, a), q' = fma(r, y, q) is exactly RN(a/b) when
    y = RN(1/b) and nothing under/overflows; Markstein 1990, Muller et al., *Handbook of
    Floating-Point Arithmetic*, ch. 4). A multiply and two FMAs instead of a divide: several
    times the throughput, so dividing by a period costs no more than multiplying by it.
    """
    q = a * inv_b
    r = fma(-q, b, a)
    return fma(r, inv_b, q)


@njit(**STEP)
def ix(i):
    """``i`` as an unsigned array index: numba then skips the negative-index wraparound it
    adds to every signed index (a shift, an and and an add per access; in steps of a few
    instructions that was up to a fifth of the time)."""
    return np.uint64(i)


@njit(**STEP)
def is_zero(v):
    """TA-Lib's ``TA_IS_ZERO``: ``-1e-14 < v < 1e-14`` (False for NaN)."""
    return -TA_EPSILON < v and v < TA_EPSILON


@njit(**JIT)
def first_valid(a):
    """Index of the first non-NaN value of ``a`` (``len(a) - 1`` when none, -1 when empty)."""
    n = a.shape[0]
    for i in range(n):
        if a[i] == a[i]:
            return i
    return n - 1


@njit(**JIT)
def first_valid2(a, b):
    """First row where neither ``a`` nor ``b`` is NaN (TA-Lib wrapper's ``check_begidx2``)."""
    n = a.shape[0]
    for i in range(n):
        if a[i] == a[i] and b[i] == b[i]:
            return i
    return n - 1


@njit(**JIT)
def first_valid3(a, b, c):
    """First row where none of ``a``, ``b``, ``c`` is NaN (``check_begidx3``)."""
    n = a.shape[0]
    for i in range(n):
        if a[i] == a[i] and b[i] == b[i] and c[i] == c[i]:
            return i
    return n - 1


@njit(**JIT)
def fill_nan(out, start, stop):
    """``out[start:stop] = NaN`` (bounds clipped to the array)."""
    stop = min(stop, out.shape[0])
    for i in range(max(start, 0), stop):
        out[i] = NAN


@njit(**STEP)
def true_range(high, low, prev_close):
    """TA-Lib's true range with its exact comparison order (a NaN previous close is ignored)."""
    tr = high - low
    t = abs(high - prev_close)
    if t > tr:
        tr = t
    t = abs(low - prev_close)
    if t > tr:
        tr = t
    return tr
