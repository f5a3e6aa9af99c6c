"""ap_fixed casts, accumulations and reductions on vectors of events, exactly as emulator.arith.cast_raw and the
kernels compute them, minus what the interval analysis proves cannot happen (no rounding, no overflow).

Rounding of v * 2**-s to an integer uses one biased add and an arithmetic shift per mode:
floor((v + bias) / 2**s), with bias 2**(s-1) (RND), 2**(s-1) - 1 (RND_MIN_INF), plus the sign bit (RND_ZERO),
minus it (RND_INF), plus the lowest kept bit (RND_CONV), or the sign spread over the s dropped bits (TRN_ZERO):
the same results as arith._round_up's half/sticky logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.arith import cast_raw, type_spec
from emulator.fixed_type import FixedType, UnsupportedType
from emulator.manifest import Layer

from .intervals import Range, prove_cast
from .vector_ir import Function, Vec, lane_for_bits, lane_of

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


def clamp_to_changes(f: Function, x: Vec, y_of, work) -> Vec:
    """x clamped to the smallest interval outside which y_of(x) is constant, for a y_of that is monotone in x (a
    scale or product followed by a saturating cast): y_of(x) == y_of(clamped x) for every x. Only applied when the
    clamp lets `work(range)` (the range of the computation on x) fit a narrower lane."""
    lo, hi = x.range.lo, x.range.hi
    if x.is_const or y_of(lo) == y_of(hi):
        return x

    def boundary(start: int, end: int, value: int) -> int:
        """The last point from start toward end where y_of still equals `value` (y_of(start) == value)."""
        step = 1 if end > start else -1
        inside, outside = start, end
        while abs(outside - inside) > 1:
            middle = (inside + outside) // 2 if step > 0 else -((-inside - outside) // 2)
            inside, outside = (middle, outside) if y_of(middle) == value else (inside, middle)
        return outside if y_of(outside) == value else inside

    a, b = boundary(lo, hi, y_of(lo)), boundary(hi, lo, y_of(hi))
    if lane_of(work(Range(a, b))) >= lane_of(work(x.range)):
        return x
    return f.clamp(x, a, b)


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


INT16 = Range(-(1 << 15), (1 << 15) - 1)
INT32 = Range(-(1 << 31), (1 << 31) - 1)


@dataclass(frozen=True)
class Step:
    """One product of an int32 sum: `kind` "pair" (x[0] * c[0] + x[1] * c[1], the x of keys 2m and 2m + 1 side by
    side in 16-bit lanes), "split" (x[0] * c[0] as the pair (x mod 2**shift, x >> shift) times (c, c * 2**shift)),
    "plain" (a multiply) or "const"."""

    kind: str
    keys: tuple
    xs: tuple
    weights: tuple
    shift: int = 0

    @property
    def range(self) -> Range:
        total = Range.const(0)
        for x, c in zip(self.xs, self.weights):
            total = total + x.range.scale(c)
        return total

    @property
    def vector_key(self) -> tuple:
        """What identifies the 16-bit pair vector the step multiplies (shared by every output)."""
        return self.kind, tuple((x.ref, x.lane, x.range) for x in self.xs), self.shift


@dataclass
class Accumulation:
    """How one output of a multiply-accumulate is summed: `kind` "dots" (exact, int32 `steps` in order), "tree"
    (exact, wider than int32), "wrap" (modulo the lane, wrapped once) or "sequential" (every cast kept, in order;
    then `terms` hold the raw weights). `terms` are [(key, x, weight on the accumulator grid)], non-zero."""

    kind: str
    const: Vec
    terms: list
    product_frac: int
    steps: list = field(default_factory=list)


def plan_accumulation(terms: list, bias: int, x_frac: int, layer: Layer) -> Accumulation:
    """hls4ml dense_latency for one output: res(acc(bias) + sum acc(x*w)) over `terms` = [(key, x Vec, weight
    code)] in input order. Zero weights are left out (adding a zero product changes no accumulator, in any
    overflow mode); their terms only name the partner of a 16-bit pair (keys 2m and 2m + 1 pair up).

    Without a possible overflow the accumulator casts vanish and the sum is exact in any order; a WRAP accumulator
    with exact products is summed modulo the lane and wrapped once; otherwise every cast is kept, in order."""
    w_t, b_t, acc_t = layer.types["weight"], layer.types["bias"], layer.types["accum"]
    acc_frac, prod_frac = acc_t.fractional, x_frac + w_t.fractional
    const = Vec.const(cast_raw(bias, b_t.fractional, *type_spec(acc_t)))
    k = acc_frac - prod_frac
    nonzero = [(key, x, w) for key, x, w in terms if w]
    if k < 0:
        return Accumulation("sequential", const, nonzero, prod_frac)
    total, exact = const.range, True
    for _, x, w in nonzero:
        product = x.range.scale(w << k)
        total = total + product
        exact &= not (prove_cast(product, acc_frac, acc_t).overflows or prove_cast(total, acc_frac, acc_t).overflows)
    scaled = [(key, x, w << k) for key, x, w in nonzero]
    if not exact:
        wrap = acc_t.overflow == "WRAP"
        return Accumulation("wrap" if wrap else "sequential", const, scaled if wrap else nonzero, prod_frac)
    steps = dot_steps([(key, x, w << k) for key, x, w in terms], const)
    return Accumulation("tree" if steps is None else "dots", const, scaled, prod_frac, steps or [])


def dot_steps(terms: list, const: Vec) -> list | None:
    """The products of const + sum x * c over terms [(key, x, c)] as [(order, Step)] to be added in int32 in that
    order; None when a partial sum may leave int32."""
    products = [(key, x, c) for key, x, c in terms if c]
    low = const.range.lo + sum(min(0, x.range.scale(c).lo) for _, x, c in products)
    high = const.range.hi + sum(max(0, x.range.scale(c).hi) for _, x, c in products)
    if not INT32.lo <= low <= high <= INT32.hi:
        return None
    xs, weights = {key: x for key, x, _ in terms}, {key: c for key, _, c in products}
    steps, done = [], set()
    for key, x, c in products:
        if key in done:
            continue
        if x.is_const:
            steps.append(((key >> 1, key & 1), Step("const", (key,), (x,), (c,))))
        elif _pairable(x) and _fits16(Range.const(c)):
            partner = xs.get(key ^ 1, Vec.const(0))
            partner = partner if _pairable(partner) else Vec.const(0)
            pc = weights.get(key ^ 1, 0) if _pairable(partner) else 0
            pc = pc if _fits16(Range.const(pc)) else 0  # else the partner's product is a step of its own
            if pc:
                done.add(key ^ 1)
            (ka, a, ca), (kb, b, cb) = sorted([(key, x, c), (key ^ 1, partner, pc)], key=lambda term: term[0])
            steps.append(((key >> 1, 0), Step("pair", (ka, kb), (a, b), (ca, cb))))
        else:
            s = max(0, _bits(x.range) - 16)
            if s <= 15 and _fits16(Range(min(c, c << s), max(c, c << s))):
                steps.append(((key >> 1, key & 1), Step("split", (key,), (x,), (c,), s)))
            else:
                steps.append(((key >> 1, key & 1), Step("plain", (key,), (x,), (c,))))
    return sorted(steps, key=lambda order_step: order_step[0])


def _pairable(x: Vec) -> bool:
    return not x.is_const and _fits16(x.range)


def _fits16(r: Range) -> bool:
    return r.within(INT16.lo, INT16.hi)


def _bits(r: Range) -> int:
    """Bits of the narrowest two's-complement integer holding r."""
    return max(r.lo.bit_length() if r.lo >= 0 else (-r.lo - 1).bit_length(),
               r.hi.bit_length() if r.hi >= 0 else (-r.hi - 1).bit_length()) + 1


