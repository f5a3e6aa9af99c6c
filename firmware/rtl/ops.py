"""One Verilog generator per manifest op, registered by name: the combinational body of a layer module.

A generator gets a `LayerBuild` (the layer, its input elements as Values, the module body and cast library) and
returns the layer's output elements as Values holding codes of layer.result, in the arithmetic the manifest
specifies (the HLS templates of hls4ml 1.3.0): the same casts in the same order as the emulator's kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.fixed_type import FixedType, UnsupportedType
from emulator.manifest import Layer
from emulator.plan import constant_code, im2col_index, summation_order

from .casts import CastLibrary, cast_constant, cast_value, lowest_result
from .exact import add, aligned, clamped, divided, floor_shifted, scaled, square
from .verilog import Body, Value, extended, identifier, literal

_GENERATORS = {}


@dataclass
class LayerBuild:
    """What an op generator works with: the layer, its inputs (one list of element Values per input tensor)."""

    layer: Layer
    inputs: list
    input_types: list  # the FixedType of each input tensor
    body: Body
    casts: CastLibrary
    extra: list  # module-level text besides the cast functions (e.g. a ROM function)

    def cast(self, v: Value, t: FixedType, stem: str = "c") -> Value:
        return cast_value(self.body, self.casts, v, t, stem)


def generator(*ops: str):
    """Decorator registering `fn(build) -> [output Values]` for the manifest ops named."""

    def wrap(fn):
        for op in ops:
            _GENERATORS[op] = fn
        return fn

    return wrap


def generate_layer(build: LayerBuild) -> list:
    op = build.layer.op
    if op not in _GENERATORS:
        raise UnsupportedType(f"layer {build.layer.name!r}: op {op!r} has no RTL generator")
    return _GENERATORS[op](build)


# ---- dense and convolution --------------------------------------------------------------------------------
def _order_free(terms, acc: FixedType) -> bool:
    """True when summing `terms` (Values on acc's grid, each already cast) in any order gives the emulator's
    sequential cast-at-every-step result: under WRAP, or when no partial sum can leave acc's strict range."""
    if acc.overflow == "WRAP":
        return True
    return sum(min(t.lo, 0) for t in terms) >= lowest_result(acc) and sum(max(t.hi, 0) for t in terms) <= acc.max_code


def accumulate(build: LayerBuild, terms: list, acc: FixedType) -> Value:
    """acc(...acc(acc(terms[0] + terms[1]) + terms[2]) ...), terms on acc's grid: one adder when order-free."""
    terms = [t for t in terms if not t.is_zero] or [terms[0]]
    if len(terms) == 1:
        return terms[0]
    if _order_free(terms, acc):
        lo, hi = sum(t.lo for t in terms), sum(t.hi for t in terms)
        if not (acc.min_code <= lo and hi <= acc.max_code):
            lo, hi = acc.min_code, acc.max_code
        named = [build.body.named(t) for t in terms]
        expr = " + ".join(aligned(t, acc.fractional, acc.width) for t in named)
        return build.body.value("acc", expr, acc.width, acc.fractional, acc.signed, lo, hi)
    total = terms[0]
    for term in terms[1:]:
        total = build.cast(add(build.body, total, term), acc, "acc")
    return total


def neuron(build: LayerBuild, bias: int, taps) -> Value:
    """hls4ml's multiply-accumulate of one output: res(acc(b) + sum acc(x_i w_i)), taps [(x_i Value, w_i code)]."""
    layer = build.layer
    w_t, b_t, acc_t = layer.types["weight"], layer.types["bias"], layer.types["accum"]
    terms = [Value.const(cast_constant(bias, b_t.fractional, acc_t), acc_t.fractional)]
    for xi, w in taps:
        if w == 0 or xi.is_zero:
            continue
        product = scaled(build.body, xi, w, 0, xi.frac + w_t.fractional)
        terms.append(build.cast(product, acc_t, "p"))
    return build.cast(accumulate(build, terms, acc_t), layer.result, "y")


def matmul(build: LayerBuild, index: np.ndarray) -> list:
    """hls4ml dense_latency on each row of `index` (input element numbers, -1 for a padded tap, which reads 0)."""
    layer = build.layer
    x = build.inputs[0]
    weight = layer.tensors["weight"].reshape(index.shape[1], -1)
    bias = layer.tensors["bias"].ravel()
    order = summation_order(layer, index.shape[1])
    return [neuron(build, int(bias[j]), [(x[row[i]], int(weight[i, j])) for i in order if row[i] >= 0])
            for row in index for j in range(weight.shape[1])]


@generator("dense")
def _dense(build):
    n_in = build.layer.params["n_in"]
    return matmul(build, np.arange(n_in).reshape(1, n_in))


@generator("conv2d")
def _conv2d(build):
    return matmul(build, im2col_index(build.layer.params, padded=True))


# ---- element-wise -----------------------------------------------------------------------------------------
@generator("batchnorm")
def _batchnorm(build):
    layer = build.layer
    s_t, b_t = layer.types["scale"], layer.types["bias"]
    scale, bias = layer.tensors["scale"].ravel(), layer.tensors["bias"].ravel()
    n_filt = layer.params.get("n_filt", -1)
    outputs = []
    for i, x in enumerate(build.inputs[0]):
        c = i % n_filt if n_filt > 0 else i
        frac = max(x.frac + s_t.fractional, b_t.fractional)
        m = int(scale[c]) << (frac - x.frac - s_t.fractional)
        value = scaled(build.body, x, m, int(bias[c]) << (frac - b_t.fractional), frac)
        outputs.append(build.cast(value, layer.result, "y"))
    return outputs


def _positive(body: Body, x: Value) -> str:
    """1-bit expression: x > 0."""
    if x.lo > 0:
        return "1'b1"
    if x.hi <= 0:
        return "1'b0"
    x = body.named(x)
    nonzero = f"(|{x.bits(x.width - 1, 0)})"
    return f"(~{x.msb()} & {nonzero})" if x.signed else nonzero


def _select(build: LayerBuild, condition: str, when_true: Value, when_false: Value) -> Value:
    """condition ? when_true : when_false, both codes of the layer's result type."""
    if condition == "1'b1":
        return when_true
    if condition == "1'b0":
        return when_false
    t = build.layer.result
    a, b = build.body.named(when_true), build.body.named(when_false)
    expr = f"{condition} ? {extended(a, t.width)} : {extended(b, t.width)}"
    return build.body.value("y", expr, t.width, t.fractional, t.signed, min(a.lo, b.lo), max(a.hi, b.hi))


@generator("relu", "leaky_relu")
def _leaky_relu(build):
    layer = build.layer
    alpha = layer.params.get("alpha", 0) if layer.op == "leaky_relu" else 0
    alpha_frac = layer.types["param"].fractional if layer.op == "leaky_relu" else 0
    outputs = []
    for x in build.inputs[0]:
        passed = build.cast(x, layer.result, "y")
        scaled_down = build.cast(scaled(build.body, x, alpha, 0, x.frac + alpha_frac), layer.result, "y")
        outputs.append(_select(build, _positive(build.body, x), passed, scaled_down))
    return outputs


def gather(build: LayerBuild, index) -> list:
    """y[k] = res(x[index[k]]), or 0 where index[k] < 0; each source is cast once."""
    x, result = build.inputs[0], build.layer.result
    cast = {}
    outputs = []
    for src in np.asarray(index).ravel().tolist():
        if src < 0:
            outputs.append(Value.const(0, result.fractional))
            continue
        if src not in cast:
            cast[src] = build.cast(x[src], result, "y")
        outputs.append(cast[src])
    return outputs


@generator("linear", "reshape")
def _identity(build):
    return gather(build, np.arange(build.layer.size))


@generator("zeropad2d")
def _zeropad2d(build):
    p = build.layer.params
    index = np.full((p["out_height"], p["out_width"], p["n_chan"]), -1)
    source = np.arange(p["in_height"] * p["in_width"] * p["n_chan"]).reshape(p["in_height"], p["in_width"], p["n_chan"])
    index[p["pad_top"]:p["pad_top"] + p["in_height"], p["pad_left"]:p["pad_left"] + p["in_width"]] = source
    return gather(build, index)


@generator("upsampling2d")
def _upsampling2d(build):
    p = build.layer.params
    source = np.arange(p["in_height"] * p["in_width"] * p["n_chan"]).reshape(p["in_height"], p["in_width"], p["n_chan"])
    return gather(build, source.repeat(p["height_factor"], axis=0).repeat(p["width_factor"], axis=1))


@generator("avgpool2d")
def _avgpool2d(build):
    layer, x = build.layer, build.inputs[0]
    p, acc_t = layer.params, layer.types["accum"]
    outputs = []
    for oh in range(p["out_height"]):
        for ow in range(p["out_width"]):
            for f in range(p["n_filt"]):
                total, count = Value.const(0, acc_t.fractional), 0
                for kh in range(p["pool_height"]):
                    for kw in range(p["pool_width"]):
                        r = oh * p["stride_height"] + kh - p["pad_top"]
                        c = ow * p["stride_width"] + kw - p["pad_left"]
                        count += 1 if p.get("count_pad") else 0
                        if 0 <= r < p["in_height"] and 0 <= c < p["in_width"]:
                            count += 0 if p.get("count_pad") else 1
                            cell = x[(r * p["in_width"] + c) * p["n_filt"] + f]
                            total = build.cast(add(build.body, total, cell), acc_t, "acc")
                outputs.append(build.cast(divided(build.body, total, count), layer.result, "y"))
    return outputs


# ---- anomaly-score heads ----------------------------------------------------------------------------------
def tree_sum(build: LayerBuild, values: list, acc: FixedType) -> Value:
    """nnet::reduce with Op_add: a balanced tree (left part the largest power of two below n), cast at each node."""
    n = len(values)
    if n == 1:
        return values[0]
    if n == 2:
        return build.cast(add(build.body, values[0], values[1]), acc, "sum")
    left = 1
    while left * 2 < n:
        left *= 2
    return build.cast(add(build.body, tree_sum(build, values[:left], acc), tree_sum(build, values[left:], acc)),
                      acc, "sum")


def rom_name(tensor: str) -> str:
    """The name of the function holding the table `tensor` (rom_<tensor>: `table` is a Verilog keyword)."""
    return f"rom_{identifier(tensor)}"


def table_rom(build: LayerBuild, tensor: str, t: FixedType, index_width: int, first: int, last: int) -> str:
    """Declare the layer's table `tensor` (codes of t) as a function, a case statement over the reachable indices
    first..last; return its name."""
    layer = build.layer
    table = layer.tensors[tensor].ravel()
    name = rom_name(tensor)
    lines = [f"  // {tensor}[{first}..{last}] of {layer.name}: codes of {t}.",
             f"  function [{t.width - 1}:0] {name};",
             f"    input [{index_width - 1}:0] f_index;",
             "    begin",
             "      case (f_index)"]
    lines += [f"        {literal(i, index_width)}: {name} = {literal(int(table[i]), t.width)};"
              for i in range(first, last + 1)]
    lines += [f"        default: {name} = {literal(int(table[last]), t.width)};",
              "      endcase",
              "    end",
              "  endfunction"]
    build.extra.append("\n".join(lines))
    return name


@generator("kl_divergence")
def _kl_divergence(build):
    layer = build.layer
    p = layer.params
    acc_t, table_t, res_t = layer.types["accum"], layer.types["exp_table"], layer.result
    means, logvars = build.inputs
    lv_frac = logvars[0].frac
    table = layer.tensors["exp_table"].ravel()
    last = table.size - 1
    table_scale = p["table_size"] // (2 * p["exp_range"])
    shift = max(lv_frac, 0)
    scale = table_scale << max(-lv_frac, 0)
    offset = p["exp_range"] * table_scale
    one = constant_code(1.0, build.input_types[1])
    index_width = max(int(last).bit_length(), 1)
    rom = None
    terms = []
    for mean, lv in zip(means, logvars):
        mean_sq = build.cast(square(build.body, mean), acc_t, "msq")
        k = build.cast(add(build.body, Value.const(one, lv_frac), lv), acc_t, "kl")
        raw = floor_shifted(build.body, scaled(build.body, lv, scale, 0, lv_frac), shift)
        index = clamped(build.body, add(build.body, raw, Value.const(offset, raw.frac)), 0, last)
        if index.constant:
            exp = Value.const(int(table[index.code]), table_t.fractional)
        else:
            if rom is None:
                rom = table_rom(build, "exp_table", table_t, index_width, 0, last)
            codes = table[index.lo:index.hi + 1]
            exp = build.body.value("exp", f"{rom}({extended(index, index_width)})", table_t.width,
                                   table_t.fractional, table_t.signed, int(codes.min()), int(codes.max()))
        k = build.cast(add(build.body, k, exp, subtract=True), acc_t, "kl")
        terms.append(build.cast(add(build.body, k, mean_sq, subtract=True), acc_t, "kl"))
    total = tree_sum(build, [terms[i] for i in summation_order(layer, len(terms))], acc_t)
    inv_n = constant_code(1.0 / p["n_in"], acc_t)
    mean = build.cast(scaled(build.body, total, inv_n, 0, 2 * acc_t.fractional), acc_t, "mean")
    minus_half = constant_code(-0.5, res_t)
    return [build.cast(scaled(build.body, mean, minus_half, 0, res_t.fractional + acc_t.fractional), res_t, "y")]


@generator("mse")
def _mse(build):
    layer = build.layer
    diff_t, sq_t, acc_t = layer.types["diff"], layer.types["square"], layer.types["accum"]
    leaves = []
    for ref, rec in zip(*build.inputs):
        d = build.cast(add(build.body, rec, ref, subtract=True), diff_t, "d")
        s = build.cast(square(build.body, d), sq_t, "sq")
        leaves.append(build.cast(s, acc_t, "leaf"))
    total = tree_sum(build, [leaves[i] for i in summation_order(layer, len(leaves))], acc_t)
    inv_n = constant_code(1.0 / layer.params["n_in"], acc_t)
    mean = build.cast(scaled(build.body, total, inv_n, 0, 2 * acc_t.fractional), acc_t, "mean")
    return [build.cast(mean, layer.result, "y")]

