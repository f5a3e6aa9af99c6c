"""QKeras quantizers as hls4ml 1.3.0 converts them, and the products their types select (nnet_mult.h).

hls4ml reads a QKeras layer's quantizers into weight types and, for some, into layers of their own; the types then
pick the product a layer computes (FPGABackend.product_type, called by the Dense, BatchNormalization/ApplyAlpha,
convolution and Dot config templates):

  quantized_bits, alpha = 1        fixed-point weights, product 'mult' (a * w): op dense / batchnorm
  quantized_bits, alpha = x or     weights divided by the scale; an ApplyAlpha layer (nnet::normalize) multiplies
    'auto'                         it back: fixed-point scale, product 'mult': op batchnorm
  quantized_bits, alpha =          the same with a power-of-two scale hls4ml stores as exponents (ExponentType):
    'auto_po2'                     product 'weight_exponential': op scale_exponential
  quantized_po2                    ExponentType weights {sign, exponent}, product 'weight_exponential':
                                   op dense_exponential
  binary                           XnorPrecisionType (ap_uint<1>) weights 0/1, product 'weight_binary'
                                   (w == 0 ? -a : a): op dense with weights -1/+1 (exact, see plain_weights)
  ternary                          ap_int<2> weights, product 'weight_ternary' (w == 0 ? 0 : w == -1 ? -a : a):
                                   op dense with weights -1/0/+1 (exact, see plain_weights)
  binary / ternary activation      after a BatchNormalization, or with a threshold other than 0.5 (hls4ml then
                                   inserts an ApplyAlpha): BatchNormalizationQuantizedTanh, thresholds on the
                                   input's grid: ops binary_threshold (ap_uint<1> = XnorPrecisionType out) and
                                   ternary_threshold (ap_int<2> out)
  ternary activation, threshold    TernaryTanh, for which hls4ml writes no C++ (its output array is never
    0.5, after any other layer     written): refused
  binary activation alone          Activation binary_tanh; quantized_relu with negative_slope: LeakyReLU;
                                   quantized_tanh / quantized_sigmoid: HardActivation hard_tanh / hard_sigmoid
                                   (slope 0.5, shift 0.5; with use_real_*: the tanh / sigmoid tables);
                                   quantized_bits / quantized_relu activations: linear / relu
                                   (all in emulator.layers.activations)
A Dense layer reading ap_uint<1> data (the output of a binary BatchNormalizationQuantizedTanh, product
'data_binary' or 'both_binary') is op dense_binary_input. Anything else a product or quantizer can give is refused
(UnsupportedLayer naming the layer, its class and the product).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..arith import _wrap, cast, quantize, type_spec
from ..fixed_type import FixedType
from ..hls4ml_export import (UnsupportedLayer, _attr_type, _base, _type, _weight_codes, _with_weights,
                             register_exporter)
from ..kernels import _JIT, aligned, probed_cast
from ..manifest import register_op
from ..plan import (Site, Step, _casts, _fits, _in_type, _sum_bits, planner, scale_channel,
                    summation_order)

SIGN_TYPE = FixedType(2, 2)
"""ap_int<2>: the weights -1, 0, +1 that binary and ternary weights are mapped onto."""
BIT_TYPE = FixedType(1, 1, signed=False)
"""ap_uint<1>: XnorPrecisionType's C++ type, and the output of a binary BatchNormalizationQuantizedTanh."""

register_op("dense_exponential", types=("exponent", "product", "bias", "accum"), tensors=("sign", "exponent", "bias"))
register_op("scale_exponential", types=("exponent", "product", "bias"), tensors=("sign", "exponent", "bias"))
register_op("dense_binary_input", types=("product", "bias", "accum"), tensors=("product", "bias"))
register_op("binary_threshold", types=(), tensors=("threshold",))
register_op("ternary_threshold", types=(), tensors=("threshold_hi", "threshold_lo"))