class InRegisters:
    """16-bit pair vectors made where they are first used (shared within the basic block)."""

    @staticmethod
    def vector(f: Function, step: Step) -> str:
        return f.widen(make_pair(f, step))


def make_pair(f: Function, step: Step) -> str:
    """The <2V x i16> pair vector of a pair or split step."""
    return f.split(step.xs[0], step.shift) if step.kind == "split" else f.pair(*step.xs)


def accumulate(f: Function, plans: list, layer: Layer, pairs=InRegisters, together: int = 12) -> list:
    """Emit the accumulations `plans` (of plan_accumulation) and their casts to the layer's result; the "dots"
    ones input by input for `together` outputs at a time, their pair vectors from `pairs` (`vector(f, step)`)."""
    acc_t = layer.types["accum"]
    sums = [None] * len(plans)
    dots = []
    for j, plan in enumerate(plans):
        f.tally(2 * len(plan.terms), int(plan.kind in ("wrap", "sequential")))
        if plan.kind == "dots":
            dots.append(j)
        elif plan.kind == "tree":
            sums[j] = exact_sum(f, [*(f.scale(x, c) for _, x, c in plan.terms), plan.const])
        elif plan.kind == "wrap":
            lane = lane_for_bits(acc_t.width)
            modulo = Range(-(1 << (lane - 1)), (1 << (lane - 1)) - 1)
            acc = plan.const
            for _, x, c in plan.terms:
                acc = f.modular("add", acc, f.modular("mul", x, Vec.const(c), modulo, lane), modulo, lane)
            sums[j] = overflow(f, acc, acc_t, Range.of(acc_t), acc)
        else:
            acc = plan.const
            for _, x, w in plan.terms:
                acc = cast(f, f.add(acc, cast(f, f.scale(x, w), plan.product_frac, acc_t)), acc_t.fractional, acc_t)
            sums[j] = acc
    for first in range(0, len(dots), together):
        group = dots[first:first + together]
        accs = {j: plans[j].const for j in group}
        steps = sorted(((order, j, step) for j in group for order, step in plans[j].steps), key=lambda s: s[:2])
        for _, j, step in steps:
            if step.kind == "const":
                term = Vec.const(step.xs[0].code * step.weights[0])
            elif step.kind == "plain":
                term = f.scale(step.xs[0], step.weights[0])
            else:
                weights = step.weights if step.kind == "pair" else (step.weights[0], step.weights[0] << step.shift)
                term = f.dot(pairs.vector(f, step), *weights, step.range)
            accs[j] = f.modular("add", accs[j], term, accs[j].range + term.range, 32)
        for j in group:
            sums[j] = accs[j]
    return [cast(f, acc, acc_t.fractional, layer.result) for acc in sums]
