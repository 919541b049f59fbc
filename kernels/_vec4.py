"""Four float64 lanes in one LLVM vector register: the ``Vec4`` numba type and its IEEE ops.

``v4(a, b, c, d)`` packs four floats into a ``<4 x double>``, ``lane(v, j)`` reads one back;
the arithmetic intrinsics are single vector instructions (``vdivpd``, ``vfmadd...pd`` on
``ymm``). Every operation is the same correctly rounded IEEE operation as on a scalar and the
compares are those of Python (False for NaN but ``!=``), so four series stepped side by side in a
``Vec4`` give the bits of four scalar runs -- in about the time of one for a recurrence whose
step is long (ADX, Bollinger Bands). A loop-carried ``Vec4`` stays in a register.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from marketlake.kernels._common import STEP, ix

_V = ir.VectorType(ir.DoubleType(), 4)
_I32 = ir.IntType(32)


class Vec4Type(types.Type):
    """Four float64 lanes."""

    def __init__(self) -> None:
        super().__init__(name="Vec4")


vec4 = Vec4Type()


@register_model(Vec4Type)
class _Vec4Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V)


@intrinsic
def v4(typingctx, a, b, c, d):
    """The lanes ``(a, b, c, d)``."""

    def codegen(ctx, bd, sig, args):
        vec = ir.Constant(_V, ir.Undefined)
        for j, (v, t) in enumerate(zip(args, sig.args, strict=True)):
            vec = bd.insert_element(vec, ctx.cast(bd, v, t, types.float64), ir.Constant(_I32, j))
        return vec

    return vec4(a, b, c, d), codegen


@intrinsic
def splat(typingctx, a):
    """``a`` in every lane."""

    def codegen(ctx, bd, sig, args):
        x = ctx.cast(bd, args[0], sig.args[0], types.float64)
        vec = ir.Constant(_V, ir.Undefined)
        for j in range(4):
            vec = bd.insert_element(vec, x, ir.Constant(_I32, j))
        return vec

    return vec4(a), codegen


@intrinsic
def lane(typingctx, v, j):
    """Lane ``j`` of ``v``."""
    if v != vec4:
        return None

    def codegen(ctx, bd, sig, args):
        return bd.extract_element(args[0], ctx.cast(bd, args[1], sig.args[1], types.int32))

    return types.float64(v, j), codegen


def _binary(name):
    def impl(typingctx, a, b):
        if a != vec4 or b != vec4:
            return None
        return vec4(a, b), lambda ctx, bd, sig, args: getattr(bd, name)(*args)

    return intrinsic(impl)


vadd = _binary("fadd")
vsub = _binary("fsub")
vmul = _binary("fmul")
vdiv = _binary("fdiv")


def _fn(bd, name, nargs):
    return cgutils.get_or_insert_function(bd.module, ir.FunctionType(_V, [_V] * nargs), name)


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` per lane, one rounding (``kernels._common.fma``)."""
    if any(t != vec4 for t in (a, b, c)):
        return None
    return vec4(a, b, c), lambda ctx, bd, sig, args: bd.call(_fn(bd, "llvm.fma.v4f64", 3), args)


@intrinsic
def vabs(typingctx, a):
    """``abs(a)`` per lane."""
    if a != vec4:
        return None
    return vec4(a), lambda ctx, bd, sig, args: bd.call(_fn(bd, "llvm.fabs.v4f64", 1), args)


@intrinsic
def vneg(typingctx, a):
    """``-a`` per lane (the sign flipped, as the scalar negation)."""
    if a != vec4:
        return None
    return vec4(a), lambda ctx, bd, sig, args: bd.fneg(args[0])


def _select(op, ordered=True):
    """``x if a <op> b else y`` per lane; an ordered compare is False where a lane is NaN,
    an unordered one True."""

    def impl(typingctx, a, b, x, y):
        if any(t != vec4 for t in (a, b, x, y)):
            return None

        def codegen(ctx, bd, sig, args):
            va, vb, vx, vy = args
            compare = bd.fcmp_ordered if ordered else bd.fcmp_unordered
            return bd.select(compare(op, va, vb), vx, vy)

        return vec4(a, b, x, y), codegen

    return intrinsic(impl)


vsel_gt = _select(">")  # x if a > b else y, per lane (False for NaN)
vsel_lt = _select("<")  # x if a < b else y, per lane (False for NaN)


@intrinsic
def vsqrt(typingctx, a):
    """``sqrt(a)`` per lane (NaN for a negative lane, as ``math.sqrt`` in the kernels)."""
    if a != vec4:
        return None
    return vec4(a), lambda ctx, bd, sig, args: bd.call(_fn(bd, "llvm.sqrt.v4f64", 1), args)


vsel_ne = _select("!=", ordered=False)  # x if a != b else y (True for NaN, as Python)


def _mask(op):
    def impl(typingctx, a, b):
        if a != vec4 or b != vec4:
            return None

        def codegen(ctx, bd, sig, args):
            bits = bd.bitcast(bd.fcmp_ordered(op, *args), ir.IntType(4))
            return bd.zext(bits, ir.IntType(64))

        return types.int64(a, b), codegen

    return intrinsic(impl)


vmask_lt = _mask("<")  # bit j set where lane j of a < b (not for NaN)
vmask_gt = _mask(">")  # bit j set where lane j of a > b (not for NaN)


@intrinsic
def with_lane(typingctx, v, j, x):
    """``v`` with lane ``j`` replaced by ``x``."""
    if v != vec4:
        return None

    def codegen(ctx, bd, sig, args):
        j32 = ctx.cast(bd, args[1], sig.args[1], types.int32)
        return bd.insert_element(args[0], ctx.cast(bd, args[2], sig.args[2], types.float64), j32)

    return vec4(v, j, x), codegen


@njit(**STEP)
def row4(a, i):
    """Row ``i`` of a ``(k, 4)`` array (one value per series) as lanes."""
    return v4(a[i, 0], a[i, 1], a[i, 2], a[i, 3])


@njit(**STEP)
def vdiv_rn(a, b, inv_b):
    """:func:`kernels._common.div_rn` per lane: ``a / b`` correctly rounded from
    ``inv_b = 1 / b``."""
    q = vmul(a, inv_b)
    return vfma(vfma(vneg(q), b, a), inv_b, q)


@njit(**STEP)
def gather4(a, i0, i1, i2, i3):
    """``a`` at one row of each of four series, as lanes."""
    return v4(a[ix(i0)], a[ix(i1)], a[ix(i2)], a[ix(i3)])


@njit(**STEP)
def scatter4(out, i0, i1, i2, i3, v):
    """The lanes of ``v`` into ``out`` at one row of each of four series."""
    out[ix(i0)] = lane(v, 0)
    out[ix(i1)] = lane(v, 1)
    out[ix(i2)] = lane(v, 2)
    out[ix(i3)] = lane(v, 3)
