"""Interval analysis of raw codes: the proven range of every intermediate value, and which casts are no-ops.

A `Range` holds the smallest and largest integer an expression can take on any input; a `CastProof` says, for a
cast of such a range to a FixedType, whether rounding happens, whether overflow can happen (so that the overflow
handling can be dropped when it cannot) and the range of the result. Rounding is monotone in every ap_fixed mode,
so rounding the two ends of a range bounds the rounded range exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.arith import OVERFLOW_ID, ROUNDING_ID, cast_raw
from emulator.fixed_type import FixedType


@dataclass(frozen=True)
class Range:
    """Every value of an integer expression lies in [lo, hi]."""

    lo: int
    hi: int

    def __post_init__(self):
        if self.lo > self.hi:
            raise ValueError(f"empty range [{self.lo}, {self.hi}]")

    @classmethod
    def of(cls, t: FixedType) -> "Range":
        """All codes of a type."""
        return cls(t.min_code, t.max_code)

    @classmethod
    def const(cls, value: int) -> "Range":
        return cls(int(value), int(value))

    @property
    def is_const(self) -> bool:
        return self.lo == self.hi

    def __add__(self, other: "Range") -> "Range":
        return Range(self.lo + other.lo, self.hi + other.hi)

    def __sub__(self, other: "Range") -> "Range":
        return Range(self.lo - other.hi, self.hi - other.lo)

    def __mul__(self, other: "Range") -> "Range":
        ends = [a * b for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        return Range(min(ends), max(ends))

    def scale(self, k: int) -> "Range":
        return self * Range.const(k)

    def shl(self, k: int) -> "Range":
        return Range(self.lo << k, self.hi << k)

    def square(self) -> "Range":
        low = 0 if self.lo <= 0 <= self.hi else min(self.lo * self.lo, self.hi * self.hi)
        return Range(low, max(self.lo * self.lo, self.hi * self.hi))

    def union(self, other: "Range") -> "Range":
        return Range(min(self.lo, other.lo), max(self.hi, other.hi))

    def clip(self, lo: int, hi: int) -> "Range":
        return Range(min(max(self.lo, lo), hi), max(min(self.hi, hi), lo))

    def within(self, lo: int, hi: int) -> bool:
        return lo <= self.lo and self.hi <= hi


def union(ranges) -> Range:
    """The smallest range holding all of `ranges`."""
    ranges = list(ranges)
    return Range(min(r.lo for r in ranges), max(r.hi for r in ranges))


@dataclass(frozen=True)
class CastProof:
    """What a cast of `value` (codes with `value_frac` fractional bits) to `target` needs, proven from the range.

    shift > 0: rounding to the target grid; shift < 0: an exact left shift; overflows: the rounded range leaves the
    target's codes (or touches SAT_SYM's most negative code), so the overflow mode must be applied.
    """

    value: Range
    value_frac: int
    target: FixedType
    shift: int
    rounded: Range
    overflows: bool
    result: Range

    @property
    def is_identity(self) -> bool:
        return self.shift == 0 and not self.overflows


def round_code(value: int, shift: int, rounding: str) -> int:
    """`value * 2**-shift` rounded to an integer with an ap_fixed rounding mode (shift > 0), by arith.cast_raw."""
    if not -(1 << 62) < value < (1 << 62):
        raise ValueError(f"code {value} is too wide to round exactly in int64")
    return int(cast_raw(value, shift, 62, 0, 1, ROUNDING_ID[rounding], OVERFLOW_ID["WRAP"]))


def prove_cast(value: Range, value_frac: int, target: FixedType) -> CastProof:
    """The CastProof of casting every code in `value` (value_frac fractional bits) to `target`."""
    shift = value_frac - target.fractional
    if shift > 0:
        rounded = Range(round_code(value.lo, shift, target.rounding), round_code(value.hi, shift, target.rounding))
    else:
        rounded = value.shl(-shift)
    lo, hi = target.min_code, target.max_code
    symmetric = target.overflow == "SAT_SYM" and target.signed and target.width > 1
    overflows = not rounded.within(lo + 1 if symmetric else lo, hi)
    if not overflows:
        result = rounded
    elif target.overflow == "SAT":
        result = rounded.clip(lo, hi)
    elif symmetric:
        result = rounded.clip(lo + 1, hi)
    elif target.overflow == "SAT_ZERO":
        result = rounded.clip(lo, hi).union(Range.const(0))
    else:  # WRAP, WRAP_SM, and SAT_SYM of unsigned or 1-bit types behave like SAT
        result = rounded.clip(lo, hi) if target.overflow == "SAT_SYM" else Range(lo, hi)
    return CastProof(value, value_frac, target, shift, rounded, overflows, result)


def cast_range(value: Range, value_frac: int, target: FixedType) -> Range:
    """The proven range of a cast's result."""
    return prove_cast(value, value_frac, target).result
