"""numba kernels, one per manifest op, over blocks of events: raw int64 codes in, raw int64 codes out.

Every kernel is parallel over events (the first axis) and applies the casts of the HLS templates in their order.
A type is passed as its `spec` = (width, fractional, signed, rounding_id, overflow_id) from `arith.type_spec`.
Every kernel takes a last argument `probe` and reports each cast to the hook `observe` (and each table-index clamp
to `observe_clamp`) with the cast's site id from the kernel's `*_SITES` tuple. `probe=None` is the plain path: the
hooks compile to nothing. Other probe types get their implementation from an overload (emulator.coverage.probe).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.core import types
from numba.extending import overload

from .arith import cast

_JIT = dict(parallel=True, cache=True)


# ---- probe hooks -------------------------------------------------------------------------------
def observe(probe, event, site, element, value, value_frac, spec, result):
    """Hook called after every cast: `result` = cast(value * 2**-value_frac) to `spec`, at (site, element) of event."""
    raise TypeError("observe is a numba hook; it can only be called from jitted kernels")


def observe_clamp(probe, event, site, element, value, lo, hi):
    """Hook called where an integer `value` is clamped to [lo, hi] (the KL head's exp-table index)."""
    raise TypeError("observe_clamp is a numba hook; it can only be called from jitted kernels")


@overload(observe, inline="always")
def _observe_nothing(probe, event, site, element, value, value_frac, spec, result):
    if isinstance(probe, types.NoneType):
        return lambda probe, event, site, element, value, value_frac, spec, result: None
    return None


@overload(observe_clamp, inline="always")
def _observe_clamp_nothing(probe, event, site, element, value, lo, hi):
    if isinstance(probe, types.NoneType):
        return lambda probe, event, site, element, value, lo, hi: None
    return None


@nb.njit(inline="always", cache=True)
def probed_cast(probe, event, site, element, value, value_frac, spec):
    """cast(value, value_frac, spec), reported to the probe."""
    result = cast(value, value_frac, spec)
    observe(probe, event, site, element, value, value_frac, spec, result)
    return result


@nb.njit(inline="always", cache=True)
def aligned(code, frac, to_frac):
    """The code of the same value on a finer grid (to_frac >= frac)."""
    return code << (to_frac - frac)


# ---- dense and convolution -----------------------------------------------------------------------
MATMUL_SITES = ("bias", "product", "accum", "result")
_M_BIAS, _M_PRODUCT, _M_ACCUM, _M_RESULT = range(4)


@nb.njit(**_JIT)
def matmul_cast(x, x_frac, index, w, w_frac, b, b_frac, acc_spec, res_spec, probe):
    """hls4ml dense_latency applied to gathered inputs:
    y[n, p, j] = res(acc(b_j) + sum_i acc(x[n, index[p, i]] * w[i, j])).

    `index` (pixels, n_in) picks each pixel's input vector (identity for Dense, im2col for Conv2D); -1 reads 0 (a tap
    on a convolution's padding). All sites report output element p * n_out + j.
    """
    n_events = x.shape[0]
    n_pix, n_in = index.shape
    n_out = w.shape[1]
    acc_frac = acc_spec[1]
    prod_frac = x_frac + w_frac
    y = np.empty((n_events, n_pix * n_out), dtype=np.int64)
    bias = np.empty(n_out, dtype=np.int64)
    for j in range(n_out):
        bias[j] = cast(b[j], b_frac, acc_spec)
    for n in nb.prange(n_events):
        acc = np.empty(n_out, dtype=np.int64)
        for p in range(n_pix):
            for j in range(n_out):
                acc[j] = bias[j]
                observe(probe, n, _M_BIAS, p * n_out + j, b[j], b_frac, acc_spec, bias[j])
            for i in range(n_in):
                src = index[p, i]
                xi = x[n, src] if src >= 0 else 0
                for j in range(n_out):
                    prod = probed_cast(probe, n, _M_PRODUCT, p * n_out + j, xi * w[i, j], prod_frac, acc_spec)
                    acc[j] = probed_cast(probe, n, _M_ACCUM, p * n_out + j, acc[j] + prod, acc_frac, acc_spec)
            for j in range(n_out):
                y[n, p * n_out + j] = probed_cast(probe, n, _M_RESULT, p * n_out + j, acc[j], acc_frac, res_spec)
    return y


# ---- element-wise ------------------------------------------------------------------------------
SCALE_SHIFT_SITES = ("result",)


@nb.njit(**_JIT)
def scale_shift_cast(x, x_frac, channel, scale, s_frac, bias, b_frac, res_spec, probe):
    """hls4ml normalize: y[n, i] = res(x * scale[c] + bias[c]), c = channel[i], with one rounding."""
    n_events, n_in = x.shape
    prod_frac = x_frac + s_frac
    frac = max(prod_frac, b_frac)
    y = np.empty((n_events, n_in), dtype=np.int64)
    for n in nb.prange(n_events):
        for i in range(n_in):
            c = channel[i]
            value = aligned(x[n, i] * scale[c], prod_frac, frac) + aligned(bias[c], b_frac, frac)
            y[n, i] = probed_cast(probe, n, 0, i, value, frac, res_spec)
    return y


LEAKY_RELU_SITES = ("positive", "negative")


@nb.njit(**_JIT)
def leaky_relu_cast(x, x_frac, alpha, alpha_frac, res_spec, probe):
    """hls4ml relu / leaky_relu: res(x) where x > 0 (site positive), else res(alpha * x) (site negative; alpha = 0
    is ReLU)."""
    n_events, n_in = x.shape
    y = np.empty((n_events, n_in), dtype=np.int64)
    for n in nb.prange(n_events):
        for i in range(n_in):
            v = x[n, i]
            if v > 0:
                y[n, i] = probed_cast(probe, n, 0, i, v, x_frac, res_spec)
            else:
                y[n, i] = probed_cast(probe, n, 1, i, alpha * v, x_frac + alpha_frac, res_spec)
    return y


GATHER_SITES = ("result",)


@nb.njit(**_JIT)
def gather_cast(x, x_frac, index, res_spec, probe):
    """y[n, k] = res(x[n, index[k]]), or 0 where index[k] < 0 (padding, upsampling, reshape, linear)."""
    n_events = x.shape[0]
    n_out = index.shape[0]
    y = np.empty((n_events, n_out), dtype=np.int64)
    for n in nb.prange(n_events):
        for k in range(n_out):
            src = index[k]
            y[n, k] = probed_cast(probe, n, 0, k, x[n, src], x_frac, res_spec) if src >= 0 else 0
    return y


AVERAGE_SITES = ("accum", "result")


@nb.njit(**_JIT)
def average_cast(x, x_frac, window, count, acc_spec, res_spec, probe):
    """hls4ml avg pooling: acc = 0; acc = acc(acc + x) over the window; acc /= count (C division); res(acc).

    `window` (outputs, k) lists input indices, -1 for padded cells (which add 0).
    """
    n_events = x.shape[0]
    n_out, k = window.shape
    acc_frac = acc_spec[1]
    y = np.empty((n_events, n_out), dtype=np.int64)
    frac = max(x_frac, acc_frac)
    for n in nb.prange(n_events):
        for o in range(n_out):
            acc = 0
            for t in range(k):
                src = window[o, t]
                if src >= 0:
                    acc = probed_cast(probe, n, 0, o, aligned(acc, acc_frac, frac) + aligned(x[n, src], x_frac, frac),
                                      frac, acc_spec)
            quotient = abs(acc) // count[o]
            y[n, o] = probed_cast(probe, n, 1, o, quotient if acc >= 0 else -quotient, acc_frac, res_spec)
    return y


# ---- anomaly-score heads ---------------------------------------------------------------------
@nb.njit(cache=True)
def tree_sum(values, lo, count, frac, spec, probe, event, site):
    """nnet::reduce with Op_add over values[lo:lo+count]: a balanced tree, cast into `spec` at every node
    (each node reported at element 0 of `site`).

    reduce(n) = reduce(L) + reduce(n - L) with L the largest power of two below n, so the tree is a chain of perfect
    power-of-two blocks ending in a tail of one or two values, joined from the right. Iterative: numba cannot load
    recursive functions from its cache.
    """
    block_start = np.empty(64, dtype=np.int64)
    block_size = np.empty(64, dtype=np.int64)
    n_blocks = 0
    start, n = lo, count
    while n > 2:
        size = 1
        while size * 2 < n:
            size *= 2
        block_start[n_blocks] = start
        block_size[n_blocks] = size
        n_blocks += 1
        start += size
        n -= size
    if n == 2:
        total = probed_cast(probe, event, site, 0, values[start] + values[start + 1], frac, spec)
    else:
        total = values[start]
    scratch = np.empty(count, dtype=np.int64)
    for b in range(n_blocks - 1, -1, -1):
        width = block_size[b]
        for i in range(width):
            scratch[i] = values[block_start[b] + i]
        while width > 1:
            width //= 2
            for i in range(width):
                scratch[i] = probed_cast(probe, event, site, 0, scratch[2 * i] + scratch[2 * i + 1], frac, spec)
        total = probed_cast(probe, event, site, 0, scratch[0] + total, frac, spec)
    return total


KL_SITES = ("mean_sq", "logvar_plus_one", "table_index", "minus_exp", "minus_mean_sq", "sum", "mean", "result")
_K_MEAN_SQ, _K_PLUS_ONE, _K_INDEX, _K_MINUS_EXP, _K_MINUS_MEAN_SQ, _K_SUM, _K_MEAN, _K_RESULT = range(8)


@nb.njit(**_JIT)
def kl_divergence_cast(mean, mean_frac, logvar, logvar_frac, one, table, table_frac, index_scale, index_shift,
                       index_offset, inv_n, acc_spec, minus_half, res_spec, order, probe):
    """The VAE's KL head (hls4ml contrib/kl_layer semantics): res(-0.5 * acc(tree_sum(kl_i) * acc(1/n))).

    kl_i = acc(acc(acc(L(1) + logvar_i) - exp_table[idx_i]) - acc(mean_i**2)), with
    idx_i = clamp(floor(logvar_code_i * index_scale / 2**index_shift) + index_offset, 0, len(table) - 1), `one` = L(1)
    as a code of logvar's type, `inv_n` = acc(1/n) and `minus_half` = res(-0.5) as codes; the tree takes the kl_i
    in the order `order` (a permutation of the inputs, see plan.summation_order).
    Per-input sites report element i; the sum, mean and result sites element 0.
    """
    n_events, n_in = mean.shape
    acc_frac = acc_spec[1]
    last = table.shape[0] - 1
    y = np.empty((n_events, 1), dtype=np.int64)
    f2 = max(table_frac, acc_frac)
    res_frac = res_spec[1]
    for n in nb.prange(n_events):
        kl = np.empty(n_in, dtype=np.int64)
        for i in range(n_in):
            lv = logvar[n, i]
            mean_sq = probed_cast(probe, n, _K_MEAN_SQ, i, mean[n, i] * mean[n, i], 2 * mean_frac, acc_spec)
            k = probed_cast(probe, n, _K_PLUS_ONE, i, one + lv, logvar_frac, acc_spec)
            idx = ((lv * index_scale) >> index_shift) + index_offset
            observe_clamp(probe, n, _K_INDEX, i, idx, 0, last)
            idx = min(max(idx, 0), last)
            k = probed_cast(probe, n, _K_MINUS_EXP, i, aligned(k, acc_frac, f2) - aligned(table[idx], table_frac, f2),
                            f2, acc_spec)
            kl[i] = probed_cast(probe, n, _K_MINUS_MEAN_SQ, i, k - mean_sq, acc_frac, acc_spec)
        total = tree_sum(kl[order], 0, n_in, acc_frac, acc_spec, probe, n, _K_SUM)
        total = probed_cast(probe, n, _K_MEAN, 0, total * inv_n, 2 * acc_frac, acc_spec)
        y[n, 0] = probed_cast(probe, n, _K_RESULT, 0, minus_half * total, res_frac + acc_frac, res_spec)
    return y


MSE_SITES = ("diff", "square", "leaf", "sum", "mean", "result")
_S_DIFF, _S_SQUARE, _S_LEAF, _S_SUM, _S_MEAN, _S_RESULT = range(6)


@nb.njit(**_JIT)
def mse_cast(ref, ref_frac, rec, rec_frac, diff_spec, sq_spec, acc_spec, inv_n, res_spec, order, probe):
    """The AE's distance head: res(acc(tree_sum(acc(sq((rec_i - ref_i)**2))) * acc(1/n))), the tree taking the
    leaves in the order `order` (a permutation of the inputs, see plan.summation_order).

    Per-input sites report element i; the sum, mean and result sites element 0.
    """
    n_events, n_in = ref.shape
    acc_frac = acc_spec[1]
    d_frac = diff_spec[1]
    frac = max(ref_frac, rec_frac)
    y = np.empty((n_events, 1), dtype=np.int64)
    for n in nb.prange(n_events):
        leaves = np.empty(n_in, dtype=np.int64)
        for i in range(n_in):
            d = probed_cast(probe, n, _S_DIFF, i,
                            aligned(rec[n, i], rec_frac, frac) - aligned(ref[n, i], ref_frac, frac), frac, diff_spec)
            s = probed_cast(probe, n, _S_SQUARE, i, d * d, 2 * d_frac, sq_spec)
            leaves[i] = probed_cast(probe, n, _S_LEAF, i, s, sq_spec[1], acc_spec)
        total = tree_sum(leaves[order], 0, n_in, acc_frac, acc_spec, probe, n, _S_SUM)
        mean = probed_cast(probe, n, _S_MEAN, 0, total * inv_n, 2 * acc_frac, acc_spec)
        y[n, 0] = probed_cast(probe, n, _S_RESULT, 0, mean, acc_frac, res_spec)
    return y
