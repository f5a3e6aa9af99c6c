"""Interval analysis over the input range: a sound enclosure of every probe site's exact pre-cast values, and the
bins it proves unreachable, each with the bound that proves it.

The enclosure follows the arithmetic of /tmp/semantics.md with intervals of codes (int64, exact: the planner has
checked that every intermediate value fits). An element of a site no cast ever reaches has an empty interval.
Where a site's values are sums or constant multiples of exact products, the enclosure also knows their low bits
(value = residue mod 2**bits): a rounding tie is impossible when those bits never make one.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from emulator.arith import O_SAT, ROUNDING_ID, cast_raw, type_spec
from emulator.fixed_type import FixedType
from emulator.manifest import Manifest
from emulator.plan import (constant_code, exp_table_index, gather_index, im2col_index, plan_layer, pool_windows,
                           scale_channel, summation_order)

from .affine import AffineBounds
from .bins import TRIGGER_SITE, Bin, Trigger, coverage_bins

CAST_OUTPUT = ("dense", "conv2d", "batchnorm", "avgpool2d", "linear", "reshape", "zeropad2d", "upsampling2d",
               "kl_divergence", "mse")
"""Ops whose output codes are the casts of their `result` site."""
_EMPTY_LO, _EMPTY_HI = np.iinfo(np.int64).max, np.iinfo(np.int64).min
_REFERENCE_WIDTH = 63  # wider than any emulated type: rounds without losing an overflow


@nb.njit(cache=True)
def _cast_codes(values, value_frac, width, frac, signed, rounding, overflow):
    out = np.empty_like(values)
    for i in range(values.size):
        out[i] = cast_raw(values[i], value_frac, width, frac, signed, rounding, overflow)
    return out


def cast_codes(values, value_frac: int, t: FixedType) -> np.ndarray:
    """Codes of `t` for the exact values `values * 2**-value_frac` (an int64 array)."""
    return _cast_codes(np.ascontiguousarray(values, dtype=np.int64), value_frac, *type_spec(t))


def rounded_codes(values, value_frac: int, t: FixedType) -> np.ndarray:
    """The values rounded onto t's grid with t's rounding mode, before any overflow handling."""
    return _cast_codes(np.ascontiguousarray(values, dtype=np.int64), value_frac, _REFERENCE_WIDTH, t.fractional, 1,
                       ROUNDING_ID[t.rounding], O_SAT)


def cast_interval(lo, hi, value_frac: int, t: FixedType):
    """An enclosure of the codes of t for exact values in [lo, hi] (elementwise; empty stays empty)."""
    r_lo, r_hi = rounded_codes(lo, value_frac, t), rounded_codes(hi, value_frac, t)
    c_lo, c_hi = cast_codes(lo, value_frac, t), cast_codes(hi, value_frac, t)
    overflows = (r_hi > t.max_code) | (r_lo < t.min_code)
    if t.overflow in ("WRAP", "WRAP_SM"):
        c_lo, c_hi = np.where(overflows, t.min_code, c_lo), np.where(overflows, t.max_code, c_hi)
    elif t.overflow == "SAT_ZERO":  # in-range values keep their rounded code, overflowing ones become 0
        c_lo = np.where(overflows, np.minimum(np.clip(r_lo, t.min_code, t.max_code), 0), c_lo)
        c_hi = np.where(overflows, np.maximum(np.clip(r_hi, t.min_code, t.max_code), 0), c_hi)
    empty = np.asarray(lo) > np.asarray(hi)
    return np.where(empty, _EMPTY_LO, c_lo), np.where(empty, _EMPTY_HI, c_hi)


class _Hull:
    """The running enclosure of one site's pre-cast values, per element."""

    def __init__(self, site):
        self.site = site
        self.lo = np.full(site.elements, _EMPTY_LO, dtype=np.int64)
        self.hi = np.full(site.elements, _EMPTY_HI, dtype=np.int64)
        self.bits = np.zeros(site.elements, dtype=np.int64)  # known low bits of every value: none
        self.residue = np.zeros(site.elements, dtype=np.int64)
        self.alternatives = []  # (bits, residue) arrays: every value is congruent as above, or as one of these

    def cast(self, lo, hi, elements=slice(None)):
        """Record values in [lo, hi] at `elements` and return the enclosure of their cast."""
        self.lo[elements] = np.minimum(self.lo[elements], lo)
        self.hi[elements] = np.maximum(self.hi[elements], hi)
        return cast_interval(lo, hi, self.site.source_frac, self.site.type)

    def record(self, lo, hi, elements=slice(None)):
        self.lo[elements] = np.minimum(self.lo[elements], lo)
        self.hi[elements] = np.maximum(self.hi[elements], hi)

    def congruent(self, bits, residue, elements=slice(None)):
        """Every value cast at `elements` is `residue` mod 2**bits (a site cast once per element)."""
        bits = np.minimum(bits, 62)
        self.bits[elements] = bits
        self.residue[elements] = np.asarray(residue, dtype=np.int64) & ((np.int64(1) << bits) - 1)

    def congruent_to_one_of(self, classes):
        """Every value cast at an element is congruent as one of `classes`, (bits, residue) pairs of arrays over
        the site's elements (a site cast once per element)."""
        (bits, residue), *others = classes
        self.congruent(bits, residue)
        self.alternatives = []
        for bits, residue in others:
            bits = np.minimum(bits, 62)
            self.alternatives.append((bits, np.asarray(residue, dtype=np.int64) & ((np.int64(1) << bits) - 1)))

    def classes(self, element: int) -> list:
        """The (bits, residue) pairs one of which every value at `element` satisfies."""
        return [(int(b[element]), int(r[element])) for b, r in [(self.bits, self.residue), *self.alternatives]]


