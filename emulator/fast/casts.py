"""ap_fixed casts, accumulations and reductions on vectors of events, exactly as emulator.arith.cast_raw and the
kernels compute them, minus what the interval analysis proves cannot happen (no rounding, no overflow).

Rounding of v * 2**-s to an integer uses one biased add and an arithmetic shift per mode:
floor((v + bias) / 2**s), with bias 2**(s-1) (RND), 2**(s-1) - 1 (RND_MIN_INF), plus the sign bit (RND_ZERO),
minus it (RND_INF), plus the lowest kept bit (RND_CONV), or the sign spread over the s dropped bits (TRN_ZERO):
the same results as arith._round_up's half/sticky logic.
"""

from __future__ import annotations

from emulator.arith import cast_raw, type_spec
from emulator.fixed_type import FixedType, UnsupportedType
from emulator.manifest import Layer

from .intervals import Range, prove_cast
from .vector_ir import Function, Vec, lane_for_bits

#: Casts dropping more fractional bits than this leave the fast path (the reference kernels take them).
MAX_SHIFT = 62


def cast(f: Function, v: Vec, value_frac: int, t: FixedType) -> Vec:
    """`t(v)` for v's codes on a grid of value_frac fractional bits."""
    proof = prove_cast(v.range, value_frac, t)
    f.tally(1, int((proof.shift > 0 or proof.overflows) and not v.is_const))
    if v.is_const:
        return Vec.const(cast_raw(v.code, value_frac, *type_spec(t)))
    if proof.is_identity:
        return v.proven(proof.result)
    if proof.shift > MAX_SHIFT:
        raise UnsupportedType(f"a cast into {t} drops {proof.shift} fractional bits, more than the fast path's "
                              f"{MAX_SHIFT}")
    y = v
    if proof.shift > 0:
        y = rounded(f, v, proof.shift, t.rounding).proven(proof.rounded)
    elif proof.shift < 0:
        y = f.shl(v, -proof.shift)
    if proof.overflows:
        y = overflow(f, y, t, proof.result, f.ashr(v, proof.shift) if proof.shift > 0 else y)
    return y.proven(proof.result)


def rounded(f: Function, v: Vec, s: int, rounding: str) -> Vec:
    """v * 2**-s rounded to an integer with an ap_fixed rounding mode (s >= 1)."""
    half = 1 << (s - 1)
    if rounding == "TRN":
        return f.ashr(v, s)
    if rounding == "RND":
        biased = f.add(v, Vec.const(half))
    elif rounding == "RND_MIN_INF":
        biased = f.add(v, Vec.const(half - 1))
    elif rounding == "RND_ZERO":
        biased = f.add(f.add(v, Vec.const(half - 1)), f.is_negative(v))
    elif rounding == "RND_INF":
        biased = f.sub(f.add(v, Vec.const(half)), f.is_negative(v))
    elif rounding == "RND_CONV":
        biased = f.add(f.add(v, Vec.const(half - 1)), f.low_bits(f.ashr(v, s), 1))
    elif rounding == "TRN_ZERO":
        biased = f.add(v, f.negative_mask(v, s))
    else:
        raise UnsupportedType(f"rounding mode {rounding!r} has no fast-path rounding")
    return f.ashr(biased, s)


def overflow(f: Function, y: Vec, t: FixedType, result: Range, source: Vec) -> Vec:
    """t's overflow mode applied to the exact rounded code y; `source` is the truncated source (WRAP_SM reads the
    bit above t's sign from it, as ap_fixed does)."""
    lo, hi = t.min_code, t.max_code
    if t.overflow == "WRAP":
        return f.low_bits(y, t.width).proven(result) if not t.signed else f.wrap_signed(y, t.width, result)
    if t.overflow == "WRAP_SM":
        code = f.wrap_signed(y, t.width, Range(-(1 << (t.width - 1)), (1 << (t.width - 1)) - 1))
        bit = f.low_bits(f.ashr(source, t.width), 1)
        differs = f.mask_op("xor", f.compare("ne", bit, Vec.const(0)), f.compare("slt", code, Vec.const(0)))
        flip = f.mask_op("and", differs, _outside(f, y, lo, hi))
        return f.select(flip, f.bitwise_not(code), code).proven(result)
    if t.overflow == "SAT_ZERO":
        return f.select(_outside(f, y, lo, hi), Vec.const(0), y.proven(y.range.clip(lo, hi))).proven(result)
    if t.overflow == "SAT_SYM" and t.signed and t.width > 1:
        lo += 1
    return f.clamp(y, lo, hi).proven(result)


