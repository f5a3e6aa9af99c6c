"""Bit-exact ap_fixed conversions (double -> fixed, fixed -> fixed, fixed -> double) in int64 numba kernels.

The contract is the C++ of hls4ml's ap_types headers (`ap_fixed<...> y = x;`), checked by
tests/test_arith_vs_ap_types.py against g++: the exact value is rounded first, then overflow is applied.
ap_fixed behaviours reproduced on purpose: SAT_SYM turns the most negative code into -max even when nothing
overflowed; WRAP_SM on overflow complements the wrapped code when its sign differs from the source bit just
above the destination's sign bit; a subnormal double is read with a hidden 1 bit and exponent -1023.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from emulator.fixed_type import OVERFLOW_MODES, ROUNDING_MODES, FixedType, UnsupportedType

__all__ = [
    "MAX_WIDTH", "ROUNDING_ID", "OVERFLOW_ID", "FixedSpec", "type_spec", "cast_raw", "cast",
    "quantize", "requantize", "to_float",
    "Q_TRN", "Q_TRN_ZERO", "Q_RND", "Q_RND_ZERO", "Q_RND_INF", "Q_RND_MIN_INF", "Q_RND_CONV",
    "O_WRAP", "O_SAT", "O_SAT_ZERO", "O_SAT_SYM", "O_WRAP_SM",
]

# Mode ids, in the order of emulator.fixed_type.ROUNDING_MODES / OVERFLOW_MODES.
Q_TRN, Q_TRN_ZERO, Q_RND, Q_RND_ZERO, Q_RND_INF, Q_RND_MIN_INF, Q_RND_CONV = range(7)
O_WRAP, O_SAT, O_SAT_ZERO, O_SAT_SYM, O_WRAP_SM = range(5)
ROUNDING_ID = {name: i for i, name in enumerate(ROUNDING_MODES)}
OVERFLOW_ID = {name: i for i, name in enumerate(OVERFLOW_MODES)}
assert ROUNDING_ID["RND_CONV"] == Q_RND_CONV and OVERFLOW_ID["WRAP_SM"] == O_WRAP_SM

MAX_WIDTH = 62
"""Widest supported type: codes, and codes plus one rounding step, always fit in int64."""
_MAX_ABS_FRAC = 1 << 30  # keeps value_frac - frac far from int64 overflow

_LOW63 = (1 << 63) - 1
_MANTISSA = (1 << 52) - 1
_HIDDEN_BIT = 1 << 52


class FixedSpec(NamedTuple):
    """A FixedType as plain ints, the form numba kernels take: value = code * 2**-frac."""

    width: int
    frac: int
    signed: int
    rounding: int
    overflow: int


def type_spec(t: FixedType) -> FixedSpec:
    """The FixedSpec of `t`; raises UnsupportedType when its codes cannot be handled exactly in int64."""
    if not isinstance(t, FixedType):
        raise TypeError(f"expected a FixedType, got {type(t).__name__}")
    if t.width > MAX_WIDTH:
        raise UnsupportedType(f"{t}: width {t.width} exceeds the emulator's int64 limit of {MAX_WIDTH} bits")
    if abs(t.fractional) > _MAX_ABS_FRAC:
        raise UnsupportedType(f"{t}: {t.fractional} fractional bits is outside the supported range")
    return FixedSpec(t.width, t.fractional, int(t.signed), ROUNDING_ID[t.rounding], OVERFLOW_ID[t.overflow])


# ---- scalar core ------------------------------------------------------------------------------
@numba.njit(inline="always", cache=True)
def _round_up(floor, half, sticky, negative, rounding):
    """1 when the truncated `floor` must be incremented; `half` is the first dropped bit, `sticky` 1 when any
    later dropped bit is set, `negative` 1 for a negative value (all 0/1 ints: bitwise logic, no branches)."""
    if rounding == Q_TRN:
        return 0
    if rounding == Q_RND:
        return half
    if rounding == Q_RND_ZERO:
        return half & (negative | sticky)
    if rounding == Q_RND_INF:
        return half & ((1 - negative) | sticky)
    if rounding == Q_RND_MIN_INF:
        return half & sticky
    if rounding == Q_RND_CONV:
        return half & ((floor & 1) | sticky)
    return negative & (half | sticky)  # Q_TRN_ZERO


@numba.njit(inline="always", cache=True)
def _wrap(y, width, signed):
    """The low `width` bits of y, read as a two's complement (signed) or plain (unsigned) code."""
    if signed:
        return (y << (64 - width)) >> (64 - width)
    return y & ((1 << width) - 1)