def low_zero_bits(values) -> np.ndarray:
    """Trailing zero bits of each integer (63 for 0)."""
    v = np.asarray(values, dtype=np.int64)
    return np.array([(int(c) & -int(c)).bit_length() - 1 if c else 63 for c in v.ravel()], np.int64).reshape(v.shape)


def _times(lo, hi, c):
    """Enclosure of x * c for x in [lo, hi] (c a constant or an array of constants)."""
    a, b = lo * c, hi * c
    return np.minimum(a, b), np.maximum(a, b)


def _square(lo, hi):
    a, b = lo * lo, hi * hi
    return np.where((lo <= 0) & (hi >= 0), 0, np.minimum(a, b)), np.maximum(a, b)


def _tree(lo, hi, first, count, hull):
    """Enclosure of nnet::reduce over elements first..first+count-1 of (lo, hi), casting every node via `hull`."""
    if count == 1:
        return lo[first:first + 1], hi[first:first + 1]
    left = 1
    while left * 2 < count:
        left *= 2
    a_lo, a_hi = (lo[first:first + 1], hi[first:first + 1]) if count == 2 else _tree(lo, hi, first, left, hull)
    b_lo, b_hi = ((lo[first + 1:first + 2], hi[first + 1:first + 2]) if count == 2
                  else _tree(lo, hi, first + left, count - left, hull))
    return hull.cast(a_lo + b_lo, a_hi + b_hi, [0])


# ---- one transfer function per op: (layer, manifest, input enclosures, site hulls) -> output enclosure ---------
_TRANSFERS = {}


def transfer(*ops):
    def wrap(fn):
        for op in ops:
            _TRANSFERS[op] = fn
        return fn

    return wrap


def _matmul(layer, inputs, hulls, index):
    x_lo, x_hi = inputs[0]
    w = layer.tensors["weight"].reshape(index.shape[1], -1)
    b = layer.tensors["bias"].ravel()
    bias, product, accum, result = hulls
    n_out = w.shape[1]
    out_lo, out_hi = np.empty(index.shape[0] * n_out, np.int64), np.empty(index.shape[0] * n_out, np.int64)
    for p in range(index.shape[0]):
        cols = slice(p * n_out, (p + 1) * n_out)
        acc_lo, acc_hi = bias.cast(b, b, cols)
        for i in summation_order(layer, index.shape[1]):
            src = index[p, i]
            q_lo, q_hi = product.cast(*_times(x_lo[src], x_hi[src], w[i]), cols)
            acc_lo, acc_hi = accum.cast(acc_lo + q_lo, acc_hi + q_hi, cols)
        out_lo[cols], out_hi[cols] = result.cast(acc_lo, acc_hi, cols)
    return out_lo, out_hi


@transfer("dense")
def _dense(layer, manifest, inputs, hulls):
    return _matmul(layer, inputs, hulls, np.arange(layer.params["n_in"]).reshape(1, -1))


