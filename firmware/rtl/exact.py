"""Exact integer arithmetic on `Value`s: every result is as wide as its range needs, so nothing overflows.

Each function returns a Value whose expression (or constant) is the exact result on the stated grid; the casts of
firmware.rtl.casts then apply the ap_fixed rounding and overflow of the destination type.
"""

from __future__ import annotations

from .verilog import Body, Value, extended, literal, signed_width


def _exact(expr: str, frac: int, lo: int, hi: int) -> Value:
    return Value(expr, signed_width(lo, hi), frac, True, lo, hi)


def scaled(body: Body, x: Value, m: int, c: int, frac: int) -> Value:
    """x_code * m + c, read on the grid 2**-frac (the caller states which grid that product lies on)."""
    if x.constant or m == 0:
        return Value.const(x.lo * m + c if x.constant else c, frac)
    lo, hi = sorted((x.lo * m, x.hi * m))
    lo, hi = lo + c, hi + c
    width = signed_width(min(lo, x.lo), max(hi, x.hi))
    width = max(width, signed_width(m, m))
    x = body.named(x)
    if m == 1:
        term = extended(x, width)
    elif m == -1:
        term = f"-{extended(x, width)}"
    else:
        term = f"($signed({extended(x, width)}) * $signed({literal(m, width)}))"
    expr = term if c == 0 else f"({term} + {literal(c, width)})"
    return _exact(_resized(body, expr, width, lo, hi), frac, lo, hi)


def _resized(body: Body, expr: str, width: int, lo: int, hi: int) -> str:
    """expr (computed in `width` bits) as an expression of exactly signed_width(lo, hi) bits."""
    need = signed_width(lo, hi)
    if need == width:
        return expr
    return f"{body.wire('w', width, expr)}[{need - 1}:0]"


def aligned(v: Value, frac: int, width: int) -> str:
    """`width`-bit expression of v's value on the finer grid 2**-frac (frac >= v.frac)."""
    k = frac - v.frac
    if v.constant:
        return literal(v.code << k, width)
    return extended(v, width) if k == 0 else f"{{{extended(v, width - k)}, {k}'b0}}"


def add(body: Body, a: Value, b: Value, subtract: bool = False) -> Value:
    """a + b (or a - b), exact, on the finer of the two grids."""
    frac = max(a.frac, b.frac)
    ka, kb = frac - a.frac, frac - b.frac
    a_lo, a_hi = a.lo << ka, a.hi << ka
    b_lo, b_hi = (-(b.hi << kb), -(b.lo << kb)) if subtract else (b.lo << kb, b.hi << kb)
    lo, hi = a_lo + b_lo, a_hi + b_hi
    if a.constant and b.constant:
        return Value.const(lo, frac)
    if a.is_zero and not subtract and b.frac == frac:
        return b
    if b.is_zero and a.frac == frac:
        return a
    width = signed_width(min(lo, a_lo, b_lo, b.lo << kb, b.hi << kb), max(hi, a_hi, b_hi, b.lo << kb, b.hi << kb))
    a, b = body.named(a), body.named(b)
    expr = f"({aligned(a, frac, width)} {'-' if subtract else '+'} {aligned(b, frac, width)})"
    return _exact(_resized(body, expr, width, lo, hi), frac, lo, hi)


def square(body: Body, x: Value) -> Value:
    """x * x, exact, on the grid 2**-(2 x.frac)."""
    if x.constant:
        return Value.const(x.code * x.code, 2 * x.frac)
    ends = (x.lo * x.lo, x.hi * x.hi)
    lo = 0 if x.lo <= 0 <= x.hi else min(ends)
    hi = max(ends)
    width = max(signed_width(lo, hi), signed_width(x.lo, x.hi))
    x = body.named(x)
    operand = f"$signed({extended(x, width)})"
    return _exact(_resized(body, f"({operand} * {operand})", width, lo, hi), 2 * x.frac, lo, hi)


def product(body: Body, a: Value, b: Value) -> Value:
    """a * b, exact, on the grid 2**-(a.frac + b.frac)."""
    frac = a.frac + b.frac
    if a.constant or b.constant:
        constant, other = (a, b) if a.constant else (b, a)
        return scaled(body, other, constant.code, 0, frac)
    ends = (a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi)
    lo, hi = min(ends), max(ends)
    width = max(signed_width(lo, hi), signed_width(a.lo, a.hi), signed_width(b.lo, b.hi))
    a, b = body.named(a), body.named(b)
    expr = f"($signed({extended(a, width)}) * $signed({extended(b, width)}))"
    return _exact(_resized(body, expr, width, lo, hi), frac, lo, hi)


def divided(body: Body, x: Value, n: int) -> Value:
    """trunc(x_code / n) for n > 0 (C integer division, towards zero), on x's grid."""
    def trunc(code):
        q = abs(code) // n
        return q if code >= 0 else -q

    if x.constant or n == 1:
        return Value.const(trunc(x.code), x.frac) if x.constant else x
    lo, hi = trunc(x.lo), trunc(x.hi)
    width = max(signed_width(x.lo, x.hi), signed_width(n, n))
    x = body.named(x)
    expr = f"($signed({extended(x, width)}) / $signed({literal(n, width)}))"
    return _exact(_resized(body, expr, width, lo, hi), x.frac, lo, hi)


def floor_shifted(body: Body, x: Value, shift: int) -> Value:
    """floor(x_code / 2**shift) (an arithmetic right shift), on the grid 2**-(x.frac - shift)."""
    if shift == 0:
        return x
    lo, hi = x.lo >> shift, x.hi >> shift
    if x.constant:
        return Value.const(lo, x.frac - shift)
    x = body.named(x)
    width = max(signed_width(x.lo, x.hi), shift + 1)
    wide = body.wire("w", width, extended(x, width))
    return _exact(_resized(body, f"{wide}[{width - 1}:{shift}]", width - shift, lo, hi), x.frac - shift, lo, hi)


def clamped(body: Body, x: Value, low: int, high: int) -> Value:
    """min(max(x_code, low), high) with 0 <= low <= high, as an unsigned code of high's bit length."""
    lo, hi = min(max(x.lo, low), high), min(max(x.hi, low), high)
    if x.constant or lo == hi:
        return Value.const(lo, x.frac)
    width = max(int(high).bit_length(), 1)
    x = body.named(x)
    expr = x.bits(width - 1, 0) if x.width >= width else extended(x, width)
    compare = max(signed_width(x.lo, x.hi), signed_width(high, high))
    operand = f"$signed({extended(x, compare)})"
    if x.hi > high:
        expr = f"({operand} > $signed({literal(high, compare)})) ? {literal(high, width)} : {expr}"
    if x.lo < low:
        expr = f"({operand} < $signed({literal(low, compare)})) ? {literal(low, width)} : ({expr})"
    return Value(body.wire("k", width, expr), width, x.frac, False, lo, hi)