# ---- products ----------------------------------------------------------------------------------------------
def refuse(node, what: str) -> UnsupportedLayer:
    return UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): {what}")


def product_kind(data_precision, weight_precision) -> str:
    """The nnet::product class hls4ml's config templates pick for these hls4ml precisions (mult, weight_binary,
    weight_ternary, data_binary, both_binary or weight_exponential)."""
    from hls4ml.backends import get_backend

    return get_backend("vivado").product_type(data_precision, weight_precision)


def is_bit(precision) -> bool:
    """True when the hls4ml precision's C++ type is ap_uint<1> (XnorPrecisionType, or an unsigned 1-bit integer):
    what nnet::cast tests for its binary-network special case."""
    kinds = {cls.__name__ for cls in type(precision).__mro__}
    if "XnorPrecisionType" in kinds:
        return True
    return "IntegerPrecisionType" in kinds and int(precision.width) == 1 and not bool(precision.signed)


def _precisions(node, key: str) -> tuple:
    return node.get_input_variable(node.inputs[0]).type.precision, node.weights[key].type.precision


def plain_weights(node, key: str = "weight") -> tuple:
    """(codes, type) of weight `key` such that a plain a * w, cast into the accumulator, is hls4ml's product.

    'mult': the weights as written. 'weight_binary' returns -a where the ap_uint<1> weight is 0, else a;
    'weight_ternary' returns 0 where the ap_int<2> weight is 0, -a where it is -1, else a (+1, and also -2). Either
    result has the type of -a, which holds +-a exactly, and is then assigned to the accumulator (or added to the
    bias, in nnet::normalize). a * w' for w' = -1, 0, +1 (ap_int<2>) is the same exact value, assigned or added the
    same way: the same code. So these layers are the ops dense / batchnorm with the weights w', and every path
    that computes those (reference kernels, fast path, RTL) computes them."""
    product = product_kind(*_precisions(node, key))
    codes, wtype = _weight_codes(node, key)
    if product == "mult":
        return codes, wtype
    if product == "weight_binary":
        return np.where(codes == 0, -1, 1).astype(np.int64), SIGN_TYPE
    if product == "weight_ternary":
        return np.where(codes == 0, 0, np.where(codes == -1, -1, 1)).astype(np.int64), SIGN_TYPE
    raise refuse(node, f"hls4ml's {product!r} product of its input and {key} types is not supported here")


def exponent_weights(node, key: str) -> tuple:
    """ExponentType weights as the C-sim loads them ({sign, exponent} text, sign and exponent read by ap_uint<1>
    and ap_int<W>): (sign codes 0/1, exponent codes, exponent type), shaped like the weight data."""
    var = node.weights[key]
    exponent_t = FixedType(int(var.type.precision.width), int(var.type.precision.width))
    data = np.asarray(var.data, dtype=np.float64)
    pairs = [text.strip("{}").split(",") for text in var]
    sign = quantize(np.array([float(s) for s, _ in pairs]), BIT_TYPE).reshape(data.shape)
    exponent = quantize(np.array([float(e) for _, e in pairs]), exponent_t).reshape(data.shape)
    return sign, exponent, exponent_t


def shift_product_type(x_t: FixedType, exponent_t: FixedType) -> FixedType:
    """r_T of nnet::product::weight_exponential: ap_fixed<2 (We + Wx), We + Wx>."""
    half = exponent_t.width + x_t.width
    return FixedType(2 * half, half)


def _exponential(node, op: str, key: str, **params):
    """A layer whose `key` is ExponentType (product weight_exponential): its sign, exponent and product type."""
    layer = _base(node, op, **params)
    layer.tensors["sign"], layer.tensors["exponent"], layer.types["exponent"] = exponent_weights(node, key)
    x_t = _type(node, node.get_input_variable(node.inputs[0]).type.precision, "input")
    layer.types["product"] = shift_product_type(x_t, layer.types["exponent"])
    return _with_weights(layer, node, ("bias",))


