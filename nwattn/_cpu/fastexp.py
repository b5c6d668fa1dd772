"""A vectorisable ``exp`` over a row of scores.

LLVM does not vectorise calls to libm's scalar ``exp`` and the llvmlite
wheels carry no SVML, so the softmax would spend most of its time in scalar
calls. Here ``exp`` is computed as range reduction ``x = k ln 2 + r``, a
polynomial for ``exp(r)`` on ``|r| <= ln(2)/2`` and the factor ``2**k``
assembled from exponent bits: straight-line arithmetic that LLVM turns into
SIMD code. The polynomials are truncated Taylor series of high enough degree
that the truncation error is below the dtype's rounding (at most 3 ulp in
float64, 2 in float32, rounding of the Horner steps included).

The module also holds the other scalar operations the inner loops need in a
form LLVM vectorises: a logarithm built the same way (exponent bits and a
polynomial) for the compact kernels' log-weights, and a maximum that may
assume its operands are not NaN, for the running maximum of a tile.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .._config import FASTMATH


@intrinsic
def _bits_to_f64(typingctx, bits):
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def _bits_to_f32(typingctx, bits):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def max_no_nan(typingctx, a, b):
    """``max(a, b)`` of two floats of one type that are never NaN.

    LLVM vectorises a running maximum only when it may assume no NaN, and
    Numba's ``max`` does not say so. Scores are never NaN (inputs are
    validated finite); ``-inf`` is allowed and handled as usual. The flag
    is set on this one operation, not on the whole function.
    """
    if a != b or not isinstance(a, types.Float):
        return None
    sig = a(a, b)

    def codegen(context, builder, signature, args):
        ty = args[0].type
        name = "llvm.maxnum.f64" if isinstance(ty, ir.DoubleType) else "llvm.maxnum.f32"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty, ty]), name)
        return builder.call(fn, args, fastmath=("nnan", "nsz"))

    return sig, codegen


@intrinsic
def _f64_to_bits(typingctx, x):
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def _f32_to_bits(typingctx, x):
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


# float64 constants. ln 2 is split in a high part exact in 32 bits and a
# low part, so that k * LN2_HI is exact (Cody-Waite reduction).
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_F64_CLAMP = -746.0
_F64_ZERO_BELOW = -745.2  # exp(x) rounds to 0.0 below this

# float32 constants, frozen as float32 globals so arithmetic stays float32.
_LOG2E_F = np.float32(1.4426950408889634)
_LN2_HI_F = np.float32(0.693359375)
_LN2_LO_F = np.float32(-2.12194440e-4)
_F32_CLAMP = np.float32(-105.0)
_F32_ZERO_BELOW = np.float32(-104.0)
_HALF_F = np.float32(0.5)
_ZERO_F = np.float32(0.0)
_C = [np.float32(1.0 / f) for f in (1, 1, 2, 6, 24, 120, 720, 5040)]
_C0F, _C1F, _C2F, _C3F, _C4F, _C5F, _C6F, _C7F = _C
# int32 constants: a Python int literal would widen the exponent arithmetic
# to int64 and halve the SIMD width of the float32 loop.
_ONE_I = np.int32(1)
_BIAS_I = np.int32(127)
_SHIFT_I = np.int32(23)


@njit(inline="always", fastmath=FASTMATH)
def _exp_f64(x):
    v = max(x, _F64_CLAMP)
    k = np.floor(v * _LOG2E + 0.5)
    r = (v - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (
        1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (
            1.0 / 362880 + r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (
                1.0 / 479001600))))))))))))
    ki = np.int64(k)
    # Two factors so that results in the subnormal range are still right.
    k1 = ki >> 1
    e = p * _bits_to_f64((k1 + 1023) << 52) * _bits_to_f64((ki - k1 + 1023) << 52)
    return e if x >= _F64_ZERO_BELOW else 0.0


# Thresholds below which exp(x) is subnormal (log of the smallest normal).
_F64_NORMAL_BELOW = -708.3964
_F32_NORMAL_BELOW = np.float32(-87.3365)


@njit(inline="always", fastmath=FASTMATH)
def _weight_f64(x):
    """``exp(x)``, flushed to 0 where the result would be subnormal.

    For softmax weights against the running maximum: the largest weight of
    a query is 1, so a weight below 2**-1022 cannot change any sum, and one
    exponent factor then suffices instead of two.
    """
    v = max(x, _F64_NORMAL_BELOW)
    k = np.floor(v * _LOG2E + 0.5)
    r = (v - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (
        1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (
            1.0 / 362880 + r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (
                1.0 / 479001600))))))))))))
    e = p * _bits_to_f64((np.int64(k) + 1023) << 52)
    return e if x >= _F64_NORMAL_BELOW else 0.0


@njit(inline="always", fastmath=FASTMATH)
def _weight_f32(x):
    """float32 :func:`_weight_f64`."""
    v = max(x, _F32_NORMAL_BELOW)
    k = np.floor(v * _LOG2E_F + _HALF_F)
    r = (v - k * _LN2_HI_F) - k * _LN2_LO_F
    p = _C0F + r * (_C1F + r * (_C2F + r * (_C3F + r * (_C4F + r * (
        _C5F + r * (_C6F + r * _C7F))))))
    e = p * _bits_to_f32(np.int32((np.int32(k) + _BIAS_I) << _SHIFT_I))
    return e if x >= _F32_NORMAL_BELOW else _ZERO_F


@njit(inline="always", fastmath=FASTMATH)
def _exp_f32(x):
    v = max(x, _F32_CLAMP)
    k = np.floor(v * _LOG2E_F + _HALF_F)
    r = (v - k * _LN2_HI_F) - k * _LN2_LO_F
    p = _C0F + r * (_C1F + r * (_C2F + r * (_C3F + r * (_C4F + r * (
        _C5F + r * (_C6F + r * _C7F))))))
    ki = np.int32(k)
    k1 = ki >> _ONE_I
    e = (p * _bits_to_f32(np.int32((k1 + _BIAS_I) << _SHIFT_I))
         * _bits_to_f32(np.int32((ki - k1 + _BIAS_I) << _SHIFT_I)))
    return e if x >= _F32_ZERO_BELOW else _ZERO_F


def like(arr, x):
    """``x`` converted to the dtype of ``arr``.

    A float64 literal in a float32 loop promotes the whole loop to float64;
    constants and accumulators go through this to stay in the array's dtype.
    """
    return x


@overload(like, inline="always")
def _like_impl(arr, x):
    if arr.dtype == types.float32:
        return lambda arr, x: np.float32(x)
    return lambda arr, x: np.float64(x)


def exp_shifted(row, shift, n):
    """Replace ``row[:n]`` by ``exp(row[:n] - shift)``; return the sum.

    ``-inf`` entries become exactly 0. ``shift`` must be finite.
    """
    total = 0.0
    for j in range(n):
        row[j] = np.exp(row[j] - shift)
        total += row[j]
    return total


@overload(exp_shifted, inline="always", jit_options={"fastmath": FASTMATH})
def _exp_shifted_impl(row, shift, n):
    if row.dtype == types.float32:

        def impl(row, shift, n):
            s = np.float32(shift)
            total = _ZERO_F
            for j in range(n):
                e = _exp_f32(row[j] - s)
                row[j] = e
                total += e
            return total

        return impl

    def impl(row, shift, n):
        total = 0.0
        for j in range(n):
            e = _exp_f64(row[j] - shift)
            row[j] = e
            total += e
        return total

    return impl


def weights_dot(row, shift, n, v):
    """Replace ``row[:n]`` by the softmax weights ``exp(row[:n] - shift)``.

    Returns ``(sum of the weights, weights . v[:n])``: one pass computes
    the weights of a tile, the normaliser and the first weighted sum.
    Weights below the smallest normal number become 0 (they cannot change
    sums whose largest term is 1). ``shift`` must be finite and at least
    the largest entry.
    """
    total = 0.0
    dot = 0.0
    for j in range(n):
        row[j] = np.exp(row[j] - shift)
        total += row[j]
        dot += row[j] * v[j]
    return total, dot


@overload(weights_dot, inline="always", jit_options={"fastmath": FASTMATH})
def _weights_dot_impl(row, shift, n, v):
    if row.dtype == types.float32:

        def impl(row, shift, n, v):
            s = np.float32(shift)
            total = _ZERO_F
            dot = _ZERO_F
            for j in range(n):
                e = _weight_f32(row[j] - s)
                row[j] = e
                total += e
                dot += e * v[j]
            return total, dot

        return impl

    def impl(row, shift, n, v):
        total = 0.0
        dot = 0.0
        for j in range(n):
            e = _weight_f64(row[j] - shift)
            row[j] = e
            total += e
            dot += e * v[j]
        return total, dot

    return impl


# log: x = 2**e * f with f in [sqrt(1/2), sqrt(2)), log f = 2 atanh(s) with
# s = (f - 1) / (f + 1), |s| < 0.172, and atanh(s) / s a series in s**2
# truncated where its next term is below the dtype's rounding.
_SQRT_HALF_BITS = np.int64(0x3FE6A09E667F3BCD)  # bits of sqrt(1/2)
_MANT_MASK = np.int64((1 << 52) - 1)
_ONE_BITS = np.int64(1023 << 52)
_SQRT_HALF_BITS_F = np.int32(0x3F3504F3)
_MANT_MASK_F = np.int32((1 << 23) - 1)
_ONE_BITS_F = np.int32(127 << 23)
_ONE_F = np.float32(1.0)
_TWO_F = np.float32(2.0)
_LN2_F = np.float32(0.6931471805599453)
_A = [np.float32(1.0 / k) for k in (3, 5, 7, 9, 11)]
_A3F, _A5F, _A7F, _A9F, _A11F = _A


@njit(inline="always", fastmath=FASTMATH)
def log_pos_f64(x):
    """``log(x)`` for a positive normal float64 ``x``, vectorisable.

    Accurate to a few units in the last place of the result's magnitude
    (absolute error below 3e-16 near ``x = 1``).
    """
    # Offsetting the bits by those of 1 - sqrt(1/2) before splitting them
    # puts the mantissa in [sqrt(1/2), sqrt(2)) without a branch.
    ix = _f64_to_bits(x) + (_ONE_BITS - _SQRT_HALF_BITS)
    e = (ix >> 52) - 1023
    f = _bits_to_f64((ix & _MANT_MASK) + _SQRT_HALF_BITS)
    s = (f - 1.0) / (f + 1.0)
    z = s * s
    q = 1.0 / 3 + z * (1.0 / 5 + z * (1.0 / 7 + z * (1.0 / 9 + z * (1.0 / 11 + z * (
        1.0 / 13 + z * (1.0 / 15 + z * (1.0 / 17 + z * (1.0 / 19 + z * (
            1.0 / 21 + z * (1.0 / 23))))))))))
    k = np.float64(e)
    return (k * _LN2_HI + (2.0 * s + (k * _LN2_LO + 2.0 * s * z * q)))


@njit(inline="always", fastmath=FASTMATH)
def log_pos_f32(x):
    """float32 :func:`log_pos_f64`."""
    ix = _f32_to_bits(x) + (_ONE_BITS_F - _SQRT_HALF_BITS_F)
    e = (ix >> _SHIFT_I) - _BIAS_I
    f = _bits_to_f32((ix & _MANT_MASK_F) + _SQRT_HALF_BITS_F)
    s = (f - _ONE_F) / (f + _ONE_F)
    z = s * s
    q = _A3F + z * (_A5F + z * (_A7F + z * (_A9F + z * _A11F)))
    return np.float32(e) * _LN2_F + (_TWO_F * s + _TWO_F * s * z * q)


def log_pos(x):
    """``log(x)`` for a positive normal ``x`` in the dtype of ``x``, vectorisable."""
    return np.log(x)


@overload(log_pos, inline="always", jit_options={"fastmath": FASTMATH})
def _log_pos_impl(x):
    if x == types.float32:
        return lambda x: log_pos_f32(x)
    return lambda x: log_pos_f64(x)
