"""Turn each manifest layer into a step: a function of its input code arrays (events x elements) to its output codes.

One planner per op, registered by name; a planner precomputes index tables and constant codes once, checks that
every intermediate value fits in int64 exactly, binds the numba kernel that does the arithmetic, and describes the
kernel's probe sites (what each reported cast converts, from which grid into which type).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .arith import quantize, type_spec
from .fixed_type import FixedType, UnsupportedType
from .manifest import Layer, Manifest

INT64_BITS = 63  # magnitude bits of an int64

_PLANNERS = {}


def planner(op: str):
    """Decorator registering `fn(layer, manifest) -> step` for manifest op `op`."""

    def wrap(fn):
        _PLANNERS[op] = fn
        return fn

    return wrap


@dataclass(frozen=True)
class Site:
    """One probe site of a kernel: casts of exact values on the grid 2**-source_frac into `type`, reported at
    `elements` element indices; or, when `clamp` = (lo, hi) is set, an integer index clamped to [lo, hi]."""

    name: str
    elements: int
    type: FixedType | None = None
    source_frac: int | None = None
    clamp: tuple | None = None


@dataclass(frozen=True)
class Step:
    """A planned layer: `step(xs)` gives the output codes; `step.run(xs, probe)` also reports every cast to `probe`
    (see emulator.kernels); `sites` are the kernel's probe sites in the order of its site ids."""

    kernel_call: object
    sites: tuple

    def __call__(self, xs):
        return self.kernel_call(xs, None)

    def run(self, xs, probe):
        return self.kernel_call(xs, probe)


def _casts(names, elements, *type_and_frac) -> tuple:
    """Sites `names` (a kernel's *_SITES), each with `elements` elements and its (type, source_frac)."""
    return tuple(Site(name, elements, t, frac) for name, (t, frac) in zip(names, type_and_frac, strict=True))


def plan_layer(layer: Layer, manifest: Manifest) -> Step:
    if layer.op not in _PLANNERS:
        raise UnsupportedType(f"layer {layer.name!r}: op {layer.op!r} has no emulator kernel")
    return _PLANNERS[layer.op](layer, manifest)


def constant_code(value: float, t: FixedType) -> int:
    """The raw code of the C++ constant `T(value)`."""
    return int(quantize(np.array([value], dtype=np.float64), t)[0])


def _fits(layer: Layer, bits: int, what: str):
    if bits > INT64_BITS:
        raise UnsupportedType(
            f"layer {layer.name!r} ({layer.op}): {what} needs {bits} bits, more than the emulator's exact int64 path"
        )


def _in_type(layer, manifest, k=0) -> FixedType:
    return manifest.producer_type(layer.inputs[k])


def _product_bits(a: FixedType, b: FixedType) -> int:
    return a.width + b.width


def _sum_bits(frac_a, width_a, frac_b, width_b) -> int:
    """Bits of an exact sum of two values aligned to the finer grid."""
    frac = max(frac_a, frac_b)
    return max(width_a + frac - frac_a, width_b + frac - frac_b) + 1


SUM_ORDERS = ("forward", "reversed")
"""Values of the layer param `sum_order`: the order in which a dense or convolution layer accumulates its products,
or a score head reduces its terms; hls4ml's is `forward` (the default, and what every exported manifest means).
`reversed` exists for mutation testing: under saturating accumulation the order changes the result."""


def summation_order(layer: Layer, n: int) -> np.ndarray:
    """The order (a permutation of range(n)) in which `layer` sums its n terms."""
    order = layer.params.get("sum_order", "forward")
    if order not in SUM_ORDERS:
        raise UnsupportedType(f"layer {layer.name!r} ({layer.op}): sum_order {order!r} is not one of "
                              f"{', '.join(SUM_ORDERS)}")
    terms = np.arange(n, dtype=np.int64)
    return terms[::-1].copy() if order == "reversed" else terms