# ---- exporters ---------------------------------------------------------------------------------------------
@register_exporter("Dense")
def _dense(node):
    n_in, n_out = int(node.get_attr("n_in")), int(node.get_attr("n_out"))
    data_p, weight_p = _precisions(node, "weight")
    product = product_kind(data_p, weight_p)
    if product == "weight_exponential":
        layer = _exponential(node, "dense_exponential", "weight", n_in=n_in, n_out=n_out)
    elif product in ("data_binary", "both_binary") or (is_bit(data_p) and is_bit(weight_p)):
        layer = _binary_input_dense(node, product, is_bit(weight_p))
    else:
        layer = _with_weights(_base(node, "dense", n_in=n_in, n_out=n_out), node, ("bias",))
        layer.tensors["weight"], layer.types["weight"] = plain_weights(node)
    layer.types["accum"] = _attr_type(node, "accum_t")
    return layer


@register_exporter("BatchNormalization", "ApplyAlpha")
def _normalize(node):
    data_p, scale_p = _precisions(node, "scale")
    n_filt = int(node.get_attr("n_filt", -1))
    if product_kind(data_p, scale_p) == "weight_exponential":
        return _exponential(node, "scale_exponential", "scale", n_filt=n_filt)
    layer = _with_weights(_base(node, "batchnorm", n_filt=n_filt), node, ("bias",))
    layer.tensors["scale"], layer.types["scale"] = plain_weights(node, "scale")
    return layer


@register_exporter("BatchNormalizationQuantizedTanh")
def _threshold(node):
    """nnet::normalize_binary_tanh (quantize 2) / normalize_ternary_tanh (3): thresholds typed as the input."""
    levels = int(node.get_attr("quantize"))
    keys = {2: ("threshold",), 3: ("threshold_hi", "threshold_lo")}.get(levels)
    if keys is None:
        raise refuse(node, f"quantize = {levels} is not supported (2: binary, 3: ternary)")
    layer = _base(node, "binary_threshold" if levels == 2 else "ternary_threshold",
                  n_filt=int(node.get_attr("n_filt", -1)))
    expected = BIT_TYPE if levels == 2 else SIGN_TYPE
    if layer.result != expected:
        raise refuse(node, f"its result type {layer.result} is not the {expected} its C++ function writes")
    x_t = _type(node, node.get_input_variable(node.inputs[0]).type.precision, "input")
    for key in keys:
        codes, t = _weight_codes(node, key)
        if t != x_t:
            raise refuse(node, f"its {key} type {t} is not its input type {x_t}, which nnet::normalize_*_tanh takes")
        layer.tensors[key] = codes
    return layer


@register_exporter("TernaryTanh")
def _ternary_tanh(node):
    raise refuse(node, "hls4ml 1.3.0 writes no C++ call for a TernaryTanh layer (a ternary activation with "
                       "threshold 0.5 that does not follow a batch normalisation): the next layer reads an array "
                       "that nothing writes; use another threshold, or put a BatchNormalization before it")


def _binary_input_dense(node, product: str, bit_weights: bool):
    """Dense on ap_uint<1> data a: its products for a = 0 and a = 1 as a table (2, n_in, n_out), in their C++
    return type; `bnn_cast` when weights are ap_uint<1> too (nnet::cast: res(ap_int<ceillog2(n_in) + 2>(2 acc -
    n_in)))."""
    n_in, n_out = int(node.get_attr("n_in")), int(node.get_attr("n_out"))
    layer = _with_weights(_base(node, "dense_binary_input", n_in=n_in, n_out=n_out, bnn_cast=bit_weights), node,
                          ("bias",))
    w, w_t = _weight_codes(node, "weight")
    w = w.reshape(n_in, n_out)
    if product == "both_binary":
        table, p_t = np.stack([w == 0, w == 1]), BIT_TYPE
    elif product == "data_binary":
        table, p_t = np.stack([-w, w]), w_t.with_(width=w_t.width + 1, integer=w_t.integer + 1, signed=True)
    elif product == "mult":
        table, p_t = np.stack([0 * w, w]), w_t.with_(width=w_t.width + 1, integer=w_t.integer + 1)
    else:
        signs, _ = plain_weights(node)
        table, p_t = np.stack([0 * signs, signs]).reshape(2, n_in, n_out), SIGN_TYPE
    layer.tensors["product"] = table.astype(np.int64)
    layer.types["product"] = FixedType(p_t.width, p_t.integer, p_t.signed)
    return layer