@transfer("conv2d")
def _conv2d(layer, manifest, inputs, hulls):
    return _matmul(layer, inputs, hulls, im2col_index(layer.params))


@transfer("batchnorm")
def _batchnorm(layer, manifest, inputs, hulls):
    (x_lo, x_hi), (site,) = inputs[0], hulls
    x_t, s_t, b_t = manifest.producer_type(layer.inputs[0]), layer.types["scale"], layer.types["bias"]
    channel = scale_channel(layer)
    scale, bias = layer.tensors["scale"].ravel()[channel], layer.tensors["bias"].ravel()[channel]
    frac = site.site.source_frac
    v_lo, v_hi = _times(x_lo, x_hi, scale)
    shift, b = frac - x_t.fractional - s_t.fractional, bias << (frac - b_t.fractional)
    return site.cast((v_lo << shift) + b, (v_hi << shift) + b)


@transfer("relu", "leaky_relu")
def _rectifier(layer, manifest, inputs, hulls):
    (x_lo, x_hi), (positive, negative) = inputs[0], hulls
    alpha = layer.params["alpha"] if layer.op == "leaky_relu" else 0
    up = x_hi > 0
    p_lo, p_hi = positive.cast(np.where(up, np.maximum(x_lo, 1), _EMPTY_LO), np.where(up, x_hi, _EMPTY_HI))
    down = x_lo <= 0
    n_lo, n_hi = _times(x_lo, np.minimum(x_hi, 0), alpha)
    n_lo, n_hi = negative.cast(np.where(down, n_lo, _EMPTY_LO), np.where(down, n_hi, _EMPTY_HI))
    return np.minimum(p_lo, n_lo), np.maximum(p_hi, n_hi)


@transfer("linear", "reshape", "zeropad2d", "upsampling2d")
def _gather(layer, manifest, inputs, hulls):
    (x_lo, x_hi), (site,) = inputs[0], hulls
    index = gather_index(layer)
    inside = index >= 0
    src = np.where(inside, index, 0)
    lo, hi = site.cast(np.where(inside, x_lo[src], _EMPTY_LO), np.where(inside, x_hi[src], _EMPTY_HI))
    return np.where(inside, lo, 0), np.where(inside, hi, 0)


