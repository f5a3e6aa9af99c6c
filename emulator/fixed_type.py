"""`FixedType`: one Xilinx ap_fixed / ap_ufixed / ap_int / ap_uint type, as the HLS C++ spells it."""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUNDING_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM", "WRAP_SM")

_SPELLING = re.compile(
    r"^\s*ap_(?P<u>u?)(?P<kind>fixed|int)\s*<\s*(?P<args>[^<>]*)>\s*$"
)


class UnsupportedType(ValueError):
    """A type the emulator cannot represent exactly; the message names the type."""


@dataclass(frozen=True)
class FixedType:
    """ap_fixed<width, integer, rounding, overflow> (or ap_ufixed when signed is False).

    A value is `code * 2**-fractional` with `code` a width-bit two's complement (or unsigned) integer.
    """

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"

    def __post_init__(self):
        if not isinstance(self.width, int) or self.width < 1:
            raise UnsupportedType(f"width must be a positive integer, got {self.width!r}")
        if self.rounding not in ROUNDING_MODES:
            raise UnsupportedType(f"unknown rounding mode {self.rounding!r}; known: {', '.join(ROUNDING_MODES)}")
        if self.overflow not in OVERFLOW_MODES:
            raise UnsupportedType(f"unknown overflow mode {self.overflow!r}; known: {', '.join(OVERFLOW_MODES)}")
        if self.overflow == "WRAP_SM" and not self.signed:
            raise UnsupportedType("ap_ufixed has no AP_WRAP_SM overflow mode")

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def parse(cls, spelling: str) -> "FixedType":
        """Parse a C++ spelling such as 'ap_fixed<18,8,AP_RND,AP_SAT>' or 'ap_uint<4>'."""
        m = _SPELLING.match(spelling)
        if not m:
            raise UnsupportedType(f"cannot parse fixed-point type {spelling!r}")
        args = [a.strip() for a in m.group("args").split(",") if a.strip()]
        signed = m.group("u") == ""
        try:
            if m.group("kind") == "int":
                if len(args) != 1:
                    raise ValueError
                width = int(args[0])
                return cls(width, width, signed)
            width, integer = int(args[0]), int(args[1])
        except (ValueError, IndexError):
            raise UnsupportedType(f"cannot parse fixed-point type {spelling!r}") from None
        rounding = _mode(args[2]) if len(args) > 2 else "TRN"
        overflow = _mode(args[3]) if len(args) > 3 else "WRAP"
        if len(args) > 4 and int(args[4]) != 0:
            raise UnsupportedType(f"{spelling}: saturation bits N != 0 are not supported")
        return cls(width, integer, signed, rounding, overflow)

    @classmethod
    def from_hls4ml(cls, precision) -> "FixedType":
        """Build from an hls4ml precision object (FixedPrecisionType or IntegerPrecisionType, or XnorPrecisionType,
        hls4ml's binary type, whose C++ type is ap_uint<1>)."""
        kinds = {cls.__name__ for cls in type(precision).__mro__}
        if "XnorPrecisionType" in kinds:
            return cls(1, 1, signed=False)
        if not kinds & {"FixedPrecisionType", "IntegerPrecisionType"}:
            raise UnsupportedType(
                f"hls4ml precision {precision} ({type(precision).__name__}) is not a fixed-point or integer type"
            )
        rounding = getattr(precision, "rounding_mode", None)
        overflow = getattr(precision, "saturation_mode", None)
        bits = getattr(precision, "saturation_bits", None)
        if bits not in (None, 0):
            raise UnsupportedType(f"{precision}: saturation bits N != 0 are not supported")
        return cls(
            int(precision.width),
            int(precision.integer),
            bool(precision.signed),
            rounding.name if rounding is not None else "TRN",
            overflow.name if overflow is not None else "WRAP",
        )

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def fractional(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.fractional

    @property
    def min_code(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min(self) -> float:
        return self.min_code * self.lsb

    @property
    def max(self) -> float:
        return self.max_code * self.lsb

    def with_(self, **changes) -> "FixedType":
        """A copy with some fields changed."""
        fields = dict(width=self.width, integer=self.integer, signed=self.signed,
                      rounding=self.rounding, overflow=self.overflow)
        fields.update(changes)
        return FixedType(**fields)

    def __str__(self) -> str:
        base = "ap_fixed" if self.signed else "ap_ufixed"
        if self.rounding == "TRN" and self.overflow == "WRAP":
            return f"{base}<{self.width},{self.integer}>"
        return f"{base}<{self.width},{self.integer},AP_{self.rounding},AP_{self.overflow}>"


def _mode(token: str) -> str:
    return token.strip().upper().removeprefix("AP_")