# ---- dense and convolution -------------------------------------------------------------------
def multiply_accumulate_sites(layer, manifest, elements: int) -> tuple:
    """For a layer computing res(acc(b) + sum acc(x * w)) (dense, convolutions): check that every value fits the
    exact int64 path; its kernel's sites (kernels.MATMUL_SITES), each with `elements` elements."""
    x_t, w_t, b_t = _in_type(layer, manifest), layer.types["weight"], layer.types["bias"]
    acc_t = layer.types["accum"]
    _fits(layer, _product_bits(x_t, w_t), "the product input*weight")
    _fits(layer, acc_t.width + 1, "the accumulator sum")
    _fits(layer, _sum_bits(b_t.fractional, b_t.width, acc_t.fractional, acc_t.width), "the bias cast")
    return _casts(kernels.MATMUL_SITES, elements, (acc_t, b_t.fractional), (acc_t, x_t.fractional + w_t.fractional),
                  (acc_t, acc_t.fractional), (layer.result, acc_t.fractional))


def _matmul_step(layer, manifest, index):
    x_t, w_t, b_t = _in_type(layer, manifest), layer.types["weight"], layer.types["bias"]
    order = summation_order(layer, index.shape[1])
    index = np.ascontiguousarray(index[:, order])
    w = np.ascontiguousarray(layer.tensors["weight"].reshape(index.shape[1], -1)[order])
    b = np.ascontiguousarray(layer.tensors["bias"].ravel())
    sites = multiply_accumulate_sites(layer, manifest, index.shape[0] * w.shape[1])
    args = (x_t.fractional, index, w, w_t.fractional, b, b_t.fractional, type_spec(layer.types["accum"]),
            type_spec(layer.result))
    return Step(lambda xs, probe: kernels.matmul_cast(xs[0], *args, probe), sites)


@planner("dense")
def _dense(layer, manifest):
    n_in = layer.params["n_in"]
    return _matmul_step(layer, manifest, np.arange(n_in, dtype=np.int64).reshape(1, n_in))


def im2col_index(p: dict, padded: bool = False) -> np.ndarray:
    """(pixels, fh*fw*cin) input indices of each output pixel, in the (kh, kw, cin) order of hls4ml's io_parallel
    fill_buffer. Taps on padding inside the layer (io_parallel 'same' convolutions), which read 0, are -1: only
    for callers that say they handle them (`padded`); others get a clear refusal."""
    pads = (p["pad_top"], p["pad_bottom"], p["pad_left"], p["pad_right"])
    if any(pads) and not padded:
        raise UnsupportedType(f"a convolution with padding inside the layer (top, bottom, left, right = {pads}) is "
                              f"handled by the reference emulator and the RTL generator only")
    oh, ow = np.meshgrid(np.arange(p["out_height"]), np.arange(p["out_width"]), indexing="ij")
    kh, kw, c = np.meshgrid(np.arange(p["filt_height"]), np.arange(p["filt_width"]), np.arange(p["n_chan"]),
                            indexing="ij")
    rows = oh.reshape(-1, 1) * p["stride_height"] + kh.reshape(1, -1) - p["pad_top"]
    cols = ow.reshape(-1, 1) * p["stride_width"] + kw.reshape(1, -1) - p["pad_left"]
    inside = (rows >= 0) & (rows < p["in_height"]) & (cols >= 0) & (cols < p["in_width"])
    index = (rows * p["in_width"] + cols) * p["n_chan"] + c.reshape(1, -1)
    return np.where(inside, index, -1).astype(np.int64)


@planner("conv2d")
def _conv2d(layer, manifest):
    return _matmul_step(layer, manifest, im2col_index(layer.params, padded=True))


# ---- element-wise ----------------------------------------------------------------------------
def scale_channel(layer: Layer) -> np.ndarray:
    """For batchnorm: the scale/bias index of every element."""
    n, n_filt = layer.size, layer.params.get("n_filt", -1)
    return np.arange(n, dtype=np.int64) % n_filt if n_filt > 0 else np.arange(n, dtype=np.int64)


@planner("batchnorm")
def _batchnorm(layer, manifest):
    x_t, s_t, b_t = _in_type(layer, manifest), layer.types["scale"], layer.types["bias"]
    _fits(layer, _sum_bits(x_t.fractional + s_t.fractional, _product_bits(x_t, s_t), b_t.fractional, b_t.width),
          "x*scale + bias")
    n = layer.size
    channel = scale_channel(layer)
    scale, bias = layer.tensors["scale"].ravel(), layer.tensors["bias"].ravel()
    args = (x_t.fractional, channel, scale, s_t.fractional, bias, b_t.fractional, type_spec(layer.result))
    frac = max(x_t.fractional + s_t.fractional, b_t.fractional)
    sites = _casts(kernels.SCALE_SHIFT_SITES, n, (layer.result, frac))
    return Step(lambda xs, probe: kernels.scale_shift_cast(xs[0], *args, probe), sites)


