"""Softmax as hls4ml 1.3.0's io_parallel nnet_activation.h computes it, in each of its implementations.

Softmax runs on slices of n_slice elements (softmax_multidim: element i*n_slice*n_inner + j*n_inner + k of slice
(i, k)), with the sizes and types of the C++ configuration hls4ml generated for the layer:
  latency: e_j = acc(exp_table[top bits of x_j]); s = inv_inp(tree_sum_acc(e)); res(e_j * inv_table[top bits of s]);
  stable:  the same with the exp table addressed by d_j = inp_norm(max(x) - x_j) and filled with exp(-d);
           "top bits" are the ceil(log2 N) most significant bits of the code (softmax_idx_from_real_val);
  legacy:  e_i = table(...table(table(0 + t_i0) + t_i1)...), t_ii = table(1), t_ij = exp_table[clamp(int((x_j - x_i)
           * N / 16) + 8N / 16)]; res(inv_table[clamp(int(e_i * N_inv / 64))]), tables of nnet::activ_config's table_t;
  argmax:  res(1) at the first maximum, 0 elsewhere.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..arith import type_spec
from ..fixed_type import FixedType
from ..hls4ml_export import _base, _type, register_exporter
from ..kernels import _JIT, observe_clamp, probed_cast, tree_sum
from ..manifest import register_op
from ..plan import Site, Step, _fits, _in_type, constant_code, planner
from ..tables import (address_bits, legacy_exp_table, legacy_invert_table, softmax_exp_table,
                      softmax_invert_table)
from .activations import check_index, config_number, config_type, refuse, table_position

OPS = {"latency": "softmax_latency", "stable": "softmax_stable", "legacy": "softmax_legacy", "argmax": "softmax_argmax"}
TABLE_TYPES = ("exp_table", "inv_table", "accum", "inv_inp")
ACTIV_CONFIG_TABLE = FixedType(18, 8)  # nnet::activ_config::table_t, which softmax configs do not override
LEGACY_EXP_DIVISOR, LEGACY_INV_DIVISOR = 16, 64

register_op("softmax_latency", types=TABLE_TYPES, tensors=("exp_table", "inv_table"))
register_op("softmax_stable", types=TABLE_TYPES + ("inp_norm",), tensors=("exp_table", "inv_table"))
register_op("softmax_legacy", types=("table",), tensors=("exp_table", "inv_table"))
register_op("softmax_argmax")


# ---- export ------------------------------------------------------------------------------------------------
def _addressed(node, size: int, address: FixedType, what: str) -> None:
    """Refuse a table whose top-bits index of `address` codes does not reach exactly its entries."""
    bits = address_bits(size)
    if size < 2 or size != 1 << bits:
        raise refuse(node, f"{what} size {size} is not a power of two of at least 2 (its top-bits index would read "
                           f"outside the table)")
    if bits > address.width:
        raise refuse(node, f"{what} size {size} needs {bits} address bits, more than its {address} index has")


@register_exporter("Softmax")
def _softmax(node):
    implementation = str(node.get_attr("implementation", "stable")).lower()
    if implementation not in OPS:
        raise refuse(node, f"softmax implementation {implementation!r} is not supported (supported: {', '.join(OPS)})")
    sizes = {k: int(config_number(node, k)) for k in ("n_slice", "n_inner", "n_outer")}
    layer = _base(node, OPS[implementation], **sizes)
    if implementation == "argmax":
        return layer
    exp_size, inv_size = int(config_number(node, "exp_table_size")), int(config_number(node, "inv_table_size"))
    if implementation == "legacy":
        table_t = config_type(node, "table_t", ACTIV_CONFIG_TABLE)
        layer.types["table"] = table_t
        layer.tensors["exp_table"] = legacy_exp_table(exp_size, table_t)
        layer.tensors["inv_table"] = legacy_invert_table(inv_size, table_t)
        return layer
    for role in TABLE_TYPES:
        layer.types[role] = config_type(node, f"{role}_t")
    stable = implementation == "stable"
    if stable:
        layer.types["inp_norm"] = address = config_type(node, "inp_norm_t")
    else:
        address = _type(node, node.get_input_variable(node.inputs[0]).type.precision, "input")
    _addressed(node, exp_size, address, "exp table")
    _addressed(node, inv_size, layer.types["inv_inp"], "inversion table")
    layer.tensors["exp_table"] = softmax_exp_table(exp_size, address, config_number(node, "exp_scale"),
                                                   layer.types["exp_table"], negative=stable)
    layer.tensors["inv_table"] = softmax_invert_table(inv_size, layer.types["inv_inp"], layer.types["inv_table"])
    return layer


def slices(layer) -> np.ndarray:
    """(slices, n_slice) element numbers of each softmax slice, as softmax_multidim gathers them."""
    p = layer.params
    i, k, j = np.meshgrid(np.arange(p["n_outer"]), np.arange(p["n_inner"]), np.arange(p["n_slice"]), indexing="ij")
    return (i * p["n_slice"] * p["n_inner"] + j * p["n_inner"] + k).reshape(-1, p["n_slice"]).astype(np.int64)


# ---- kernels -----------------------------------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def top_bits(code, width, bits):
    """softmax_idx_from_real_val: the `bits` most significant bits of a `width`-bit code, as an unsigned index."""
    return (code & ((np.int64(1) << width) - 1)) >> (width - bits)


TABLE_SITES = ("exp", "sum", "inv_input", "result", "normalised")
_T_EXP, _T_SUM, _T_INV_INPUT, _T_RESULT, _T_NORMALISED = range(5)


@nb.njit(**_JIT)
def softmax_table_cast(x, x_frac, x_width, groups, stable, norm_spec, exp_table, exp_frac, exp_bits, acc_spec,
                       inv_inp_spec, inv_table, inv_frac, inv_bits, res_spec, probe):
    """softmax_latency / softmax_stable on every slice (see the module docstring), tables addressed by their top
    exp_bits / inv_bits. Per-element sites report the element, the sum site element 0, the inversion input the slice."""
    n_events = x.shape[0]
    n_groups, n_slice = groups.shape
    acc_frac = acc_spec[1]
    y = np.empty((n_events, x.shape[1]), dtype=np.int64)
    for n in nb.prange(n_events):
        e = np.empty(n_slice, dtype=np.int64)
        for g in range(n_groups):
            largest = x[n, groups[g, 0]]
            for j in range(1, n_slice if stable else 1):
                largest = max(largest, x[n, groups[g, j]])
            for j in range(n_slice):
                k = groups[g, j]
                if stable:
                    d = probed_cast(probe, n, _T_NORMALISED, k, largest - x[n, k], x_frac, norm_spec)
                    index = top_bits(d, norm_spec[0], exp_bits)
                else:
                    index = top_bits(x[n, k], x_width, exp_bits)
                e[j] = probed_cast(probe, n, _T_EXP, k, exp_table[index], exp_frac, acc_spec)
            total = tree_sum(e, 0, n_slice, acc_frac, acc_spec, probe, n, _T_SUM)
            s = probed_cast(probe, n, _T_INV_INPUT, g, total, acc_frac, inv_inp_spec)
            inverse = inv_table[top_bits(s, inv_inp_spec[0], inv_bits)]
            for j in range(n_slice):
                k = groups[g, j]
                y[n, k] = probed_cast(probe, n, _T_RESULT, k, e[j] * inverse, acc_frac + inv_frac, res_spec)
    return y


LEGACY_SITES = ("exp_index", "accum", "inv_index", "result")


@nb.njit(**_JIT)
def softmax_legacy_cast(x, x_frac, groups, exp_table, inv_table, one, table_spec, res_spec, probe):
    """softmax_legacy on every slice (see the module docstring); every site reports the element."""
    n_events = x.shape[0]
    n_groups, n_slice = groups.shape
    n_exp, n_inv = exp_table.shape[0], inv_table.shape[0]
    offset = (LEGACY_EXP_DIVISOR // 2 * n_exp) // LEGACY_EXP_DIVISOR
    table_frac = table_spec[1]
    y = np.empty((n_events, x.shape[1]), dtype=np.int64)
    for n in nb.prange(n_events):
        for g in range(n_groups):
            for i in range(n_slice):
                k = groups[g, i]
                total = 0
                for j in range(n_slice):
                    if i == j:
                        term = one
                    else:
                        diff = x[n, groups[g, j]] - x[n, k]
                        index = table_position(diff, x_frac, n_exp, LEGACY_EXP_DIVISOR) + offset
                        observe_clamp(probe, n, 0, k, index, 0, n_exp - 1)
                        term = exp_table[min(max(index, 0), n_exp - 1)]
                    total = probed_cast(probe, n, 1, k, total + term, table_frac, table_spec)
                index = table_position(total, table_frac, n_inv, LEGACY_INV_DIVISOR)
                observe_clamp(probe, n, 2, k, index, 0, n_inv - 1)
                y[n, k] = probed_cast(probe, n, 3, k, inv_table[min(max(index, 0), n_inv - 1)], table_frac, res_spec)
    return y


@nb.njit(**_JIT)
def argmax_cast(x, groups, res_spec, probe):
    """softmax_argmax on every slice: res(1) at the first largest element (site one), 0 elsewhere."""
    n_events = x.shape[0]
    n_groups, n_slice = groups.shape
    y = np.zeros((n_events, x.shape[1]), dtype=np.int64)
    for n in nb.prange(n_events):
        for g in range(n_groups):
            best = 0
            for j in range(1, n_slice):
                if x[n, groups[g, j]] > x[n, groups[g, best]]:
                    best = j
            k = groups[g, best]
            y[n, k] = probed_cast(probe, n, 0, k, 1, 0, res_spec)
    return y


# ---- planners ----------------------------------------------------------------------------------------------
@planner("softmax_latency")
@planner("softmax_stable")
def _table_softmax(layer, manifest):
    x_t, t = _in_type(layer, manifest), layer.types
    stable = layer.op == "softmax_stable"
    acc_t, inv_t = t["accum"], t["inv_table"]
    norm_t = t["inp_norm"] if stable else x_t
    _fits(layer, x_t.width + 1, "max(x) - x")
    _fits(layer, acc_t.width + 1, "the sum of the exponentials")
    _fits(layer, acc_t.width + inv_t.width, "exp * 1/sum")
    groups = slices(layer)
    sites = (Site("exp", layer.size, acc_t, t["exp_table"].fractional), Site("sum", 1, acc_t, acc_t.fractional),
             Site("inv_input", len(groups), t["inv_inp"], acc_t.fractional),
             Site("result", layer.size, layer.result, acc_t.fractional + inv_t.fractional))
    if stable:
        sites += (Site("normalised", layer.size, norm_t, x_t.fractional),)
    exp_table, inv_table = (np.ascontiguousarray(layer.tensors[k]) for k in ("exp_table", "inv_table"))
    args = (x_t.fractional, x_t.width, groups, stable, type_spec(norm_t), exp_table, t["exp_table"].fractional,
            address_bits(exp_table.size), type_spec(acc_t), type_spec(t["inv_inp"]), inv_table, inv_t.fractional,
            address_bits(inv_table.size), type_spec(layer.result))
    return Step(lambda xs, probe: softmax_table_cast(xs[0], *args, probe), sites)


@planner("softmax_legacy")
def _legacy_softmax(layer, manifest):
    x_t, table_t = _in_type(layer, manifest), layer.types["table"]
    exp_table, inv_table = (np.ascontiguousarray(layer.tensors[k]) for k in ("exp_table", "inv_table"))
    offset = (LEGACY_EXP_DIVISOR // 2 * exp_table.size) // LEGACY_EXP_DIVISOR
    check_index(layer, x_t.with_(width=x_t.width + 1, integer=x_t.integer + 1), exp_table.size, LEGACY_EXP_DIVISOR,
                offset)
    check_index(layer, table_t, inv_table.size, LEGACY_INV_DIVISOR, 0)
    n = layer.size
    sites = (Site("exp_index", n, clamp=(0, exp_table.size - 1)), Site("accum", n, table_t, table_t.fractional),
             Site("inv_index", n, clamp=(0, inv_table.size - 1)), Site("result", n, layer.result, table_t.fractional))
    args = (x_t.fractional, slices(layer), exp_table, inv_table, constant_code(1.0, table_t), type_spec(table_t),
            type_spec(layer.result))
    return Step(lambda xs, probe: softmax_legacy_cast(xs[0], *args, probe), sites)


@planner("softmax_argmax")
def _argmax_softmax(layer, manifest):
    groups, spec = slices(layer), type_spec(layer.result)
    return Step(lambda xs, probe: argmax_cast(xs[0], groups, spec, probe), (Site("one", layer.size, layer.result, 0),))