def ceillog2(n: int) -> int:
    """nnet::ceillog2."""
    return 1 if n <= 2 else 1 + ceillog2((n + 1) // 2)


def bnn_int_type(n_in: int) -> FixedType:
    """The ap_int<ceillog2(n_in) + 2> of nnet::cast's binary-network case, as a cast target: ap_int from ap_fixed
    drops the fraction towards zero (C's double to int, ap_fixed's to_ap_int_base), then wraps."""
    bits = ceillog2(n_in) + 2
    return FixedType(bits, bits, rounding="TRN_ZERO")


# ---- kernels -----------------------------------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def shifted(r, exponent, sign, width):
    """nnet::product::weight_exponential after r = r_T(a): r << exponent in r_T (ap_fixed's shift moves the bits
    inside the type: wrapping on the left, dropping them on the right), then sign 1 ? r : r_T(-r)."""
    if exponent >= 0:
        r = _wrap(r << exponent, width, True) if exponent < width else 0
    else:
        r = r >> min(-exponent, 63)
    return r if sign == 1 else _wrap(-r, width, True)


@nb.njit(inline="always", cache=True)
def biases(probe, event, b, b_frac, acc_spec):
    """One event's accumulators, each set to acc(b_j) (site 0, element j)."""
    acc = np.empty(b.shape[0], dtype=np.int64)
    for j in range(b.shape[0]):
        acc[j] = probed_cast(probe, event, 0, j, b[j], b_frac, acc_spec)
    return acc


EXPONENTIAL_SITES = ("bias", "widen", "product", "accum", "result")


@nb.njit(**_JIT)
def exponential_matmul_cast(x, x_frac, index, sign, exponent, r_spec, b, b_frac, acc_spec, res_spec, probe):
    """hls4ml dense_latency with weight_exponential: y_j = res(acc(b_j) + sum_i acc(shifted(r_T(x_i), e_ij, s_ij)))
    with x_i = x[index[i]]; sites report output element j (widen: the cast of x_i into r_T, at element i)."""
    n_events = x.shape[0]
    n_in, n_out = sign.shape
    acc_frac, r_frac, r_width = acc_spec[1], r_spec[1], r_spec[0]
    y = np.empty((n_events, n_out), dtype=np.int64)
    for n in nb.prange(n_events):
        acc = biases(probe, n, b, b_frac, acc_spec)
        for i in range(n_in):
            r = probed_cast(probe, n, 1, index[i], x[n, index[i]], x_frac, r_spec)
            for j in range(n_out):
                prod = probed_cast(probe, n, 2, j, shifted(r, exponent[i, j], sign[i, j], r_width), r_frac, acc_spec)
                acc[j] = probed_cast(probe, n, 3, j, acc[j] + prod, acc_frac, acc_spec)
        for j in range(n_out):
            y[n, j] = probed_cast(probe, n, 4, j, acc[j], acc_frac, res_spec)
    return y


EXPONENTIAL_SCALE_SITES = ("widen", "result")


@nb.njit(**_JIT)
def exponential_scale_cast(x, x_frac, channel, sign, exponent, r_spec, b, b_frac, res_spec, probe):
    """hls4ml normalize with weight_exponential: y_i = res(shifted(r_T(x_i), e_c, s_c) + b_c), c = channel[i]."""
    n_events, n_in = x.shape
    r_frac, r_width = r_spec[1], r_spec[0]
    frac = max(r_frac, b_frac)
    y = np.empty((n_events, n_in), dtype=np.int64)
    for n in nb.prange(n_events):
        for i in range(n_in):
            c = channel[i]
            r = shifted(probed_cast(probe, n, 0, i, x[n, i], x_frac, r_spec), exponent[c], sign[c], r_width)
            value = aligned(r, r_frac, frac) + aligned(b[c], b_frac, frac)
            y[n, i] = probed_cast(probe, n, 1, i, value, frac, res_spec)
    return y


BINARY_INPUT_SITES = ("bias", "product", "accum", "result", "offset")


@nb.njit(**_JIT)
def binary_input_matmul_cast(x, index, table, p_frac, b, b_frac, acc_spec, bnn, int_spec, res_spec, probe):
    """hls4ml dense_latency on ap_uint<1> data: y_j = res(acc(b_j) + sum_i acc(table[x_i, i, j])), x_i =
    x[index[i]]; where `bnn` (nnet::cast's special case), y_j = res(int(2 acc - n_in)) with int = bnn_int_type
    (site offset) instead. Sites report output element j."""
    n_events = x.shape[0]
    n_in, n_out = table.shape[1], table.shape[2]
    acc_frac = acc_spec[1]
    frac = max(acc_frac, 0)
    y = np.empty((n_events, n_out), dtype=np.int64)
    for n in nb.prange(n_events):
        acc = biases(probe, n, b, b_frac, acc_spec)
        for i in range(n_in):
            a = x[n, index[i]]
            for j in range(n_out):
                prod = probed_cast(probe, n, 1, j, table[a, i, j], p_frac, acc_spec)
                acc[j] = probed_cast(probe, n, 2, j, acc[j] + prod, acc_frac, acc_spec)
        for j in range(n_out):
            if bnn:
                offset = 2 * aligned(acc[j], acc_frac, frac) - (np.int64(n_in) << frac)
                y[n, j] = probed_cast(probe, n, 3, j, probed_cast(probe, n, 4, j, offset, frac, int_spec), 0, res_spec)
            else:
                y[n, j] = probed_cast(probe, n, 3, j, acc[j], acc_frac, res_spec)
    return y


@nb.njit(**_JIT)
def threshold_cast(x, channel, above, at_or_below, probe):
    """normalize_{binary,ternary}_tanh on codes: 1 where x > above[c], else -1 where x <= at_or_below[c], else 0."""
    n_events, n_in = x.shape
    y = np.empty((n_events, n_in), dtype=np.int64)
    for n in nb.prange(n_events):
        for i in range(n_in):
            c = channel[i]
            v = x[n, i]
            y[n, i] = 1 if v > above[c] else (-1 if v <= at_or_below[c] else 0)
    return y


# ---- planners ----------------------------------------------------------------------------------------------
def _check_product(layer, x_t: FixedType) -> FixedType:
    r_t = layer.types["product"]
    _fits(layer, r_t.width + 1, "the shift product type")
    _fits(layer, _sum_bits(x_t.fractional, x_t.width, r_t.fractional, r_t.width), "the cast into the product type")
    return r_t


@planner("dense_exponential")
def _dense_exponential(layer, manifest):
    x_t, b_t, acc_t = _in_type(layer, manifest), layer.types["bias"], layer.types["accum"]
    r_t = _check_product(layer, x_t)
    _fits(layer, acc_t.width + 1, "the accumulator sum")
    _fits(layer, _sum_bits(b_t.fractional, b_t.width, acc_t.fractional, acc_t.width), "the bias cast")
    shape = (layer.params["n_in"], layer.params["n_out"])
    order = summation_order(layer, shape[0])
    sign, exponent = (np.ascontiguousarray(layer.tensors[k].reshape(shape)[order]) for k in ("sign", "exponent"))
    b = np.ascontiguousarray(layer.tensors["bias"].ravel())
    n_out = shape[1]
    sites = (Site("bias", n_out, acc_t, b_t.fractional), Site("widen", shape[0], r_t, x_t.fractional),
             *_casts(EXPONENTIAL_SITES[2:], n_out, (acc_t, r_t.fractional), (acc_t, acc_t.fractional),
                     (layer.result, acc_t.fractional)))
    args = (x_t.fractional, order, sign, exponent, type_spec(r_t), b, b_t.fractional, type_spec(acc_t),
            type_spec(layer.result))
    return Step(lambda xs, probe: exponential_matmul_cast(xs[0], *args, probe), sites)


@planner("scale_exponential")
def _scale_exponential(layer, manifest):
    x_t, b_t = _in_type(layer, manifest), layer.types["bias"]
    r_t = _check_product(layer, x_t)
    _fits(layer, _sum_bits(r_t.fractional, r_t.width, b_t.fractional, b_t.width), "product + bias")
    n = layer.size
    frac = max(r_t.fractional, b_t.fractional)
    args = (x_t.fractional, scale_channel(layer), layer.tensors["sign"].ravel(), layer.tensors["exponent"].ravel(),
            type_spec(r_t), layer.tensors["bias"].ravel(), b_t.fractional, type_spec(layer.result))
    sites = _casts(EXPONENTIAL_SCALE_SITES, n, (r_t, x_t.fractional), (layer.result, frac))
    return Step(lambda xs, probe: exponential_scale_cast(xs[0], *args, probe), sites)


@planner("dense_binary_input")
def _dense_binary_input(layer, manifest):
    p_t, b_t, acc_t = layer.types["product"], layer.types["bias"], layer.types["accum"]
    n_in, n_out = layer.params["n_in"], layer.params["n_out"]
    _fits(layer, acc_t.width + 1, "the accumulator sum")
    _fits(layer, _sum_bits(b_t.fractional, b_t.width, acc_t.fractional, acc_t.width), "the bias cast")
    _fits(layer, _sum_bits(p_t.fractional, p_t.width, acc_t.fractional, acc_t.width), "the product cast")
    _fits(layer, acc_t.width + max(-acc_t.fractional, 0) + int(n_in).bit_length() + 2, "2 acc - n_in")
    order = summation_order(layer, n_in)
    table = np.ascontiguousarray(layer.tensors["product"].reshape(2, n_in, n_out)[:, order])
    int_t = bnn_int_type(n_in)
    bnn = bool(layer.params["bnn_cast"])
    sites = _casts(BINARY_INPUT_SITES[:3], n_out, (acc_t, b_t.fractional), (acc_t, p_t.fractional),
                   (acc_t, acc_t.fractional))
    sites += ((Site("result", n_out, layer.result, 0), Site("offset", n_out, int_t, max(acc_t.fractional, 0)))
              if bnn else (Site("result", n_out, layer.result, acc_t.fractional),))
    args = (order, table, p_t.fractional, layer.tensors["bias"].ravel(), b_t.fractional, type_spec(acc_t), bnn,
            type_spec(int_t), type_spec(layer.result))
    return Step(lambda xs, probe: binary_input_matmul_cast(xs[0], *args, probe), sites)


def threshold_bounds(layer, x_t: FixedType) -> tuple:
    """(above, at_or_below) codes per channel: the output is 1 where x > above, else -1 where x <= at_or_below,
    else 0. Binary: 1 where x >= t, i.e. x > t - 1 on codes, else 0 (no code is at or below min_code - 1)."""
    if layer.op == "binary_threshold":
        above = layer.tensors["threshold"].ravel() - 1
        return above, np.full_like(above, x_t.min_code - 1)
    return tuple(layer.tensors[k].ravel() for k in ("threshold_hi", "threshold_lo"))


@planner("binary_threshold")
@planner("ternary_threshold")
def _threshold_planner(layer, manifest):
    channel = scale_channel(layer)
    above, at_or_below = threshold_bounds(layer, _in_type(layer, manifest))
    return Step(lambda xs, probe: threshold_cast(xs[0], channel, above, at_or_below, probe), ())
