"""Verilog generators of the quantizer ops (emulator.layers.quantizers), fully parallel, with the casts of the
emulator's kernels in the same order:

  dense_exponential, scale_exponential: r = r_T(x); the shift by the constant exponent e is a cast into r_T of r's
      code read on the grid 2**-(frac - e) (e >= 0: the bits move up and wrap; e < 0: they move down and the
      dropped ones are truncated, as ap_fixed's shifts do); the negation (sign 0) a cast of -r into r_T; then
      res(acc(b) + sum acc(product)) as a dense neuron, or res(product + b);
  dense_binary_input: each product is one of two constants, picked by the input bit and cast into the accumulator
      when the RTL is generated; in nnet::cast's binary-network case res(int(2 acc - n_in));
  binary_threshold, ternary_threshold: exact comparisons of the input with the constant thresholds.
"""

from __future__ import annotations

import dataclasses

from emulator.fixed_type import FixedType
from emulator.layers.quantizers import bnn_int_type, threshold_bounds
from emulator.plan import scale_channel, summation_order

from .casts import cast_constant
from .exact import add, scaled
from .ops import LayerBuild, accumulate, generator
from .ops_structure import chosen, greater
from .verilog import Value


def shifted(build: LayerBuild, r: Value, r_t: FixedType, exponent: int, sign: int) -> Value:
    """nnet::product::weight_exponential after r = r_T(a): r_T(r << exponent), negated in r_T when sign is 0."""
    moved = build.cast(dataclasses.replace(r, frac=r.frac - exponent), r_t, "sh")
    return moved if sign == 1 else build.cast(scaled(build.body, moved, -1, 0, moved.frac), r_t, "neg")


def _neuron(build: LayerBuild, bias: int, products) -> Value:
    """res(acc(b) + sum acc(p)) for products p already on the accumulator's grid (each cast into it)."""
    layer = build.layer
    acc_t, b_t = layer.types["accum"], layer.types["bias"]
    terms = [Value.const(cast_constant(bias, b_t.fractional, acc_t), acc_t.fractional), *products]
    return accumulate(build, terms, acc_t)


@generator("dense_exponential")
def _dense_exponential(build: LayerBuild):
    layer = build.layer
    r_t, acc_t = layer.types["product"], layer.types["accum"]
    shape = (layer.params["n_in"], layer.params["n_out"])
    sign, exponent = (layer.tensors[k].reshape(shape) for k in ("sign", "exponent"))
    bias = layer.tensors["bias"].ravel()
    widened = [build.cast(x, r_t, "r") for x in build.inputs[0]]
    order = summation_order(layer, shape[0])
    return [build.cast(_neuron(build, int(bias[j]), [
        build.cast(shifted(build, widened[i], r_t, int(exponent[i, j]), int(sign[i, j])), acc_t, "p")
        for i in order]), layer.result, "y") for j in range(shape[1])]


@generator("scale_exponential")
def _scale_exponential(build: LayerBuild):
    layer = build.layer
    r_t, b_t = layer.types["product"], layer.types["bias"]
    sign, exponent, bias = (layer.tensors[k].ravel() for k in ("sign", "exponent", "bias"))
    outputs = []
    for i, c in enumerate(scale_channel(layer)):
        product = shifted(build, build.cast(build.inputs[0][i], r_t, "r"), r_t, int(exponent[c]), int(sign[c]))
        total = add(build.body, product, Value.const(int(bias[c]), b_t.fractional))
        outputs.append(build.cast(total, layer.result, "y"))
    return outputs


@generator("dense_binary_input")
def _dense_binary_input(build: LayerBuild):
    layer = build.layer
    p_t, acc_t = layer.types["product"], layer.types["accum"]
    n_in, n_out = layer.params["n_in"], layer.params["n_out"]
    table = layer.tensors["product"].reshape(2, n_in, n_out)
    bias = layer.tensors["bias"].ravel()
    x = build.inputs[0]
    bits = [greater(build.body, xi, Value.const(0, xi.frac)) for xi in x]
    order = summation_order(layer, n_in)
    frac = max(acc_t.fractional, 0)
    outputs = []
    for j in range(n_out):
        products = []
        for i in order:
            zero, one = (Value.const(cast_constant(int(table[a, i, j]), p_t.fractional, acc_t), acc_t.fractional)
                         for a in (0, 1))
            products.append(one if one.code == zero.code else chosen(build.body, bits[i], one, zero))
        acc = _neuron(build, int(bias[j]), products)
        if layer.params["bnn_cast"]:
            offset = scaled(build.body, acc, 2 << (frac - acc_t.fractional), -(n_in << frac), frac)
            acc = build.cast(offset, bnn_int_type(n_in), "int")
        outputs.append(build.cast(acc, layer.result, "y"))
    return outputs


@generator("binary_threshold", "ternary_threshold")
def _threshold(build: LayerBuild):
    layer, x_t = build.layer, build.input_types[0]
    above, at_or_below = threshold_bounds(layer, x_t)
    levels = {code: Value.const(code, 0) for code in (-1, 0, 1)}
    outputs = []
    for i, c in enumerate(scale_channel(layer)):
        xi = build.inputs[0][i]
        low = chosen(build.body, greater(build.body, xi, Value.const(int(at_or_below[c]), x_t.fractional)),
                     levels[0], levels[-1])
        level = chosen(build.body, greater(build.body, xi, Value.const(int(above[c]), x_t.fractional)), levels[1], low)
        outputs.append(build.cast(level, layer.result, "y"))
    return outputs