def _rectifier_step(layer, manifest, alpha: int, alpha_frac: int):
    x_t = _in_type(layer, manifest)
    args = (x_t.fractional, alpha, alpha_frac, type_spec(layer.result))
    sites = _casts(kernels.LEAKY_RELU_SITES, layer.size, (layer.result, x_t.fractional),
                   (layer.result, x_t.fractional + alpha_frac))
    return Step(lambda xs, probe: kernels.leaky_relu_cast(xs[0], *args, probe), sites)


@planner("relu")
def _relu(layer, manifest):
    return _rectifier_step(layer, manifest, 0, 0)


@planner("leaky_relu")
def _leaky_relu(layer, manifest):
    x_t, a_t = _in_type(layer, manifest), layer.types["param"]
    _fits(layer, _product_bits(x_t, a_t), "alpha*x")
    return _rectifier_step(layer, manifest, layer.params["alpha"], a_t.fractional)


def gather_index(layer: Layer) -> np.ndarray:
    """For linear, reshape, zeropad2d and upsampling2d: the input index of every output element, -1 for padding."""
    p = layer.params
    if layer.op in ("linear", "reshape"):
        return np.arange(layer.size, dtype=np.int64)
    source = np.arange(p["in_height"] * p["in_width"] * p["n_chan"]).reshape(p["in_height"], p["in_width"], p["n_chan"])
    if layer.op == "upsampling2d":
        return source.repeat(p["height_factor"], axis=0).repeat(p["width_factor"], axis=1).astype(np.int64).ravel()
    index = np.full((p["out_height"], p["out_width"], p["n_chan"]), -1, dtype=np.int64)
    index[p["pad_top"]:p["pad_top"] + p["in_height"], p["pad_left"]:p["pad_left"] + p["in_width"]] = source
    return index.ravel()


@planner("linear")
@planner("reshape")
@planner("zeropad2d")
@planner("upsampling2d")
def _gather(layer, manifest):
    x_t = _in_type(layer, manifest)
    index = gather_index(layer)
    spec = type_spec(layer.result)
    sites = _casts(kernels.GATHER_SITES, index.shape[0], (layer.result, x_t.fractional))
    return Step(lambda xs, probe: kernels.gather_cast(xs[0], x_t.fractional, index, spec, probe), sites)


def pool_windows(p: dict):
    """For avgpool2d params: (window (outputs, cells) of input indices, -1 for padded cells; count per output)."""
    windows, counts = [], []
    for oh in range(p["out_height"]):
        for ow in range(p["out_width"]):
            for f in range(p["n_filt"]):
                cells = []
                for kh in range(p["pool_height"]):
                    for kw in range(p["pool_width"]):
                        r = oh * p["stride_height"] + kh - p["pad_top"]
                        c = ow * p["stride_width"] + kw - p["pad_left"]
                        inside = 0 <= r < p["in_height"] and 0 <= c < p["in_width"]
                        cells.append((r * p["in_width"] + c) * p["n_filt"] + f if inside else -1)
                windows.append(cells)
                inside_count = sum(cell >= 0 for cell in cells)
                counts.append(len(cells) if p.get("count_pad") else inside_count)
    return np.array(windows, dtype=np.int64), np.array(counts, dtype=np.int64)


@planner("avgpool2d")
def _avgpool2d(layer, manifest):
    p = layer.params
    x_t, acc_t = _in_type(layer, manifest), layer.types["accum"]
    _fits(layer, _sum_bits(x_t.fractional, x_t.width, acc_t.fractional, acc_t.width), "the pooling sum")
    window, count = pool_windows(p)
    args = (x_t.fractional, window, count, type_spec(acc_t), type_spec(layer.result))
    sites = _casts(kernels.AVERAGE_SITES, len(window), (acc_t, max(x_t.fractional, acc_t.fractional)),
                   (layer.result, acc_t.fractional))
    return Step(lambda xs, probe: kernels.average_cast(xs[0], *args, probe), sites)


