"""Convolutions as hls4ml's io_parallel Latency templates compute them: Conv1D/2D, PointwiseConv1D/2D and
DepthwiseConv1D/2D (hls4ml splits a SeparableConv into a DepthwiseConv and a PointwiseConv, which are exported
as the two layers they are).

The fill_buffer that hls4ml generates gathers each output pixel's taps in (kh, kw, channel) order and writes 0 for
taps on padding inside the layer ('same' convolutions keep their padding in io_parallel); a 1D convolution is the
2D one of height 1. Conv: dense_latency on each pixel's taps, the op `conv2d` of emulator.plan.
Depthwise (nnet_sepconv{1,2}d_latency.h): acc_c = acc(b_c); for each tap k, acc_c = acc(acc_c + acc(x[k, c] *
w[k, c])); y = res(acc_c), for a depth multiplier of 1 (the only one its C++ accepts); taps in the order of the
layer's `sum_order` (emulator.plan.summation_order: hls4ml's is forward).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..arith import type_spec
from ..hls4ml_export import (UnsupportedLayer, _attr_type, _base, _require_channels_last, _with_weights,
                             register_exporter)
from ..kernels import _JIT, probed_cast
from ..manifest import register_op
from ..plan import Step, _in_type, im2col_index, multiply_accumulate_sites, planner, summation_order

register_op("depthwise2d", types=("weight", "bias", "accum"), tensors=("weight", "bias"))

GEOMETRY = ("in_height", "in_width", "n_chan", "n_filt", "filt_height", "filt_width", "stride_height",
            "stride_width", "pad_top", "pad_bottom", "pad_left", "pad_right", "out_height", "out_width")


# ---- export ------------------------------------------------------------------------------------------------
def _geometry(node) -> dict:
    """The 2D geometry of a 1D or 2D convolution node (a 1D one has height 1)."""
    a = node.get_attr
    if "1D" in node.class_name:
        return dict(in_height=1, in_width=a("in_width"), n_chan=a("n_chan"), n_filt=a("n_filt"), filt_height=1,
                    filt_width=a("filt_width"), stride_height=1, stride_width=a("stride_width"), pad_top=0,
                    pad_bottom=0, pad_left=a("pad_left"), pad_right=a("pad_right"), out_height=1,
                    out_width=a("out_width"))
    return {name: a(name) for name in GEOMETRY}


def _require_plain_product(node, weight) -> None:
    """hls4ml picks its product from the input and weight types: a plain `a * w` (product 'mult') is what the
    emulator computes; 'weight_ternary' (2-bit signed integer weights) agrees with it unless a weight is -2."""
    from hls4ml.backends import get_backend

    x_precision = node.get_input_variable(node.inputs[0]).type.precision
    product = get_backend("vivado").product_type(x_precision, node.get_weights("weight").type.precision)
    if product == "mult" or (product == "weight_ternary" and weight.min() >= -1):
        return
    raise UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): hls4ml's {product!r} product (from the input "
                           f"and weight types) is not supported; the emulator computes a plain input*weight")


def _convolution(node, op: str):
    _require_channels_last(node)
    layer = _base(node, op, **{k: int(v) for k, v in _geometry(node).items()})
    layer.types["accum"] = _attr_type(node, "accum_t")
    _with_weights(layer, node, ("weight", "bias"))
    _require_plain_product(node, layer.tensors["weight"])
    return layer


@register_exporter("Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D")
def _conv(node):
    return _convolution(node, "conv2d")


@register_exporter("DepthwiseConv1D", "DepthwiseConv2D")
def _depthwise(node):
    multiplier = int(node.get_attr("depth_multiplier", 1))
    if multiplier != 1:
        raise UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): depth_multiplier {multiplier} is not "
                               f"supported; hls4ml's io_parallel depthwise convolution takes 1")
    return _convolution(node, "depthwise2d")


# ---- emulation ---------------------------------------------------------------------------------------------
@nb.njit(**_JIT)
def depthwise_cast(x, x_frac, index, w, w_frac, b, b_frac, acc_spec, res_spec, probe):
    """hls4ml depthwise_conv_latency: y[n, p, c] = res(acc(b_c) + sum_k acc(x[n, index[p, k*C + c]] * w[k*C + c])).

    `index` (pixels, taps*C) is the im2col gather, -1 reading 0 (padding). Sites as kernels.matmul_cast (bias,
    product, accum, result), reporting output element p * C + c.
    """
    n_events = x.shape[0]
    n_pix, n_in = index.shape
    n_chan = b.shape[0]
    n_taps = n_in // n_chan
    acc_frac = acc_spec[1]
    prod_frac = x_frac + w_frac
    y = np.empty((n_events, n_pix * n_chan), dtype=np.int64)
    for n in nb.prange(n_events):
        for p in range(n_pix):
            for c in range(n_chan):
                out = p * n_chan + c
                acc = probed_cast(probe, n, 0, out, b[c], b_frac, acc_spec)
                for k in range(n_taps):
                    src = index[p, k * n_chan + c]
                    xi = x[n, src] if src >= 0 else 0
                    prod = probed_cast(probe, n, 1, out, xi * w[k * n_chan + c], prod_frac, acc_spec)
                    acc = probed_cast(probe, n, 2, out, acc + prod, acc_frac, acc_spec)
                y[n, out] = probed_cast(probe, n, 3, out, acc, acc_frac, res_spec)
    return y


@planner("depthwise2d")
def _depthwise2d(layer, manifest):
    x_t, w_t, b_t = _in_type(layer, manifest), layer.types["weight"], layer.types["bias"]
    sites = multiply_accumulate_sites(layer, manifest, layer.size)
    b = np.ascontiguousarray(layer.tensors["bias"].ravel())
    index = im2col_index(layer.params, padded=True)
    taps = index.shape[1] // b.size
    order = summation_order(layer, taps)
    index = np.ascontiguousarray(index.reshape(len(index), taps, b.size)[:, order].reshape(len(index), -1))
    w = np.ascontiguousarray(layer.tensors["weight"].reshape(taps, b.size)[order].ravel())
    args = (x_t.fractional, index, w, w_t.fractional, b, b_t.fractional, type_spec(layer.types["accum"]),
            type_spec(layer.result))
    return Step(lambda xs, probe: depthwise_cast(xs[0], *args, probe), sites)
