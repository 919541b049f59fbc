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

import llvmlite.binding as llvm
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


llvm.initialize_native_asmparser()  # the inline assembly of ``put`` and ``store_fence``


@intrinsic
def put(typingctx, arr, i, v):
    """``arr[i] = v`` as a non-temporal store (``movnti``): the value goes to memory without
    its cache line being read first. A call's output block is far larger than the caches and
    the kernels write each value once without reading it back, so an ordinary store makes the
    core fetch every line only to overwrite it: twice the memory traffic.

    Used in the four-series loops of the one-output kernels (SMA, EMA, ATR, OBV; one thread,
    2,000 x 2,520 bars, medians of 7: 5.2-5.8 ms against 6.4-7.7 ms each, ATR 10.1-10.5
    against 11.5-12.1; the 8 TA-Lib indicators on two threads: 101-103 ms CPU against
    104-108). Not in their one-series loops: a single 1,000,000-bar series took 7% more CPU
    with them (31.5-33 ms against 29-31, the 8 indicators). Not by the three-output kernels:
    MACD, BBANDS and ADX took 10-35% longer, probably because each store first moves the value
    to an integer register (a port their arithmetic needs) and, four series interleaved, twelve
    output streams outnumber the core's write-combining buffers. ``run_plan`` issues
    :func:`store_fence` before other threads read the values. No bounds check (as numba's
    indexing)."""
    sig = types.void(arr, i, v)

    def codegen(context, builder, signature, args):
        arrty, ity, vty = signature.args
        ary = context.make_array(arrty)(context, builder, args[0])
        idx = context.cast(builder, args[1], ity, types.intp)
        val = context.cast(builder, args[2], vty, types.float64)
        ptr = cgutils.get_item_pointer(context, builder, arrty, ary, [idx], wraparound=False)
        i64 = ir.IntType(64)
        # LLVM keeps ``!nontemporal`` on a scalar double store but emits an ordinary one (x86
        # has no non-temporal scalar double store); the integer ``movnti`` is the only form
        fnty = ir.FunctionType(ir.VoidType(), [i64, ptr.type])
        asm = ir.InlineAsm(fnty, "movntiq $0, ($1)", "r,r", side_effect=True)
        builder.call(asm, [builder.bitcast(val, i64), ptr])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def store_fence(typingctx):
    """``sfence``: the non-temporal stores of :func:`put` before it are globally visible."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [])
        builder.call(ir.InlineAsm(fnty, "sfence", "~{memory}", side_effect=True), [])
        return context.get_dummy_value()

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
