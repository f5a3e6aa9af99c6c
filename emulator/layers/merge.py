"""Merge layers of two tensors as hls4ml's io_parallel nnet_merge.h computes them.

Element k of the output reads element k mod n1 of the first input and k mod n2 of the second (hls4ml's
broadcast; hls4ml writes n_elem outputs, the larger input size compared as text: a merge it leaves partly unset
is refused), and the exact ap_fixed result of the operation is cast once to the result type:
  add, subtract: res(x1 +- x2);  multiply: res(x1 * x2);  average: res((x1 + x2) * ap_ufixed<1,0>(0.5));
  maximum, minimum: x1 > x2 (x1 < x2) ? res(x1) : res(x2), compared exactly;
  concatenate: res of the element each position takes (concatenate{1,2,3}d along hls4ml's axis);
  dot (dot1d): res(acc(... acc(acc(0 + acc(x1_0 * x2_0)) + acc(x1_1 * x2_1)) ...)).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..arith import type_spec
from ..hls4ml_export import UnsupportedLayer, _attr_type, _base, register_exporter
from ..kernels import _JIT, aligned, probed_cast
from ..manifest import register_op
from ..plan import Step, _casts, _fits, _in_type, _sum_bits, planner

ARITHMETIC = ("add", "subtract", "multiply", "average")
SELECTION = ("maximum", "minimum")
for _op in ARITHMETIC + SELECTION + ("concatenate",):
    register_op(_op)
register_op("dot", types=("accum",))


# ---- export ------------------------------------------------------------------------------------------------
def _input_sizes(node) -> tuple:
    return tuple(int(np.prod(node.get_input_variable(name).shape)) for name in node.inputs)


@register_exporter("Merge")
def _merge(node):
    op = str(node.get_attr("op")).lower()
    if op not in ARITHMETIC + SELECTION:
        raise UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): merge op {op!r} is not supported "
                               f"(supported: {', '.join(ARITHMETIC + SELECTION)})")
    n_elem1, n_elem2 = _input_sizes(node)
    layer = _base(node, op, n_elem1=n_elem1, n_elem2=n_elem2)
    written = _elements_written(node)
    if written != layer.size:
        raise UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): hls4ml writes only {written} of its "
                               f"{layer.size} outputs (its merge config takes n_elem as the larger of the C++ size "
                               f"strings of the inputs' shapes, compared as text) and leaves the others unset; "
                               f"broadcast the smaller input to a shape whose size string sorts first")
    return layer


def _elements_written(node) -> int:
    """The n_elem of hls4ml's merge config: the max, as text, of the inputs' size_cpp() strings ('2*2*3' < '3')."""
    text = max(node.get_input_variable(name).size_cpp() for name in node.inputs)
    return int(np.prod([int(factor) for factor in text.split("*")]))


def concatenation_axis(rank: int, axis: int) -> int:
    """The axis of the non-batch shape that hls4ml's concatenate{rank}d joins along, for Keras' `axis`."""
    if rank == 1:
        return 0
    last = {2: (2, -1), 3: (3, -1)}[rank]
    if axis in last:
        return rank - 1
    return 1 if rank == 3 and axis in (2, -2) else 0


@register_exporter("Concatenate")
def _concatenate(node):
    rank = len(node.get_input_variable(node.inputs[0]).shape)
    if rank not in (1, 2, 3):
        raise UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): concatenation of rank-{rank} tensors is "
                               f"not supported")
    return _base(node, "concatenate", axis=concatenation_axis(rank, int(node.get_attr("axis"))),
                 n_elem1=_input_sizes(node)[0])


@register_exporter("Dot")
def _dot(node):
    from hls4ml.backends import get_backend

    first, second = (node.get_input_variable(name) for name in node.inputs)
    product = get_backend("vivado").product_type(first.type.precision, second.type.precision)
    if product != "mult":
        raise UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): hls4ml's {product!r} product (from the "
                               f"input types) is not supported; the emulator computes a plain x1*x2")
    layer = _base(node, "dot", n_in=int(first.shape[0]))
    layer.types["accum"] = _attr_type(node, "accum_t")
    return layer


# ---- index tables ------------------------------------------------------------------------------------------
def broadcast_index(layer) -> tuple:
    """For the element-wise merges: (first input's element, second input's element) of every output element."""
    k = np.arange(layer.size, dtype=np.int64)
    return k % layer.params["n_elem1"], k % layer.params["n_elem2"]


def concatenation_index(layer) -> tuple:
    """For concatenate: (element of the first input or -1, element of the second input or -1) per output element."""
    shape, axis, n1 = list(layer.shape), layer.params["axis"], layer.params["n_elem1"]
    first = shape[:axis] + [n1 * shape[axis] // layer.size] + shape[axis + 1:]
    second = shape[:axis] + [shape[axis] - first[axis]] + shape[axis + 1:]
    source = np.concatenate([np.arange(n1).reshape(first), n1 + np.arange(layer.size - n1).reshape(second)],
                            axis=axis).ravel().astype(np.int64)
    return np.where(source < n1, source, -1), np.where(source >= n1, source - n1, -1)


# ---- kernels -----------------------------------------------------------------------------------------------
ARITHMETIC_SITES = ("result",)
_SUBTRACT, _MULTIPLY, _AVERAGE = (ARITHMETIC.index(op) for op in ("subtract", "multiply", "average"))


@nb.njit(**_JIT)
def arithmetic_cast(x1, f1, i1, x2, f2, i2, op, frac, res_spec, probe):
    """y[n, k] = res(x1[n, i1[k]] op x2[n, i2[k]]), the exact value on the grid 2**-frac (add and subtract on the
    finer input grid, average one bit finer, multiply on f1 + f2)."""
    n_events = x1.shape[0]
    n_out = i1.shape[0]
    align = max(f1, f2)
    y = np.empty((n_events, n_out), dtype=np.int64)
    for n in nb.prange(n_events):
        for k in range(n_out):
            a, b = x1[n, i1[k]], x2[n, i2[k]]
            if op == _MULTIPLY:
                value = a * b
            elif op == _SUBTRACT:
                value = aligned(a, f1, align) - aligned(b, f2, align)
            else:
                value = aligned(a, f1, align) + aligned(b, f2, align)
            y[n, k] = probed_cast(probe, n, 0, k, value, frac, res_spec)
    return y


PICK_SITES = ("first", "second")
_MAXIMUM, _CONCATENATE = SELECTION.index("maximum"), len(SELECTION)


@nb.njit(**_JIT)
def pick_cast(x1, f1, i1, x2, f2, i2, rule, res_spec, probe):
    """y[n, k] = res(x1[n, i1[k]]) (site first) or res(x2[n, i2[k]]) (site second): the first where it is the
    larger (maximum), the smaller (minimum), or where i1[k] >= 0 (concatenate; -1 marks the other input's
    positions)."""
    n_events = x1.shape[0]
    n_out = i1.shape[0]
    align = max(f1, f2)
    y = np.empty((n_events, n_out), dtype=np.int64)
    for n in nb.prange(n_events):
        for k in range(n_out):
            if rule == _CONCATENATE:
                first = i1[k] >= 0
            else:
                a, b = aligned(x1[n, i1[k]], f1, align), aligned(x2[n, i2[k]], f2, align)
                first = a > b if rule == _MAXIMUM else a < b
            if first:
                y[n, k] = probed_cast(probe, n, 0, k, x1[n, i1[k]], f1, res_spec)
            else:
                y[n, k] = probed_cast(probe, n, 1, k, x2[n, i2[k]], f2, res_spec)
    return y


DOT_SITES = ("product", "accum", "result")


@nb.njit(**_JIT)
def dot_cast(x1, f1, x2, f2, acc_spec, res_spec, probe):
    """hls4ml dot1d: y[n, 0] = res(acc(...acc(0 + acc(x1_0 * x2_0)) ...)); product and accum sites report element i,
    result element 0."""
    n_events, n_in = x1.shape
    acc_frac = acc_spec[1]
    y = np.empty((n_events, 1), dtype=np.int64)
    for n in nb.prange(n_events):
        acc = 0
        for i in range(n_in):
            prod = probed_cast(probe, n, 0, i, x1[n, i] * x2[n, i], f1 + f2, acc_spec)
            acc = probed_cast(probe, n, 1, i, acc + prod, acc_frac, acc_spec)
        y[n, 0] = probed_cast(probe, n, 2, 0, acc, acc_frac, res_spec)
    return y


# ---- planners ----------------------------------------------------------------------------------------------
def _input_types(layer, manifest) -> tuple:
    return _in_type(layer, manifest, 0), _in_type(layer, manifest, 1)


@planner("add")
@planner("subtract")
@planner("multiply")
@planner("average")
def _arithmetic(layer, manifest):
    t1, t2 = _input_types(layer, manifest)
    op = ARITHMETIC.index(layer.op)
    if op == _MULTIPLY:
        _fits(layer, t1.width + t2.width, "the product")
        frac = t1.fractional + t2.fractional
    else:
        _fits(layer, _sum_bits(t1.fractional, t1.width, t2.fractional, t2.width), f"the {layer.op} sum")
        frac = max(t1.fractional, t2.fractional) + (op == _AVERAGE)
    (i1, i2), f1, f2, spec = broadcast_index(layer), t1.fractional, t2.fractional, type_spec(layer.result)
    sites = _casts(ARITHMETIC_SITES, layer.size, (layer.result, frac))
    return Step(lambda xs, probe: arithmetic_cast(xs[0], f1, i1, xs[1], f2, i2, op, frac, spec, probe), sites)


@planner("maximum")
@planner("minimum")
@planner("concatenate")
def _pick(layer, manifest):
    t1, t2 = _input_types(layer, manifest)
    if layer.op == "concatenate":
        rule, (i1, i2) = _CONCATENATE, concatenation_index(layer)
    else:
        _fits(layer, _sum_bits(t1.fractional, t1.width, t2.fractional, t2.width), "the comparison")
        rule, (i1, i2) = SELECTION.index(layer.op), broadcast_index(layer)
    spec = type_spec(layer.result)
    sites = _casts(PICK_SITES, layer.size, (layer.result, t1.fractional), (layer.result, t2.fractional))
    return Step(lambda xs, probe: pick_cast(xs[0], t1.fractional, i1, xs[1], t2.fractional, i2, rule, spec, probe),
                sites)


@planner("dot")
def _dot_planner(layer, manifest):
    t1, t2 = _input_types(layer, manifest)
    acc_t = layer.types["accum"]
    _fits(layer, t1.width + t2.width, "the product")
    _fits(layer, acc_t.width + 1, "the accumulator sum")
    n = layer.params["n_in"]
    sites = (_casts(DOT_SITES[:2], n, (acc_t, t1.fractional + t2.fractional), (acc_t, acc_t.fractional))
             + _casts(DOT_SITES[2:], 1, (layer.result, acc_t.fractional)))
    specs = (type_spec(acc_t), type_spec(layer.result))
    return Step(lambda xs, probe: dot_cast(xs[0], t1.fractional, xs[1], t2.fractional, *specs, probe), sites)
