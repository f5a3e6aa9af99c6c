"""Element-wise activations as hls4ml 1.3.0's io_parallel nnet_activation.h computes them (Vivado and Vitis).

  relu, linear, leaky_relu: the ops of emulator.plan (their exporters live here);
  thresholded_relu: x > theta ? res(x) : 0;   prelu: x > 0 ? res(x) : res(alpha_i * x);
  sigmoid, softplus, softsign (R = 16) and tanh (R = 8): res(table[clamp(int(x * N / R) + (R/2 * N) / R, 0, N-1)]);
  elu: x >= 0 ? res(x) : res(alpha * table[min(int(x * N / -8), N-1)]);
  selu: x >= 0 ? res(lambda * x) : res(table[min(int(x * N / -8), N-1)]), lambda = ap_ufixed<16,1>(1.0507...);
  hard_sigmoid, hard_tanh: s = clip(slope * x + shift, 0, 1) in the exact sum type; res(s), res(2 s - 1);
  binary_tanh: res(x >= 0 ? 1 : -1) (an ap_int<2> cast to the result type).
N is the table size, `int(x * N / R)` ap_fixed's exact product divided by the integer R (towards zero, on x's grid)
and read by to_int (towards zero). Tables hold the codes nnet_activation.h's init_*_table computes (tables.py).
Sizes and types are read from the C++ configuration hls4ml generated for the layer, which the C-sim compiles.
"""

from __future__ import annotations

import re

import numba as nb
import numpy as np

from ..arith import type_spec
from ..fixed_type import FixedType, UnsupportedType
from ..hls4ml_export import UnsupportedLayer, _attr_type, _base, _type, _with_weights, register_exporter
from ..kernels import _JIT, aligned, observe_clamp, probed_cast
from ..manifest import register_op
from ..plan import Site, Step, _casts, _fits, _in_type, _product_bits, _sum_bits, constant_code, planner
from ..tables import activation_table

#: The table activations with their index divisor R (the table covers [-R/2, R/2)).
LOOKUPS = {"sigmoid": 16, "softplus": 16, "softsign": 16, "tanh": 8}
HARD = ("hard_sigmoid", "hard_tanh")
SELU_LAMBDA = (1.0507009873554805, FixedType(16, 1, signed=False))  # nnet::selu's `static const ap_ufixed<16,1>`
EXPONENTIAL_DIVISOR = -8  # elu and selu index with int(x * N / -8)

for _op in LOOKUPS:
    register_op(_op, types=("table",), tensors=("table",))
register_op("elu", types=("table", "param"), tensors=("table",))
register_op("selu", types=("table", "lambda"), tensors=("table",))
register_op("thresholded_relu", types=("param",))
register_op("prelu", types=("param",), tensors=("param",))
for _op in HARD:
    register_op(_op, types=("slope", "shift"))
register_op("binary_tanh")


# ---- the layer's generated C++ configuration ---------------------------------------------------------------
def refuse(node, what: str):
    """UnsupportedLayer naming the layer, its class and what is not supported."""
    return UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): {what}")


def config_field(node, name: str) -> str | None:
    """The text of `name = ...;` or `typedef ... name;` in the config struct hls4ml generated for the layer."""
    text = node.get_attr("config_cpp")
    if text is None:
        raise refuse(node, "hls4ml generated no C++ configuration for it (config_cpp), which sets its tables")
    typedef = re.search(rf"typedef\s+(.+?)\s+{name}\s*;", text)
    if typedef:
        return typedef.group(1)
    value = re.search(rf"\b{name}\s*=\s*([^;]+);", text)
    return value.group(1).strip() if value else None


def config_number(node, name: str) -> float:
    text = config_field(node, name)
    if text is None:
        raise refuse(node, f"its C++ configuration sets no {name}")
    return float(text.rstrip("fF"))


def config_type(node, name: str, default: FixedType | None = None) -> FixedType:
    """The C++ type `name` of the layer's config: an ap_fixed spelling, or a type name hls4ml defined for one of
    the layer's type attributes; `default` (the base struct's typedef) when the config does not set it."""
    text = config_field(node, name)
    if text is None:
        if default is None:
            raise refuse(node, f"its C++ configuration sets no {name}")
        return default
    if text.startswith("ap_"):
        try:
            return FixedType.parse(text)
        except UnsupportedType as exc:
            raise refuse(node, f"{name}: {exc}") from None
    for value in node.attributes.values():
        if getattr(value, "name", None) == text and hasattr(value, "precision"):
            return _type(node, value.precision, name)
    raise refuse(node, f"{name} is the C++ type {text!r}, which is none of its type attributes")