def _outside(f: Function, y: Vec, lo: int, hi: int) -> str:
    """The mask of y < lo or y > hi: where the overflow mode applies."""
    return f.mask_op("or", f.compare("slt", y, Vec.const(lo)), f.compare("sgt", y, Vec.const(hi)))


def aligned(f: Function, v: Vec, frac: int, to_frac: int) -> Vec:
    """The same value on a grid with to_frac >= frac fractional bits."""
    return f.shl(v, to_frac - frac)


def exact_sum(f: Function, terms: list) -> Vec:
    """The exact sum of `terms`, added as a balanced tree (independent adds for the pipeline)."""
    terms = [t for t in terms if not (t.is_const and t.code == 0)] or [Vec.const(0)]
    while len(terms) > 1:
        terms = [f.add(terms[i], terms[i + 1]) if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def tree_sum(f: Function, leaves: list, frac: int, t: FixedType) -> Vec:
    """nnet::reduce with Op_add: a balanced tree, cast into `t` at every node (shape as in nnet_common.h)."""
    if len(leaves) == 1:
        return leaves[0]
    if len(leaves) == 2:
        return cast(f, f.add(*leaves), frac, t)
    left = 1
    while left * 2 < len(leaves):
        left *= 2
    a, b = tree_sum(f, leaves[:left], frac, t), tree_sum(f, leaves[left:], frac, t)
    return cast(f, f.add(a, b), frac, t)


def multiply_accumulate(f: Function, terms: list, bias: int, x_frac: int, layer: Layer) -> Vec:
    """hls4ml dense_latency for one output: res(acc(bias) + sum acc(x*w)) over `terms` = [(x Vec, weight code)]
    in input order, zero weights left out (adding a zero product changes no accumulator, in any overflow mode).

    Without a possible overflow the accumulator casts vanish and the sum is exact in any order; a WRAP accumulator
    with exact products is summed modulo the lane and wrapped once; otherwise every cast is kept, in order."""
    w_t, b_t, acc_t = layer.types["weight"], layer.types["bias"], layer.types["accum"]
    acc_frac, prod_frac = acc_t.fractional, x_frac + w_t.fractional
    acc = Vec.const(cast_raw(bias, b_t.fractional, *type_spec(acc_t)))
    k = acc_frac - prod_frac
    if k >= 0:
        total, exact = acc.range, True
        for x, w in terms:
            product = x.range.scale(w << k)
            exact &= not prove_cast(product, acc_frac, acc_t).overflows
            total = total + product
            exact &= not prove_cast(total, acc_frac, acc_t).overflows
        if exact or acc_t.overflow == "WRAP":
            f.tally(2 * len(terms), int(not exact))
            if exact:
                acc = exact_sum(f, [*(f.scale(x, w << k) for x, w in terms), acc])
            else:
                lane = lane_for_bits(acc_t.width)
                modulo = Range(-(1 << (lane - 1)), (1 << (lane - 1)) - 1)
                for x, w in terms:
                    acc = f.modular("add", acc, f.modular("mul", x, Vec.const(w << k), modulo, lane), modulo, lane)
                acc = overflow(f, acc, acc_t, Range.of(acc_t), acc)
            return cast(f, acc, acc_frac, layer.result)
    for x, w in terms:
        product = cast(f, f.scale(x, w), prod_frac, acc_t)
        acc = cast(f, f.add(acc, product), acc_frac, acc_t)
    return cast(f, acc, acc_frac, layer.result)