@transfer("avgpool2d")
def _avgpool2d(layer, manifest, inputs, hulls):
    (x_lo, x_hi), (accum, result) = inputs[0], hulls
    x_frac, acc_frac = manifest.producer_type(layer.inputs[0]).fractional, layer.types["accum"].fractional
    frac = accum.site.source_frac
    window, count = pool_windows(layer.params)
    acc_lo, acc_hi = np.zeros(len(window), np.int64), np.zeros(len(window), np.int64)
    for t in range(window.shape[1]):
        src = window[:, t]
        inside = src >= 0
        rows = np.flatnonzero(inside)
        lo = (acc_lo[rows] << (frac - acc_frac)) + (x_lo[src[rows]] << (frac - x_frac))
        hi = (acc_hi[rows] << (frac - acc_frac)) + (x_hi[src[rows]] << (frac - x_frac))
        acc_lo[rows], acc_hi[rows] = accum.cast(lo, hi, rows)
    divide = lambda a: np.where(a >= 0, a // count, -(-a // count))  # noqa: E731  (C division: toward zero)
    return result.cast(divide(acc_lo), divide(acc_hi))


@transfer("kl_divergence")
def _kl(layer, manifest, inputs, hulls):
    (m_lo, m_hi), (lv_lo, lv_hi) = inputs
    mean_sq, plus_one, index, minus_exp, minus_mean_sq, total, mean, result = hulls
    mean_t, logvar_t = (manifest.producer_type(name) for name in layer.inputs)
    acc_t, table_t = layer.types["accum"], layer.types["exp_table"]
    table = layer.tensors["exp_table"].ravel()
    sq_lo, sq_hi = mean_sq.cast(*_square(m_lo, m_hi))
    one = constant_code(1.0, logvar_t)
    k_lo, k_hi = plus_one.cast(one + lv_lo, one + lv_hi)
    scale, shift, offset = exp_table_index(layer, manifest)
    i_lo, i_hi = ((lv_lo * scale) >> shift) + offset, ((lv_hi * scale) >> shift) + offset
    index.record(i_lo, i_hi)
    i_lo, i_hi = np.clip(i_lo, 0, len(table) - 1), np.clip(i_hi, 0, len(table) - 1)
    e_lo = np.array([table[a:b + 1].min() for a, b in zip(i_lo, i_hi)], dtype=np.int64)
    e_hi = np.array([table[a:b + 1].max() for a, b in zip(i_lo, i_hi)], dtype=np.int64)
    f2 = minus_exp.site.source_frac
    up_k, up_e = f2 - acc_t.fractional, f2 - table_t.fractional
    k_lo, k_hi = minus_exp.cast((k_lo << up_k) - (e_hi << up_e), (k_hi << up_k) - (e_lo << up_e))
    kl_lo, kl_hi = minus_mean_sq.cast(k_lo - sq_hi, k_hi - sq_lo)
    order = summation_order(layer, layer.params["n_in"])
    s_lo, s_hi = _tree(kl_lo[order], kl_hi[order], 0, layer.params["n_in"], total)
    s_lo, s_hi = mean.cast(*_times(s_lo, s_hi, constant_code(1.0 / layer.params["n_in"], acc_t)))
    return result.cast(*_times(s_lo, s_hi, constant_code(-0.5, layer.result)))


@transfer("mse")
def _mse(layer, manifest, inputs, hulls):
    (r_lo, r_hi), (c_lo, c_hi) = inputs
    diff, square, leaf, total, mean, result = hulls
    ref_t, rec_t = (manifest.producer_type(name) for name in layer.inputs)
    frac = diff.site.source_frac
    d_lo = (c_lo << (frac - rec_t.fractional)) - (r_hi << (frac - ref_t.fractional))
    d_hi = (c_hi << (frac - rec_t.fractional)) - (r_lo << (frac - ref_t.fractional))
    s_lo, s_hi = square.cast(*_square(*diff.cast(d_lo, d_hi)))
    l_lo, l_hi = leaf.cast(s_lo, s_hi)
    order = summation_order(layer, layer.params["n_in"])
    t_lo, t_hi = _tree(l_lo[order], l_hi[order], 0, layer.params["n_in"], total)
    m_lo, m_hi = mean.cast(*_times(t_lo, t_hi, constant_code(1.0 / layer.params["n_in"], layer.types["accum"])))
    return result.cast(m_lo, m_hi)


def _unknown(layer, manifest, inputs, hulls):
    """An op without a transfer: every site may see any value and the output any code, so nothing is proved."""
    for hull in hulls:
        hull.lo, hull.hi = np.full(hull.site.elements, -(1 << 62)), np.full(hull.site.elements, 1 << 62)
    return np.full(layer.size, layer.result.min_code), np.full(layer.size, layer.result.max_code)


# ---- known low bits: per tensor element, trailing zero bits of every code; per site, value mod 2**bits ---------
def layer_sites(layer, manifest: Manifest, inputs: list) -> dict:
    """{site name: hull} of one layer run alone on the input enclosures `inputs` ((lo, hi) per input): its interval
    transfer, without the affine refinement."""
    hulls = [_Hull(site) for site in plan_layer(layer, manifest).sites]
    _TRANSFERS.get(layer.op, _unknown)(layer, manifest, inputs, hulls)
    return {h.site.name: h for h in hulls}


def in_range(hull, elements=slice(None), t: FixedType | None = None) -> np.ndarray:
    """Per element: no cast at the site overflows its type, or type `t` (true where no cast happens)."""
    t = t or hull.site.type
    lo, hi = hull.lo[elements], hull.hi[elements]
    empty = lo > hi
    r_lo, r_hi = (rounded_codes(np.where(empty, 0, v), hull.site.source_frac, t) for v in (lo, hi))
    return empty | ((r_lo >= t.min_code + (t.overflow == "SAT_SYM")) & (r_hi <= t.max_code))


def _exact_zeros(zeros, hull, elements=slice(None)) -> np.ndarray:
    """Trailing zeros of the codes a site's casts give, from those of the pre-cast values: the cast is exact and the
    codes keep them (shifted) when no cast overflows and no dropped bit is set."""
    shift = hull.site.source_frac - hull.site.type.fractional
    empty = hull.lo[elements] > hull.hi[elements]  # no cast: no codes to constrain
    kept = in_range(hull, elements)
    return np.where(empty, 63, np.where(kept & (zeros >= shift), np.minimum(zeros - shift, 63), 0))


def _sum_low_bits(layer, hulls, x_zeros, x_lo, x_hi, index) -> np.ndarray:
    """Dense and convolution: with products exact on the accumulator's grid and an accumulator that wraps (or never
    saturates), each final sum is the bias code plus multiples of 2**(zeros of w*x + grid shift) over the inputs
    that are not always 0: record that on the result site; return the output codes' trailing zeros."""
    bias, product, accum, result = hulls
    acc_t = accum.site.type
    up = acc_t.fractional - product.site.source_frac
    r_lo, r_hi = (rounded_codes(v, acc_t.fractional, acc_t) for v in (accum.lo, accum.hi))
    kept = acc_t.overflow == "WRAP" or (r_lo.min() >= acc_t.min_code and r_hi.max() <= acc_t.max_code)
    if up < 0 or not kept or bias.site.source_frac > acc_t.fractional:
        return np.zeros(result.site.elements, dtype=np.int64)
    w = layer.tensors["weight"].reshape(index.shape[1], -1)
    n_out = w.shape[1]
    w_zeros = low_zero_bits(w) + up
    for p in range(index.shape[0]):
        cols = slice(p * n_out, (p + 1) * n_out)
        src = index[p]
        live = (x_lo[src] != 0) | (x_hi[src] != 0)
        zeros = np.where(live[:, None], w_zeros + x_zeros[src][:, None], 63).min(axis=0, initial=63)
        bits = np.minimum(zeros, acc_t.width if acc_t.overflow == "WRAP" else 63)
        result.congruent(bits, cast_codes(bias.lo[cols], bias.site.source_frac, acc_t), cols)
    return _exact_zeros(_value_zeros(result), result)


def _value_zeros(hull) -> np.ndarray:
    """Trailing zero bits known of every value a site casts, from its known low bits."""
    return np.min([np.where(r == 0, b, np.minimum(b, low_zero_bits(r)))
                   for b, r in [(hull.bits, hull.residue), *hull.alternatives]], axis=0)


_TRANSLATION_INVARIANT = ("TRN", "RND", "RND_CONV")
"""Roundings that commute with adding a multiple of 2**b to the value (b above the dropped bits): not those that
look at the sign."""


def _cast_class(hull) -> tuple:
    """(bits, residue) arrays: every code a site's casts give apart from its type's saturation codes (see
    `saturation_codes`) is residue mod 2**bits. Values v = r mod 2**b, b above the s dropped bits, round to the
    code of r plus a multiple of 2**(b - s) under a rounding that ignores the sign."""
    t = hull.site.type
    shift = hull.site.source_frac - t.fractional
    bits = np.where((hull.bits > shift) | (shift <= 0), hull.bits - shift, 0)
    if shift > 0 and t.rounding not in _TRANSLATION_INVARIANT:
        bits = np.zeros_like(bits)
    residue = rounded_codes(hull.residue, hull.site.source_frac, t)
    bits = np.minimum(bits, 62)
    return bits, residue & ((np.int64(1) << bits) - 1)


def _grid_zeros(hull) -> np.ndarray:
    """Trailing zeros of every code a site's casts give apart from its type's saturation codes."""
    bits, residue = _cast_class(hull)
    return np.where(residue == 0, bits, np.minimum(bits, low_zero_bits(residue)))


def saturation_codes(t: FixedType):
    """The codes a saturating cast into `t` gives when it overflows; None when an overflow may give any code (WRAP
    modes)."""
    return {"SAT": (t.min_code, t.max_code), "SAT_SYM": (t.min_code + 1, t.max_code), "SAT_ZERO": (0,)}.get(t.overflow)


def _batchnorm_low_bits(layer, manifest, site, x_zeros) -> np.ndarray:
    """x * scale, shifted onto the site's grid, plus the bias: every value is the bias mod 2**(zeros of x + zeros of
    the scale + shift)."""
    x_t, s_t, b_t = manifest.producer_type(layer.inputs[0]), layer.types["scale"], layer.types["bias"]
    channel = scale_channel(layer)
    scale, bias = layer.tensors["scale"].ravel()[channel], layer.tensors["bias"].ravel()[channel]
    frac = site.site.source_frac
    site.congruent(x_zeros + low_zero_bits(scale) + frac - x_t.fractional - s_t.fractional,
                   bias << (frac - b_t.fractional))
    return _exact_zeros(_value_zeros(site), site)


def _code_classes(tensor: str, enclosure, zeros) -> list:
    """(bits, residue) pairs of arrays over `tensor`'s elements, one of which each code satisfies: a multiple of
    2**zeros, or, where its producer's result cast saturates, a multiple of 2**(its casts' zeros) or one of the
    saturation codes it reaches."""
    result = enclosure.sites.get(tensor, {}).get("result")
    codes = None if result is None else saturation_codes(result.site.type)
    if codes is None or enclosure.manifest.layer(tensor).op not in CAST_OUTPUT:
        return [(zeros, np.zeros_like(zeros))]
    lo, hi = enclosure.outputs[tensor]
    bits, residue = _cast_class(result)
    main = (np.maximum(bits, zeros), np.where(bits >= zeros, residue, 0))
    return [main] + [(np.where((lo <= c) & (c <= hi), 63, main[0]), np.where((lo <= c) & (c <= hi), c, main[1]))
                     for c in codes]  # a code it never reaches: the main class once more


def _squares(bits, residue) -> tuple:
    """Classes of d*d for d = residue mod 2**bits: with r = residue = 2**t * u (u odd), d*d = 2**2t * u*u mod
    2**(t + bits + 1); 0 mod 2**(2 bits) for r = 0."""
    t = np.minimum(low_zero_bits(residue), bits)
    u = residue >> np.minimum(t, 62)
    square_bits = np.where(residue == 0, 2 * bits, t + bits + 1)
    square_bits = np.minimum(square_bits, 62)
    mask = (np.int64(1) << square_bits) - 1
    low = (u & mask) * (u & mask) & mask  # (u*u) mod 2**bits, wrapping products keep the low bits right
    return square_bits, np.where(residue == 0, 0, (low << np.minimum(2 * t, 62)) & mask)


def _mse_low_bits(layer, manifest, sites, zeros, enclosure) -> np.ndarray:
    """The difference is rec - ref on one grid: per class of the reference's codes (`_code_classes`), congruent
    mod the smaller power of two of the two; the square of an exact difference cast follows (`_squares`); each leaf
    casts the square's code, the mean multiplies the sum by the code of 1/n, the result casts the mean's code."""
    ref_t, rec_t = (manifest.producer_type(name) for name in layer.inputs)
    diff, square, leaf, mean, result = (sites[name] for name in ("diff", "square", "leaf", "mean", "result"))
    frac = diff.site.source_frac
    rec_bits = zeros[1] + frac - rec_t.fractional
    up = frac - ref_t.fractional
    classes = [(np.minimum(rec_bits, bits + up), -(residue << up))
               for bits, residue in _code_classes(layer.inputs[0], enclosure, zeros[0])]
    diff.congruent_to_one_of(classes)
    up = diff.site.type.fractional - frac  # the codes are the values, shifted, where the cast is exact
    exact = (up >= 0) & in_range(diff)
    square.congruent_to_one_of([_squares(np.where(exact, b + up, 0), np.where(exact, r << max(up, 0), 0))
                                for b, r in [(diff.bits, diff.residue), *diff.alternatives]])
    leaf.congruent(_exact_zeros(_value_zeros(square), square), 0)
    mean.congruent(low_zero_bits([constant_code(1.0 / layer.params["n_in"], layer.types["accum"])]), 0)
    result.congruent(_exact_zeros(_value_zeros(mean), mean), 0)
    return _exact_zeros(_value_zeros(result), result)


def _low_bits(layer, manifest, hulls, inputs, zeros, enclosure) -> np.ndarray:
    """Record the low bits known at `layer`'s sites; return the trailing zeros of its output codes."""
    none = np.zeros(layer.size, dtype=np.int64)
    if layer.op == "batchnorm":
        return _batchnorm_low_bits(layer, manifest, hulls[0], zeros[0])
    if layer.op == "mse":
        return _mse_low_bits(layer, manifest, {h.site.name: h for h in hulls}, zeros, enclosure)
    if layer.op in ("dense", "conv2d"):
        index = (np.arange(layer.params["n_in"]).reshape(1, -1) if layer.op == "dense"
                 else im2col_index(layer.params))
        return _sum_low_bits(layer, hulls, zeros[0], *inputs[0], index)
    if layer.op in ("linear", "reshape", "zeropad2d", "upsampling2d"):
        index = gather_index(layer)
        return np.where(index >= 0, _exact_zeros(zeros[0][np.maximum(index, 0)], hulls[0]), 63)
    if layer.op in ("relu", "leaky_relu"):
        alpha = layer.params["alpha"] if layer.op == "leaky_relu" else 0
        positive, negative = hulls
        return np.minimum(_exact_zeros(zeros[0], positive),
                          _exact_zeros(zeros[0] + low_zero_bits([alpha])[0], negative))
    if layer.op == "kl_divergence":  # sums times constant codes: multiples of their trailing zeros
        sites = {h.site.name: h for h in hulls}
        n = layer.params["n_in"]
        sites["mean"].congruent(low_zero_bits([constant_code(1.0 / n, layer.types["accum"])]), 0)
        sites["result"].congruent(low_zero_bits([constant_code(-0.5, layer.result)]), 0)
        return _exact_zeros(_value_zeros(sites["result"]), sites["result"])
    return none


def _narrowed(layer, hulls, out, refined) -> tuple:
    """The hulls intersected with those of `refined` (an enclosure of the same model whose hulls a linear program
    tightened), and the output with the cast of the tightened result hull (where the output is that cast)."""
    for hull in hulls:
        other = refined.sites[layer.name][hull.site.name]
        hull.lo, hull.hi = np.maximum(hull.lo, other.lo), np.minimum(hull.hi, other.hi)
    sites = {h.site.name: h for h in hulls}
    if layer.op not in CAST_OUTPUT:
        return out
    lo, hi = cast_interval(sites["result"].lo, sites["result"].hi, sites["result"].site.source_frac, layer.result)
    return np.maximum(out[0], lo), np.minimum(out[1], hi)


# ---- the analysis ----------------------------------------------------------------------------------------------
class Enclosure:
    """Per layer: its output code enclosure (lo, hi arrays) and its sites' pre-cast value hulls; `relational`
    tightens both with affine bounds in the input codes (affine.py), `refined` with the hulls of an earlier
    enclosure that linear programs tightened (relaxation.py), carried to every layer downstream."""

    def __init__(self, manifest: Manifest, input_lo=None, input_hi=None, relational: bool = True,
                 refined: "Enclosure | None" = None):
        t = manifest.input.type
        n = manifest.input.size
        lo = np.full(n, t.min_code, np.int64) if input_lo is None else np.asarray(input_lo, np.int64)
        hi = np.full(n, t.max_code, np.int64) if input_hi is None else np.asarray(input_hi, np.int64)
        self.manifest = manifest
        self.outputs = {manifest.input.name: (lo, hi)}
        self.sites = {}
        self.zeros = {manifest.input.name: np.zeros(n, dtype=np.int64)}
        self.affine = affine = AffineBounds(manifest, lo, hi) if relational else None
        for layer in manifest.layers:
            hulls = [_Hull(site) for site in plan_layer(layer, manifest).sites]
            inputs = [self.outputs[name] for name in layer.inputs]
            out = _TRANSFERS.get(layer.op, _unknown)(layer, manifest, inputs, hulls)
            out = out if affine is None else affine.refine(layer, manifest, inputs, hulls, out)
            self.outputs[layer.name] = out if refined is None else _narrowed(layer, hulls, out, refined)
            parent_zeros = [self.zeros[name] for name in layer.inputs]
            self.zeros[layer.name] = _low_bits(layer, manifest, hulls, inputs, parent_zeros, self)
            self.sites[layer.name] = {h.site.name: h for h in hulls}

    def unreachable(self, bins, trigger: Trigger | None = None) -> dict:
        """{bin id: the bound that proves it unreachable} for those of `bins` the enclosure excludes."""
        proofs = {}
        for b in bins:
            proof = self._trigger_proof(b, trigger) if b.site == TRIGGER_SITE else self._proof(b)
            if proof is not None:
                proofs[b.id] = proof
        return proofs

    def proof(self, bin_id: str):
        """The proof that the (non-trigger) bin `bin_id` is unreachable, or None."""
        layer, site, element, kind = bin_id.split("/")
        return self._proof(Bin(layer, site, int(element), kind))

    def _proof(self, b):
        hull = self.sites[b.layer][b.site]
        site = hull.site
        lo, hi = int(hull.lo[b.element]), int(hull.hi[b.element])
        if lo > hi:
            return "no cast happens at this site for any input in range"
        if site.clamp is not None:
            low, high = site.clamp
            if b.kind == "clamp_low" and lo >= low:
                return f"index >= {lo} >= {low} for every input in range"
            if b.kind == "clamp_high" and hi <= high:
                return f"index <= {hi} <= {high} for every input in range"
            return None
        t, frac = site.type, site.source_frac
        where = f"pre-cast value in [{lo * 2.0 ** -frac:.10g}, {hi * 2.0 ** -frac:.10g}]"
        r_lo, r_hi = (int(v) for v in rounded_codes(np.array([lo, hi]), frac, t))
        c_lo, c_hi = (int(v[0]) for v in cast_interval(np.array([lo]), np.array([hi]), frac, t))
        if b.kind == "sat_high" and r_hi <= t.max_code:
            return f"{where}: rounds to at most code {r_hi} <= max code {t.max_code} of {t}"
        if b.kind == "sat_low" and r_lo >= t.min_code:
            return f"{where}: rounds to at least code {r_lo} >= min code {t.min_code} of {t}"
        if b.kind == "wrap" and t.min_code <= r_lo and r_hi <= t.max_code:
            return f"{where}: rounds into [{r_lo}, {r_hi}], inside [{t.min_code}, {t.max_code}] of {t}"
        if b.kind == "at_min" and c_lo > t.min_code:
            return f"{where}: result code >= {c_lo} > min code {t.min_code} of {t}"
        if b.kind == "at_max" and c_hi < t.max_code:
            return f"{where}: result code <= {c_hi} < max code {t.max_code} of {t}"
        if b.kind == "tie":
            shift = frac - t.fractional
            if shift <= 0:
                return f"the cast from the 2^-{frac} grid into {t} drops no fractional bits"
            classes = [(min(bits, shift), residue) for bits, residue in hull.classes(b.element)]
            if all(bits and (residue - (1 << (shift - 1))) % (1 << bits) for bits, residue in classes):
                every = " or ".join(f"{residue} mod 2^{bits}" for bits, residue in classes)
                return (f"{where}: every value is {every} on the 2^-{frac} grid; a tie is {1 << (shift - 1)} mod "
                        f"2^{shift}")
            step, half = 1 << shift, 1 << (shift - 1)
            first = lo + (half - lo) % step
            if first > hi:
                return f"{where}: no value on the 2^-{frac} grid in it is a tie (first tie above is {first})"
        return None

    def _trigger_proof(self, b, trigger):
        lo, hi = (int(v[b.element]) for v in self.outputs[b.layer])
        first, last = trigger.window(b.kind)
        if hi < first or lo > last:
            return f"score code in [{lo}, {hi}] never meets [{first}, {last}]"
        step = self._step(b.layer, b.element, first, last)
        if step > 1 and first + (-first) % step > last:
            return (f"every score code in [{first}, {last}] would be a multiple of {step} (its known low bits); none "
                    f"is")
        return None

    def _step(self, tensor: str, element: int, first: int, last: int) -> int:
        """A power of two that every code `tensor`'s element can hold in [first, last] is a multiple of: from its
        known low bits, or, where no saturation code of the cast into it lies in [first, last], from the low bits
        of the casts that do not saturate."""
        zeros = int(self.zeros[tensor][element])
        result = self.sites.get(tensor, {}).get("result")
        if result is not None and self.manifest.layer(tensor).op in CAST_OUTPUT:
            codes = saturation_codes(result.site.type)
            if codes is not None and not any(first <= c <= last for c in codes):
                zeros = max(zeros, int(_grid_zeros(result)[element]))
        return 1 << min(zeros, 62)

    def never_holds(self, tensor: str, element: int, code: int):
        """Why `tensor`'s element never holds `code` (outside its enclosure, or not a multiple of its known low
        bits), or None."""
        lo, hi = (int(v[element]) for v in self.outputs[tensor])
        if not lo <= code <= hi:
            return f"code {code} lies outside the enclosure [{lo}, {hi}] of {tensor!r}"
        step = self._step(tensor, element, code, code)
        if code % step:
            return f"every code of {tensor!r} is a multiple of {step} (its known low bits), {code} is not"
        return None


def unreachable_bins(manifest: Manifest, trigger: Trigger | None = None, input_lo=None, input_hi=None) -> dict:
    """{bin id: proof} for every bin of the model that interval analysis over the input range proves unreachable."""
    return Enclosure(manifest, input_lo, input_hi).unreachable(coverage_bins(manifest, trigger), trigger)