def _table(layer, node, kind: str):
    """Put the layer's table (size and type from the config) into the layer as the tensor and type 'table'."""
    size = int(config_number(node, "table_size"))
    table_t = config_type(node, "table_t")
    layer.types["table"] = table_t
    layer.tensors["table"] = activation_table(kind, size, table_t)
    return layer


def _scalar_param(node, value: float) -> tuple:
    """(code, type) of a float parameter passed to the template as param_t."""
    param_t = config_type(node, "param_t")
    return constant_code(float(value), param_t), param_t


# ---- exporters ---------------------------------------------------------------------------------------------
@register_exporter("Activation", "QActivation")
def _activation(node):
    kind = str(node.get_attr("activation")).lower()
    if kind in ("relu", "linear"):
        return _base(node, kind)
    if kind in LOOKUPS:
        divisor = LOOKUPS[kind]
        layer = _table(_base(node, kind), node, kind)
        size = layer.tensors["table"].size
        layer.params.update(divisor=divisor, offset=(divisor // 2 * size) // divisor)
        return layer
    if kind == "binary_tanh":
        precision = node.get_output_variable().type.precision
        integer = "IntegerPrecisionType" in {cls.__name__ for cls in type(precision).__mro__}
        if integer and precision.width == 1 and not precision.signed:
            raise refuse(node, "binary_tanh into an ap_uint<1> result (nnet::binary_cast's special case) is not "
                               "supported")
        return _base(node, "binary_tanh")
    if kind == "selu":
        layer = _table(_base(node, "selu"), node, "selu")
        value, lambda_t = SELU_LAMBDA
        layer.params["lambda"] = constant_code(value, lambda_t)
        layer.types["lambda"] = lambda_t
        return layer
    raise refuse(node, f"activation {kind!r} is not supported")


@register_exporter("LeakyReLU", "ParametrizedActivation")
def _parametrized(node):
    kind = str(node.get_attr("activation")).lower()
    if kind in ("leakyrelu", "leaky_relu"):
        param_t = _attr_type(node, "param_t")
        layer = _base(node, "leaky_relu", alpha=constant_code(float(node.get_attr("activ_param")), param_t))
        layer.types["param"] = param_t
        return layer
    if kind not in ("thresholdedrelu", "elu"):
        raise refuse(node, f"activation {kind!r} is not supported")
    op = "thresholded_relu" if kind == "thresholdedrelu" else "elu"
    code, param_t = _scalar_param(node, node.get_attr("activ_param"))
    layer = _base(node, op, **{"theta" if op == "thresholded_relu" else "alpha": code})
    layer.types["param"] = param_t
    return _table(layer, node, "elu") if op == "elu" else layer


@register_exporter("PReLU")
def _prelu(node):
    return _with_weights(_base(node, "prelu"), node, ("param",))


@register_exporter("HardActivation")
def _hard(node):
    kind = str(node.get_attr("activation")).lower()
    if kind not in HARD:
        raise refuse(node, f"activation {kind!r} is not supported")
    layer = _base(node, kind)
    for role in ("slope", "shift"):
        layer.types[role] = t = _attr_type(node, f"{role}_t")
        layer.params[role] = constant_code(config_number(node, role), t)
    return layer


# ---- kernels -----------------------------------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def truncated_quotient(a, b):
    """a / b in C: the quotient rounded towards zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


@nb.njit(inline="always", cache=True)
def table_position(code, frac, size, divisor):
    """int(x * size / divisor) for x = code * 2**-frac, as the C-sim computes it: ap_fixed divides the product's
    code by the integer (towards zero), to_int drops the fraction (towards zero)."""
    q = truncated_quotient(code * size, divisor)
    return truncated_quotient(q, np.int64(1) << frac) if frac > 0 else q << -frac


@nb.njit(**_JIT)
def table_cast(x, x_frac, divisor, offset, table, table_frac, scale, scale_frac, split, pos_scale, pos_frac, res_spec,
               probe):
    """y = res(scale * table[clamp(int(x * N / divisor) + offset, 0, N - 1)]) (sigmoid, tanh, softplus, softsign, and
    elu / selu for x < 0); where `split` and x >= 0, y = res(pos_scale * x) instead (elu, selu)."""
    n_events, n_in = x.shape
    size = table.shape[0]
    y = np.empty((n_events, n_in), dtype=np.int64)
    for n in nb.prange(n_events):
        for i in range(n_in):
            v = x[n, i]
            if split and v >= 0:
                y[n, i] = probed_cast(probe, n, 2, i, pos_scale * v, x_frac + pos_frac, res_spec)
            else:
                index = table_position(v, x_frac, size, divisor) + offset
                observe_clamp(probe, n, 0, i, index, 0, size - 1)
                index = min(max(index, 0), size - 1)
                y[n, i] = probed_cast(probe, n, 1, i, scale * table[index], table_frac + scale_frac, res_spec)
    return y


RECTIFIER_SITES = ("positive", "negative")


@nb.njit(**_JIT)
def rectifier_cast(x, x_frac, theta, theta_frac, alpha, alpha_frac, res_spec, probe):
    """thresholded_relu, prelu: x > theta (compared exactly) ? res(x) : res(alpha[i] * x) (alpha 0: 0)."""
    n_events, n_in = x.shape
    frac = max(x_frac, theta_frac)
    bar = aligned(theta, theta_frac, frac)
    y = np.empty((n_events, n_in), dtype=np.int64)
    for n in nb.prange(n_events):
        for i in range(n_in):
            v = x[n, i]
            if aligned(v, x_frac, frac) > bar:
                y[n, i] = probed_cast(probe, n, 0, i, v, x_frac, res_spec)
            else:
                y[n, i] = probed_cast(probe, n, 1, i, alpha[i] * v, x_frac + alpha_frac, res_spec)
    return y


HARD_SITES = ("result",)


@nb.njit(**_JIT)
def hard_cast(x, x_frac, slope, slope_frac, shift, shift_frac, frac, tanh, res_spec, probe):
    """hard_sigmoid / hard_tanh: s = slope * x + shift exactly on the grid 2**-frac, clipped to [0, 1];
    res(s), or res(2 s - 1) for hard_tanh."""
    n_events, n_in = x.shape
    one = np.int64(1) << frac
    bias = aligned(shift, shift_frac, frac)
    y = np.empty((n_events, n_in), dtype=np.int64)
    for n in nb.prange(n_events):
        for i in range(n_in):
            s = aligned(slope * x[n, i], x_frac + slope_frac, frac) + bias
            s = min(max(s, 0), one)
            y[n, i] = probed_cast(probe, n, 0, i, 2 * s - one if tanh else s, frac, res_spec)
    return y


BINARY_SITES = ("result",)


@nb.njit(**_JIT)
def sign_cast(x, res_spec, probe):
    """binary_tanh: res(1) where x >= 0, else res(-1) (static_cast of an ap_int<2>)."""
    n_events, n_in = x.shape
    y = np.empty((n_events, n_in), dtype=np.int64)
    for n in nb.prange(n_events):
        for i in range(n_in):
            y[n, i] = probed_cast(probe, n, 0, i, 1 if x[n, i] >= 0 else -1, 0, res_spec)
    return y


# ---- planners ----------------------------------------------------------------------------------------------
def check_index(layer, x_t: FixedType, size: int, divisor: int, offset: int):
    """Refuse inputs whose table position leaves int64 (code * N) or C's int (what to_int returns)."""
    _fits(layer, x_t.width + int(size).bit_length(), "the table position x * N")
    largest = max(abs(x_t.min_code), x_t.max_code) * size // abs(divisor)
    largest = largest >> x_t.fractional if x_t.fractional >= 0 else largest << -x_t.fractional
    if largest + abs(offset) >= 1 << 31:
        raise UnsupportedType(f"layer {layer.name!r} ({layer.op}): the table position of {x_t} inputs leaves C's "
                              f"int, where the C-sim wraps it")


def _table_step(layer, manifest, divisor: int, offset: int, scale: tuple, positive: tuple | None) -> Step:
    """The step of table_cast: table[...] times scale = (code, frac); where positive = (code, frac) is given,
    positive inputs times it instead."""
    x_t, table_t = _in_type(layer, manifest), layer.types["table"]
    table = np.ascontiguousarray(layer.tensors["table"].ravel())
    check_index(layer, x_t, table.size, divisor, offset)
    split = positive is not None
    positive = positive or (1, 0)
    _fits(layer, table_t.width + int(abs(scale[0])).bit_length() + 1, "scale * table")
    _fits(layer, x_t.width + int(abs(positive[0])).bit_length() + 1, "scale * x")
    sites = (Site("table_index", layer.size, clamp=(0, table.size - 1)),
             Site("table", layer.size, layer.result, table_t.fractional + scale[1]))
    if split:
        sites += (Site("positive", layer.size, layer.result, x_t.fractional + positive[1]),)
    args = (x_t.fractional, divisor, offset, table, table_t.fractional, *scale, split, *positive,
            type_spec(layer.result))
    return Step(lambda xs, probe: table_cast(xs[0], *args, probe), sites)


@planner("sigmoid")
@planner("tanh")
@planner("softplus")
@planner("softsign")
def _lookup(layer, manifest):
    return _table_step(layer, manifest, layer.params["divisor"], layer.params["offset"], (1, 0), None)


@planner("elu")
def _elu(layer, manifest):
    alpha = (layer.params["alpha"], layer.types["param"].fractional)
    return _table_step(layer, manifest, EXPONENTIAL_DIVISOR, 0, alpha, (1, 0))


@planner("selu")
def _selu(layer, manifest):
    return _table_step(layer, manifest, EXPONENTIAL_DIVISOR, 0, (1, 0),
                       (layer.params["lambda"], layer.types["lambda"].fractional))


def _rectifier_step(layer, manifest, theta: int, theta_frac: int, alpha: np.ndarray, alpha_frac: int) -> Step:
    x_t = _in_type(layer, manifest)
    _fits(layer, _sum_bits(x_t.fractional, x_t.width, theta_frac, int(abs(theta)).bit_length() + 1),
          "the comparison x > theta")
    _fits(layer, x_t.width + max(int(abs(alpha).max(initial=0)).bit_length(), 1) + 1, "alpha * x")
    args = (x_t.fractional, theta, theta_frac, np.ascontiguousarray(alpha, dtype=np.int64), alpha_frac,
            type_spec(layer.result))
    sites = _casts(RECTIFIER_SITES, layer.size, (layer.result, x_t.fractional),
                   (layer.result, x_t.fractional + alpha_frac))
    return Step(lambda xs, probe: rectifier_cast(xs[0], *args, probe), sites)


@planner("thresholded_relu")
def _thresholded_relu(layer, manifest):
    theta_t = layer.types["param"]
    return _rectifier_step(layer, manifest, layer.params["theta"], theta_t.fractional, np.zeros(layer.size), 0)


@planner("prelu")
def _prelu_planner(layer, manifest):
    return _rectifier_step(layer, manifest, 0, 0, layer.tensors["param"].ravel(), layer.types["param"].fractional)


def hard_grid(x_t: FixedType, slope_t: FixedType, shift_t: FixedType) -> int:
    """The fractional bits of slope * x + shift (ap_fixed's exact sum type), at least 0 so that 1 is on the grid."""
    return max(x_t.fractional + slope_t.fractional, shift_t.fractional, 0)


@planner("hard_sigmoid")
@planner("hard_tanh")
def _hard_planner(layer, manifest):
    x_t, slope_t, shift_t = _in_type(layer, manifest), layer.types["slope"], layer.types["shift"]
    frac = hard_grid(x_t, slope_t, shift_t)
    _fits(layer, max(_product_bits(x_t, slope_t) + frac - x_t.fractional - slope_t.fractional,
                     shift_t.width + frac - shift_t.fractional) + 2, "2 (slope * x + shift)")
    args = (x_t.fractional, layer.params["slope"], slope_t.fractional, layer.params["shift"], shift_t.fractional,
            frac, layer.op == "hard_tanh", type_spec(layer.result))
    sites = _casts(HARD_SITES, layer.size, (layer.result, frac))
    return Step(lambda xs, probe: hard_cast(xs[0], *args, probe), sites)


@planner("binary_tanh")
def _binary_planner(layer, manifest):
    spec = type_spec(layer.result)
    return Step(lambda xs, probe: sign_cast(xs[0], spec, probe), _casts(BINARY_SITES, layer.size, (layer.result, 0)))