@numba.njit(inline="always", cache=True)
def cast_raw(value, value_frac, width, frac, signed, rounding, overflow):
    """Code of the exact value `value * 2**-value_frac` converted to the type (width, frac, signed, rounding,
    overflow), exactly as ap_fixed assignment does it: round with `rounding`, then apply `overflow`.
    All arguments are int64 (width <= MAX_WIDTH); modes are Q_* / O_* ids.
    When value_frac - frac exceeds the source's width (65 for a full int64), ap_fixed's C simulation asserts
    (it reads a bit above the source's MSB); cast_raw gives the exactly rounded result instead."""
    shift = value_frac - frac
    beyond_int64 = False  # the exact result does not fit in int64: only after a large left shift
    if shift > 0:
        negative = (value >> 63) & 1
        if shift < 64:
            floor = value >> shift
            half = (value >> (shift - 1)) & 1
            sticky = np.int64((value & ((1 << (shift - 1)) - 1)) != 0)
        else:
            floor = value >> 63
            half = negative
            sticky = np.int64((value & _LOW63) != 0 if shift == 64 else value != 0)
        y = floor + _round_up(floor, half, sticky, negative, rounding)
        source_bits = floor  # ap_fixed reads WRAP_SM's bit above the sign from the truncated source
    elif shift == 0:
        y = value
        source_bits = y
    else:
        k = -shift
        if k < 63 and ((value << k) >> k) == value:
            y = value << k
        else:
            beyond_int64 = True
            y = value << k if k < 64 else 0  # the low 64 bits of the exact result
        source_bits = y

    if signed:
        lo = -(1 << (width - 1))
        hi = -lo - 1
    else:
        lo = 0
        hi = (1 << width) - 1
    if beyond_int64:
        over = value > 0
        under = value < 0
    else:
        over = y > hi
        under = y < lo

    if not (over or under):
        if overflow == O_SAT_SYM and signed and y == lo and width > 1:
            return lo + 1  # ap_fixed's SAT_SYM also maps an in-range most negative code to -max
        return y
    if overflow == O_WRAP:
        return _wrap(y, width, signed)
    if overflow == O_SAT_ZERO:
        return 0
    if overflow == O_WRAP_SM:
        code = _wrap(y, width, True)
        if ((source_bits >> width) & 1) != (1 if code < 0 else 0):
            code = ~code
        return code
    if over:
        return hi
    if overflow == O_SAT_SYM and signed and width > 1:
        return lo + 1
    return lo


@numba.njit(inline="always", cache=True)
def cast(value, value_frac, spec):
    """cast_raw with the destination given as a FixedSpec tuple."""
    return cast_raw(value, value_frac, spec[0], spec[1], spec[2], spec[3], spec[4])


# ---- array kernels ------------------------------------------------------------------------------
@numba.njit(parallel=True, cache=True)
def _quantize_bits(bits, width, frac, signed, rounding, overflow, out):
    for i in numba.prange(bits.size):
        b = bits[i]
        if (b & _LOW63) == 0:
            out[i] = 0
        else:
            # ap_fixed(double) always sets the hidden bit, subnormals included (their exponent reads as -1023).
            man = (b & _MANTISSA) | _HIDDEN_BIT
            if b < 0:
                man = -man
            out[i] = cast_raw(man, 1075 - ((b >> 52) & 0x7FF), width, frac, signed, rounding, overflow)


@numba.njit(parallel=True, cache=True)
def _requantize_codes(codes, src_frac, width, frac, signed, rounding, overflow, out):
    for i in numba.prange(codes.size):
        out[i] = cast_raw(codes[i], src_frac, width, frac, signed, rounding, overflow)


def quantize(x, t: FixedType) -> np.ndarray:
    """Codes (int64, shape of x) of `t y = (double)x;`, subnormal quirk included. NaN and +-inf raise ValueError."""
    spec = type_spec(t)
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        first = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(f"cannot quantize {int(bad.sum())} non-finite value(s) (NaN or inf) to {t}; "
                         f"first flat indices: {first}")
    out = np.empty(x.shape, dtype=np.int64)
    _quantize_bits(np.ascontiguousarray(x).reshape(-1).view(np.int64), *spec, out.reshape(-1))
    return out


def requantize(codes, src: FixedType, dst: FixedType) -> np.ndarray:
    """Codes of `dst_t y = src_t x;` for the codes of x; codes outside src's range raise ValueError."""
    src_frac = type_spec(src).frac
    spec = type_spec(dst)
    codes = _checked_codes(codes, src)
    out = np.empty(codes.shape, dtype=np.int64)
    _requantize_codes(np.ascontiguousarray(codes).reshape(-1), src_frac, *spec, out.reshape(-1))
    return out


def to_float(codes, t: FixedType) -> np.ndarray:
    """`x.to_double()` for the codes of x: exact when |code| < 2**53 and the value is a normal double.
    Wider codes round to nearest even like ap_fixed::to_double; subnormal or overflowing results follow IEEE
    ldexp, where ap_fixed::to_double would return a wrong exponent."""
    frac = type_spec(t).frac
    return np.ldexp(_checked_codes(codes, t).astype(np.float64), -frac)


def _checked_codes(codes, t: FixedType) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"codes of {t} must be an integer array, got dtype {codes.dtype}")
    if codes.size:
        low, high = int(codes.min()), int(codes.max())
        if low < t.min_code or high > t.max_code:
            raise ValueError(f"codes span [{low}, {high}], outside the range [{t.min_code}, {t.max_code}] of {t}")
    return codes.astype(np.int64, copy=False)
