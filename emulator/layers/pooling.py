"""Pooling as hls4ml's io_parallel nnet_pooling.h computes it: Max and Average, 1D and 2D, global, with padding.

Every pooling is exported as one 2D op over (height, width, channel) windows: a 1D pooling is a 2D pooling of
height 1, a global pooling one window covering the whole input. The loops of pooling1d_cl, pooling2d_cl and
global_pooling{1,2}d_cl visit the same cells in the same order, so the arithmetic is identical:
  avgpool2d: res(acc(...acc(acc(0 + x_0) + x_1)...) / count), C division (the op of emulator.plan);
  maxpool2d: res(acc(max over the window)), a padded cell holding pad_val<data_T, Max>(): the input type's code
             with only its top bit set (its most negative value when signed; 2**(W-1) when unsigned).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..arith import type_spec
from ..fixed_type import FixedType
from ..hls4ml_export import UnsupportedLayer, _attr_type, _base, _require_channels_last, register_exporter
from ..kernels import _JIT, probed_cast
from ..manifest import register_op
from ..plan import Step, _casts, _in_type, planner, pool_windows

register_op("maxpool2d", types=("accum",))

POOL_OPS = {"Average": "avgpool2d", "Max": "maxpool2d"}


# ---- export ------------------------------------------------------------------------------------------------
def _pool_layer(node, **geometry):
    _require_channels_last(node)
    pool_op = node.get_attr("pool_op")
    if pool_op not in POOL_OPS:
        raise UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): pool_op {pool_op!r} is not supported "
                               f"(supported: {', '.join(POOL_OPS)})")
    layer = _base(node, POOL_OPS[pool_op], count_pad=int(bool(node.get_attr("count_pad", False))),
                  **{k: int(v) for k, v in geometry.items()})
    layer.types["accum"] = _attr_type(node, "accum_t")
    return layer


@register_exporter("Pooling2D")
def _pooling2d(node):
    names = ("in_height", "in_width", "n_filt", "pool_height", "pool_width", "stride_height", "stride_width",
             "pad_top", "pad_bottom", "pad_left", "pad_right", "out_height", "out_width")
    return _pool_layer(node, **{n: node.get_attr(n) for n in names})


@register_exporter("Pooling1D")
def _pooling1d(node):
    a = node.get_attr
    return _pool_layer(node, in_height=1, in_width=a("n_in"), n_filt=a("n_filt"), pool_height=1,
                       pool_width=a("pool_width"), stride_height=1, stride_width=a("stride_width"), pad_top=0,
                       pad_bottom=0, pad_left=a("pad_left"), pad_right=a("pad_right"), out_height=1,
                       out_width=a("n_out"))


def _global(node, height: int, width: int):
    return _pool_layer(node, in_height=height, in_width=width, n_filt=node.get_attr("n_filt"), pool_height=height,
                       pool_width=width, stride_height=height, stride_width=width, pad_top=0, pad_bottom=0,
                       pad_left=0, pad_right=0, out_height=1, out_width=1)


@register_exporter("GlobalPooling1D")
def _global_pooling1d(node):
    return _global(node, 1, node.get_attr("n_in"))


@register_exporter("GlobalPooling2D")
def _global_pooling2d(node):
    return _global(node, node.get_attr("in_height"), node.get_attr("in_width"))


# ---- emulation ---------------------------------------------------------------------------------------------
def max_pad_code(t: FixedType) -> int:
    """pad_val<T, Max>(): T x = 0; x[W - 1] = 1, as a code of T."""
    return t.min_code if t.signed else 1 << (t.width - 1)


MAX_SITES = ("accum", "result")


@nb.njit(**_JIT)
def max_cast(x, x_frac, window, pad_code, acc_spec, res_spec, probe):
    """hls4ml max pooling: y[n, o] = res(acc(max of x[n, window[o, t]])), a -1 cell holding `pad_code`."""
    n_events = x.shape[0]
    n_out, k = window.shape
    y = np.empty((n_events, n_out), dtype=np.int64)
    for n in nb.prange(n_events):
        for o in range(n_out):
            best = pad_code
            for t in range(k):
                value = x[n, window[o, t]] if window[o, t] >= 0 else pad_code
                if t == 0 or value > best:
                    best = value
            acc = probed_cast(probe, n, 0, o, best, x_frac, acc_spec)
            y[n, o] = probed_cast(probe, n, 1, o, acc, acc_spec[1], res_spec)
    return y


@planner("maxpool2d")
def _maxpool2d(layer, manifest):
    x_t, acc_t = _in_type(layer, manifest), layer.types["accum"]
    window, _ = pool_windows(layer.params)
    args = (x_t.fractional, window, max_pad_code(x_t), type_spec(acc_t), type_spec(layer.result))
    sites = _casts(MAX_SITES, len(window), (acc_t, x_t.fractional), (layer.result, acc_t.fractional))
    return Step(lambda xs, probe: max_cast(xs[0], *args, probe), sites)