# ---- anomaly-score heads ---------------------------------------------------------------------
def exp_table_index(layer: Layer, manifest: Manifest) -> tuple:
    """For kl_divergence: (scale, shift, offset) with unclamped index = ((log_var code * scale) >> shift) + offset."""
    p = layer.params
    logvar_frac = _in_type(layer, manifest, 1).fractional
    table_scale = p["table_size"] // (2 * p["exp_range"])
    return table_scale << max(-logvar_frac, 0), max(logvar_frac, 0), p["exp_range"] * table_scale


@planner("kl_divergence")
def _kl_divergence(layer, manifest):
    p = layer.params
    mean_t, logvar_t = _in_type(layer, manifest, 0), _in_type(layer, manifest, 1)
    acc_t, table_t, res_t = layer.types["accum"], layer.types["exp_table"], layer.result
    _fits(layer, 2 * mean_t.width, "mean**2")
    _fits(layer, 2 * acc_t.width, "the sum times 1/n")
    _fits(layer, res_t.width + acc_t.width, "-0.5 times the sum")
    _fits(layer, _sum_bits(table_t.fractional, table_t.width, acc_t.fractional, acc_t.width), "kl - exp")
    scale, shift, offset = exp_table_index(layer, manifest)
    _fits(layer, logvar_t.width + int(scale).bit_length(), "the exp-table index")
    args = (
        logvar_t.fractional, constant_code(1.0, logvar_t),
        layer.tensors["exp_table"].ravel(), table_t.fractional, scale, shift, offset,
        constant_code(1.0 / p["n_in"], acc_t), type_spec(acc_t), constant_code(-0.5, res_t), type_spec(res_t),
        summation_order(layer, p["n_in"]),
    )
    n, acc_frac = p["n_in"], acc_t.fractional
    sites = (
        Site("mean_sq", n, acc_t, 2 * mean_t.fractional),
        Site("logvar_plus_one", n, acc_t, logvar_t.fractional),
        Site("table_index", n, clamp=(0, p["table_size"] - 1)),
        Site("minus_exp", n, acc_t, max(table_t.fractional, acc_frac)),
        Site("minus_mean_sq", n, acc_t, acc_frac),
        Site("sum", 1, acc_t, acc_frac),
        Site("mean", 1, acc_t, 2 * acc_frac),
        Site("result", 1, res_t, res_t.fractional + acc_frac),
    )
    return Step(lambda xs, probe: kernels.kl_divergence_cast(xs[0], mean_t.fractional, xs[1], *args, probe), sites)


@planner("mse")
def _mse(layer, manifest):
    ref_t, rec_t = _in_type(layer, manifest, 0), _in_type(layer, manifest, 1)
    diff_t, sq_t, acc_t = layer.types["diff"], layer.types["square"], layer.types["accum"]
    _fits(layer, _sum_bits(ref_t.fractional, ref_t.width, rec_t.fractional, rec_t.width), "the difference")
    _fits(layer, 2 * diff_t.width, "the square")
    _fits(layer, 2 * acc_t.width, "the sum times 1/n")
    args = (diff_t, sq_t, acc_t)
    specs = tuple(type_spec(t) for t in args)
    inv_n = constant_code(1.0 / layer.params["n_in"], acc_t)
    n, acc_frac = layer.params["n_in"], acc_t.fractional
    sites = (_casts(kernels.MSE_SITES[:3], n, (diff_t, max(ref_t.fractional, rec_t.fractional)),
                    (sq_t, 2 * diff_t.fractional), (acc_t, sq_t.fractional))
             + _casts(kernels.MSE_SITES[3:], 1, (acc_t, acc_frac), (acc_t, 2 * acc_frac), (layer.result, acc_frac)))
    res_spec = type_spec(layer.result)
    order = summation_order(layer, n)
    return Step(lambda xs, probe: kernels.mse_cast(xs[0], ref_t.fractional, xs[1], rec_t.fractional, *specs, inv_n,
                                                   res_spec, order, probe), sites)
