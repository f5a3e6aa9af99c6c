"""Interval analysis over the input range: a sound enclosure of every probe site's exact pre-cast values, and the
bins it proves unreachable, each with the bound that proves it.

The enclosure follows the arithmetic of /tmp/semantics.md with intervals of codes (int64, exact: the planner has
checked that every intermediate value fits). An element of a site no cast ever reaches has an empty interval.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from emulator.arith import cast_raw, type_spec
from emulator.fixed_type import FixedType
from emulator.manifest import Manifest
from emulator.plan import constant_code, plan_layer

from .bins import TRIGGER_SITE, Trigger, coverage_bins

_EMPTY_LO, _EMPTY_HI = np.iinfo(np.int64).max, np.iinfo(np.int64).min
_REFERENCE_WIDTH = 63


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
    wide = FixedType(_REFERENCE_WIDTH, _REFERENCE_WIDTH - t.fractional, True, t.rounding, "SAT")
    return cast_codes(values, value_frac, wide)


def cast_interval(lo, hi, value_frac: int, t: FixedType):
    """An enclosure of the codes of t for exact values in [lo, hi] (elementwise; empty stays empty)."""
    r_lo, r_hi = rounded_codes(lo, value_frac, t), rounded_codes(hi, value_frac, t)
    c_lo, c_hi = cast_codes(lo, value_frac, t), cast_codes(hi, value_frac, t)
    overflows = (r_hi > t.max_code) | (r_lo < t.min_code)
    if t.overflow in ("WRAP", "WRAP_SM"):
        c_lo, c_hi = np.where(overflows, t.min_code, c_lo), np.where(overflows, t.max_code, c_hi)
    elif t.overflow == "SAT_ZERO":
        c_lo, c_hi = np.where(overflows, np.minimum(c_lo, 0), c_lo), np.where(overflows, np.maximum(c_hi, 0), c_hi)
    empty = np.asarray(lo) > np.asarray(hi)
    return np.where(empty, _EMPTY_LO, c_lo), np.where(empty, _EMPTY_HI, c_hi)


class _Hull:
    """The running enclosure of one site's pre-cast values, per element."""

    def __init__(self, site):
        self.site = site
        self.lo = np.full(site.elements, _EMPTY_LO, dtype=np.int64)
        self.hi = np.full(site.elements, _EMPTY_HI, dtype=np.int64)

    def cast(self, lo, hi, elements=slice(None)):
        """Record values in [lo, hi] at `elements` and return the enclosure of their cast."""
        self.lo[elements] = np.minimum(self.lo[elements], lo)
        self.hi[elements] = np.maximum(self.hi[elements], hi)
        return cast_interval(lo, hi, self.site.source_frac, self.site.type)

    def record(self, lo, hi, elements=slice(None)):
        self.lo[elements] = np.minimum(self.lo[elements], lo)
        self.hi[elements] = np.maximum(self.hi[elements], hi)


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


# ---- one transfer function per op: (layer, manifest, input enclosures, hulls) -> output enclosure ---------------
def _matmul(layer, manifest, inputs, hulls, index):
    x_lo, x_hi = inputs[0]
    acc_t = layer.types["accum"]
    w = layer.tensors["weight"].reshape(index.shape[1], -1)
    b = layer.tensors["bias"].ravel()
    bias, product, accum, result = hulls
    x_frac = manifest.producer_type(layer.inputs[0]).fractional
    n_out = w.shape[1]
    out_lo, out_hi = np.empty(index.shape[0] * n_out, np.int64), np.empty(index.shape[0] * n_out, np.int64)
    for p in range(index.shape[0]):
        cols = slice(p * n_out, (p + 1) * n_out)
        acc_lo, acc_hi = bias.cast(b, b, cols)
        for i in range(index.shape[1]):
            src = index[p, i]
            q_lo, q_hi = product.cast(*_times(x_lo[src], x_hi[src], w[i]), cols)
            acc_lo, acc_hi = accum.cast(acc_lo + q_lo, acc_hi + q_hi, cols)
        out_lo[cols], out_hi[cols] = result.cast(acc_lo, acc_hi, cols)
    del x_frac
    return out_lo, out_hi


def _transfer(layer, manifest, inputs, hulls):
    op, p = layer.op, layer.params
    if op == "dense":
        return _matmul(layer, manifest, inputs, hulls, np.arange(p["n_in"]).reshape(1, -1))
    if op == "conv2d":
        from emulator.plan import im2col_index
        return _matmul(layer, manifest, inputs, hulls, im2col_index(p))
    x_lo, x_hi = inputs[0]
    x_t = manifest.producer_type(layer.inputs[0])
    if op == "batchnorm":
        s_t, b_t = layer.types["scale"], layer.types["bias"]
        n = layer.size
        channel = np.arange(n) % p["n_filt"] if p.get("n_filt", -1) > 0 else np.arange(n)
        scale, bias = layer.tensors["scale"].ravel()[channel], layer.tensors["bias"].ravel()[channel]
        frac = hulls[0].site.source_frac
        v_lo, v_hi = _times(x_lo, x_hi, scale)
        shift, b = frac - x_t.fractional - s_t.fractional, bias << (frac - b_t.fractional)
        return hulls[0].cast((v_lo << shift) + b, (v_hi << shift) + b)
    if op in ("relu", "leaky_relu"):
        alpha = p["alpha"] if op == "leaky_relu" else 0
        positive = x_hi > 0
        pos = hulls[0].cast(np.where(positive, np.maximum(x_lo, 1), _EMPTY_LO), np.where(positive, x_hi, _EMPTY_HI))
        negative = x_lo <= 0
        n_lo, n_hi = _times(x_lo, np.minimum(x_hi, 0), alpha)
        neg = hulls[1].cast(np.where(negative, n_lo, _EMPTY_LO), np.where(negative, n_hi, _EMPTY_HI))
        return np.minimum(pos[0], neg[0]), np.maximum(pos[1], neg[1])
    if op in ("linear", "reshape", "zeropad2d", "upsampling2d"):
        index = _gather_index(layer, manifest)
        inside = index >= 0
        src = np.where(inside, index, 0)
        lo, hi = hulls[0].cast(np.where(inside, x_lo[src], _EMPTY_LO), np.where(inside, x_hi[src], _EMPTY_HI))
        return np.where(inside, lo, 0), np.where(inside, hi, 0)
    if op == "avgpool2d":
        return _average(layer, manifest, inputs, hulls)
    if op == "kl_divergence":
        return _kl(layer, manifest, inputs, hulls)
    if op == "mse":
        return _mse(layer, manifest, inputs, hulls)
    raise NotImplementedError(f"no interval transfer for op {op!r}")


def _gather_index(layer, manifest):
    """The gather table the planner built, recovered from the step's kernel arguments."""
    from emulator import plan

    p = layer.params
    if layer.op in ("linear", "reshape"):
        return np.arange(layer.size)
    source = np.arange(p["in_height"] * p["in_width"] * p["n_chan"]).reshape(p["in_height"], p["in_width"], p["n_chan"])
    if layer.op == "upsampling2d":
        return source.repeat(p["height_factor"], axis=0).repeat(p["width_factor"], axis=1).ravel()
    del plan
    index = np.full((p["out_height"], p["out_width"], p["n_chan"]), -1, dtype=np.int64)
    index[p["pad_top"]:p["pad_top"] + p["in_height"], p["pad_left"]:p["pad_left"] + p["in_width"]] = source
    return index.ravel()
