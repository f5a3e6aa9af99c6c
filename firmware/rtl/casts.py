"""Verilog of the ap_fixed cast `dst_t y = x;` of an exact integer value, in every rounding and overflow mode.

The contract is emulator.arith.cast_raw: round the exact value onto the destination grid by inspecting the dropped
bits (first dropped bit `half`, OR of the rest `sticky`), then apply the overflow mode to the rounded integer.
`cast_value` picks the cheapest exact form: a constant, a plain re-extension when nothing can change, or a call of a
generated function `cast_*` (one per source format and destination type, collected in a module's `CastLibrary`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.arith import cast_raw, type_spec
from emulator.fixed_type import FixedType

from .verilog import Body, Value, extended, literal, signed_width


def cast_constant(code: int, frac: int, dst: FixedType) -> int:
    """The code of the constant `code * 2**-frac` cast to dst (the emulator's own cast)."""
    return int(cast_raw(code, frac, *type_spec(dst)))


def _rounded_range(lo: int, hi: int, frac: int, dst: FixedType) -> tuple[int, int]:
    """Bounds of the rounded (not yet overflow-handled) integer for sources in [lo, hi]."""
    shift = frac - dst.fractional
    if shift <= 0:
        return lo << -shift, hi << -shift
    return lo >> shift, (hi >> shift) + (dst.rounding != "TRN")


def lowest_result(dst: FixedType) -> int:
    """The smallest code a cast into dst produces (SAT_SYM never yields the most negative code)."""
    return dst.min_code + (1 if dst.overflow == "SAT_SYM" and dst.signed and dst.width > 1 else 0)


def is_identity(v: Value, dst: FixedType) -> bool:
    """True when casting v to dst cannot change its value: same grid and every value strictly representable."""
    return v.frac == dst.fractional and lowest_result(dst) <= v.lo and v.hi <= dst.max_code


# ---- boolean expressions with constant folding ------------------------------------------------------------
def _and(a: str, b: str) -> str:
    if "1'b0" in (a, b):
        return "1'b0"
    if a == "1'b1":
        return b
    return a if b == "1'b1" else f"({a} & {b})"


def _or(a: str, b: str) -> str:
    if "1'b1" in (a, b):
        return "1'b1"
    if a == "1'b0":
        return b
    return a if b == "1'b0" else f"({a} | {b})"


def _not(a: str) -> str:
    return {"1'b0": "1'b1", "1'b1": "1'b0"}.get(a, f"~{a}")


def _mux(select: str, when_true: str, when_false: str) -> str:
    if select == "1'b0":
        return when_false
    if select == "1'b1":
        return when_true
    return f"({select} ? {when_true} : {when_false})"


def round_up(rounding: str, half: str, sticky: str, negative: str, lsb: str) -> str:
    """1-bit expression: increment the truncated (floor) value? `lsb` is the floor's least significant bit."""
    if rounding == "TRN":
        return "1'b0"
    if rounding == "RND":
        return half
    if rounding == "RND_ZERO":
        return _and(half, _or(negative, sticky))
    if rounding == "RND_INF":
        return _and(half, _or(_not(negative), sticky))
    if rounding == "RND_MIN_INF":
        return _and(half, sticky)
    if rounding == "RND_CONV":
        return _and(half, _or(lsb, sticky))
    if rounding == "TRN_ZERO":
        return _and(negative, _or(half, sticky))
    raise ValueError(f"unknown rounding mode {rounding!r}")


def _num(n: int) -> str:
    return f"m{-n}" if n < 0 else str(n)


def function_name(src_width: int, src_frac: int, dst: FixedType) -> str:
    sign = "s" if dst.signed else "u"
    return (f"cast_s{src_width}f{_num(src_frac)}_to_{sign}{dst.width}f{_num(dst.fractional)}"
            f"_{dst.rounding.lower()}_{dst.overflow.lower()}")


class _Locals:
    """The local variables and statements of a Verilog function (names start with f_, which no wire of a generated
    module does, so nothing is hidden)."""

    def __init__(self):
        self.declarations, self.statements = [], []

    def reg(self, name: str, width: int, expr: str) -> str:
        self.declarations.append(f"    reg [{width - 1}:0] {name};")
        self.statements.append(f"      {name} = {expr};")
        return name


def function_text(src_width: int, src_frac: int, dst: FixedType) -> str:
    """A function (x: signed src_width-bit code on the grid 2**-src_frac) -> dst code, for inclusion in a module."""
    body = _Locals()
    w = dst.width
    shift = src_frac - dst.fractional
    v_lo, v_hi = -(1 << (src_width - 1)), (1 << (src_width - 1)) - 1
    x = Value("f_x", src_width, src_frac, True, v_lo, v_hi)
    negative = x.msb()
    if shift > 0:
        ext_width = max(src_width, shift + 1)
        xe = body.reg("f_xe", ext_width, extended(x, ext_width))
        floor_width = ext_width - shift
        floor = body.reg("f_floor", floor_width, f"{xe}[{ext_width - 1}:{shift}]")
        half = f"{xe}[{shift - 1}]"
        sticky = f"(|{xe}[{shift - 2}:0])" if shift >= 2 else "1'b0"
        carry = round_up(dst.rounding, half, sticky, negative, f"{floor}[0]")
        lo, hi = v_lo >> shift, v_hi >> shift
        source_bits = Value(floor, floor_width, 0, True, lo, hi)
        if carry == "1'b0":
            y = source_bits
        else:
            y_width = floor_width + 1
            expr = f"{extended(source_bits, y_width)} + {{{floor_width}'b0, {carry}}}"
            y = Value(body.reg("f_rounded", y_width, expr), y_width, 0, True, lo, hi + 1)
    elif shift == 0:
        y = source_bits = x
    else:
        k = -shift
        y = source_bits = Value(body.reg("f_aligned", src_width + k, f"{{f_x, {k}'b0}}"), src_width + k, 0, True,
                                v_lo << k, v_hi << k)

    lo, hi = dst.min_code, dst.max_code
    bits = max(y.width, w + 1)
    y_ext = body.reg("f_y", bits, extended(y, bits))
    low = f"{y_ext}[{w - 1}:0]"
    over = f"($signed({y.expr}) > $signed({literal(hi, y.width)}))" if y.hi > hi else "1'b0"
    under = f"($signed({y.expr}) < $signed({literal(lo, y.width)}))" if y.lo < lo else "1'b0"
    mode = dst.overflow
    if mode == "WRAP":
        result = low
    elif mode == "SAT_ZERO":
        result = _mux(_or(over, under), literal(0, w), low)
    elif mode == "WRAP_SM":
        above = f"{source_bits.expr}[{min(w, source_bits.width - 1)}]"
        flipped = f"(({above} != {y_ext}[{w - 1}]) ? ~{low} : {low})"
        result = _mux(_or(over, under), flipped, low)
    elif mode == "SAT_SYM" and dst.signed and w > 1:
        is_lo = f"({low} == {literal(lo, w)})" if y.lo <= lo <= y.hi else "1'b0"
        result = _mux(over, literal(hi, w), _mux(_or(under, is_lo), literal(lo + 1, w), low))
    else:  # SAT, and SAT_SYM where it equals SAT
        result = _mux(over, literal(hi, w), _mux(under, literal(lo, w), low))
    name = function_name(src_width, src_frac, dst)
    return "\n".join([
        f"  // {dst} y = x, x a signed {src_width}-bit code with {src_frac} fractional bits.",
        f"  function [{w - 1}:0] {name};",
        f"    input [{src_width - 1}:0] f_x;",
        *body.declarations,
        "    begin",
        *body.statements,
        f"      {name} = {result};",
        "    end",
        "  endfunction",
    ])


@dataclass
class CastLibrary:
    """The cast functions one module uses, each generated once; `text()` goes inside that module."""

    functions: dict = field(default_factory=dict)

    def function(self, src_width: int, src_frac: int, dst: FixedType) -> str:
        name = function_name(src_width, src_frac, dst)
        if name not in self.functions:
            self.functions[name] = function_text(src_width, src_frac, dst)
        return name

    def text(self) -> str:
        """The functions, for the body of a module that waives UNUSEDSIGNAL: each rounding and overflow mode reads
        only some bits of a cast's locals (the dropped bits, the bit above the sign for WRAP_SM)."""
        return "\n".join(self.functions[name] for name in sorted(self.functions))


def cast_value(body: Body, library: CastLibrary, v: Value, dst: FixedType, stem: str = "c") -> Value:
    """v cast to dst, as a Value whose code has dst's width and signedness (the cast of emulator.arith)."""
    if v.constant:
        code = cast_constant(v.code, v.frac, dst)
        return Value(literal(code, dst.width), dst.width, dst.fractional, dst.signed, code, code, constant=True)
    if is_identity(v, dst):
        if v.width == dst.width:
            return Value(v.expr, dst.width, dst.fractional, dst.signed, v.lo, v.hi)
        v = body.named(v)
        return body.value(stem, extended(v, dst.width), dst.width, dst.fractional, dst.signed, v.lo, v.hi)
    src_width = signed_width(v.lo, v.hi)
    if src_width != v.width:
        v = body.named(v)
    name = library.function(src_width, v.frac, dst)
    lo, hi = _result_range(v, dst)
    return body.value(stem, f"{name}({extended(v, src_width)})", dst.width, dst.fractional, dst.signed, lo, hi)


def _result_range(v: Value, dst: FixedType) -> tuple[int, int]:
    """Code bounds of the cast of v: the casts of v's bounds when nothing can overflow (casts are then monotonic)."""
    lo, hi = _rounded_range(v.lo, v.hi, v.frac, dst)
    if dst.min_code <= lo and hi <= dst.max_code:
        return cast_constant(v.lo, v.frac, dst), cast_constant(v.hi, v.frac, dst)
    return lowest_result(dst), dst.max_code
