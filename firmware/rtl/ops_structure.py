"""Verilog generators of the structure ops (emulator.layers: pooling, convolution, merge), fully parallel.

Each computes the casts of the emulator's kernel in the same order: max pooling as a chain of exact comparisons
(the first of equal values kept), the depthwise convolution with ops.neuron per output channel, and the merges of
two tensors element by element (exact sum, difference, product or comparison, then one cast).
"""

from __future__ import annotations

import dataclasses

from emulator.layers.merge import broadcast_index, concatenation_index
from emulator.layers.pooling import max_pad_code
from emulator.plan import im2col_index, pool_windows, summation_order

from .exact import add, aligned, product
from .ops import LayerBuild, accumulate, generator, neuron
from .verilog import Body, Value, extended, signed_width


# ---- exact comparison and selection ------------------------------------------------------------------------
def greater(body: Body, a: Value, b: Value) -> str:
    """1-bit expression: a > b, compared exactly on the finer grid (constant when the ranges decide it)."""
    frac = max(a.frac, b.frac)
    a_lo, a_hi = a.lo << (frac - a.frac), a.hi << (frac - a.frac)
    b_lo, b_hi = b.lo << (frac - b.frac), b.hi << (frac - b.frac)
    if a_lo > b_hi:
        return "1'b1"
    if a_hi <= b_lo:
        return "1'b0"
    width = signed_width(min(a_lo, b_lo), max(a_hi, b_hi))
    a, b = body.named(a), body.named(b)
    return f"($signed({aligned(a, frac, width)}) > $signed({aligned(b, frac, width)}))"


def chosen(body: Body, condition: str, when_true: Value, when_false: Value) -> Value:
    """condition ? when_true : when_false, for two values on the same grid."""
    if condition == "1'b1":
        return when_true
    if condition == "1'b0":
        return when_false
    lo, hi = min(when_true.lo, when_false.lo), max(when_true.hi, when_false.hi)
    width = signed_width(lo, hi)
    a, b = body.named(when_true), body.named(when_false)
    return body.value("m", f"{condition} ? {extended(a, width)} : {extended(b, width)}", width, a.frac, True, lo, hi)


# ---- pooling and depthwise convolution ---------------------------------------------------------------------
@generator("maxpool2d")
def _maxpool2d(build: LayerBuild):
    layer, x, x_t = build.layer, build.inputs[0], build.input_types[0]
    pad = Value.const(max_pad_code(x_t), x_t.fractional)
    window, _ = pool_windows(layer.params)
    outputs = []
    for cells in window:
        values = [x[c] if c >= 0 else pad for c in cells]
        best = values[0]
        for v in values[1:]:
            best = chosen(build.body, greater(build.body, v, best), v, best)
        outputs.append(build.cast(build.cast(best, layer.types["accum"], "acc"), layer.result, "y"))
    return outputs


@generator("depthwise2d")
def _depthwise2d(build: LayerBuild):
    layer, x = build.layer, build.inputs[0]
    index = im2col_index(layer.params, padded=True)
    weight, bias = layer.tensors["weight"].ravel(), layer.tensors["bias"].ravel()
    n_chan = bias.size
    order = summation_order(layer, index.shape[1] // n_chan)
    return [neuron(build, int(bias[c]), [(x[row[k * n_chan + c]], int(weight[k * n_chan + c])) for k in order
                                         if row[k * n_chan + c] >= 0])
            for row in index for c in range(n_chan)]


# ---- merges ------------------------------------------------------------------------------------------------
def _combined(body: Body, op: str, a: Value, b: Value) -> Value:
    """The exact value of a op b (average: the sum read one bit finer, i.e. times 0.5)."""
    if op == "multiply":
        return product(body, a, b)
    total = add(body, a, b, subtract=op == "subtract")
    return dataclasses.replace(total, frac=total.frac + 1) if op == "average" else total


@generator("add", "subtract", "multiply", "average")
def _arithmetic(build: LayerBuild):
    x1, x2 = build.inputs
    return [build.cast(_combined(build.body, build.layer.op, x1[i], x2[j]), build.layer.result, "y")
            for i, j in zip(*broadcast_index(build.layer))]


@generator("maximum", "minimum")
def _selection(build: LayerBuild):
    x1, x2 = build.inputs
    outputs = []
    for i, j in zip(*broadcast_index(build.layer)):
        a, b = x1[i], x2[j]
        first = greater(build.body, a, b) if build.layer.op == "maximum" else greater(build.body, b, a)
        outputs.append(chosen(build.body, first, build.cast(a, build.layer.result, "y"),
                              build.cast(b, build.layer.result, "y")))
    return outputs


@generator("concatenate")
def _concatenate(build: LayerBuild):
    cast = {}

    def element(k: int, src: int) -> Value:
        if (k, src) not in cast:
            cast[k, src] = build.cast(build.inputs[k][src], build.layer.result, "y")
        return cast[k, src]

    return [element(0, i) if i >= 0 else element(1, j) for i, j in zip(*concatenation_index(build.layer))]


@generator("dot")
def _dot(build: LayerBuild):
    acc_t = build.layer.types["accum"]
    terms = [build.cast(product(build.body, a, b), acc_t, "p") for a, b in zip(*build.inputs)]
    return [build.cast(accumulate(build, terms, acc_t), build.layer.result, "y")]
