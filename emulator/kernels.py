"""numba kernels, one per manifest op, over blocks of events: raw int64 codes in, raw int64 codes out.

Every kernel is parallel over events (the first axis) and applies the casts of the HLS templates in their order.
A type is passed as its `spec` = (width, fractional, signed, rounding_id, overflow_id) from `arith.type_spec`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .arith import cast

_JIT = dict(parallel=True, cache=True)


@nb.njit(inline="always", cache=True)
def aligned(code, frac, to_frac):
    """The code of the same value on a finer grid (to_frac >= frac)."""
    return code << (to_frac - frac)


@nb.njit(**_JIT)
def matmul_cast(x, x_frac, index, w, w_frac, b, b_frac, acc_spec, res_spec):
    """hls4ml dense_latency applied to gathered inputs: y[n, p, j] = res(acc(b_j) + sum_i acc(x[n, index[p, i]] * w[i, j])).

    `index` (pixels, n_in) picks each pixel's input vector (identity for Dense, im2col for Conv2D).
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
            for i in range(n_in):
                xi = x[n, index[p, i]]
                for j in range(n_out):
                    prod = cast(xi * w[i, j], prod_frac, acc_spec)
                    acc[j] = cast(acc[j] + prod, acc_frac, acc_spec)
            for j in range(n_out):
                y[n, p * n_out + j] = cast(acc[j], acc_frac, res_spec)
    return y


@nb.njit(**_JIT)
def scale_shift_cast(x, x_frac, channel, scale, s_frac, bias, b_frac, res_spec):
    """hls4ml normalize: y[n, i] = res(x * scale[c] + bias[c]), c = channel[i], with one rounding."""
    n_events, n_in = x.shape
    prod_frac = x_frac + s_frac
    frac = max(prod_frac, b_frac)
    y = np.empty((n_events, n_in), dtype=np.int64)
    for n in nb.prange(n_events):
        for i in range(n_in):
            c = channel[i]
            value = aligned(x[n, i] * scale[c], prod_frac, frac) + aligned(bias[c], b_frac, frac)
            y[n, i] = cast(value, frac, res_spec)
    return y


@nb.njit(**_JIT)
def leaky_relu_cast(x, x_frac, alpha, alpha_frac, res_spec):
    """hls4ml relu / leaky_relu: res(x) where x > 0, else res(alpha * x) (alpha = 0 is ReLU)."""
    n_events, n_in = x.shape
    y = np.empty((n_events, n_in), dtype=np.int64)
    for n in nb.prange(n_events):
        for i in range(n_in):
            v = x[n, i]
            if v > 0:
                y[n, i] = cast(v, x_frac, res_spec)
            else:
                y[n, i] = cast(alpha * v, x_frac + alpha_frac, res_spec)
    return y


@nb.njit(**_JIT)
def gather_cast(x, x_frac, index, res_spec):
    """y[n, k] = res(x[n, index[k]]), or 0 where index[k] < 0 (padding, upsampling, reshape, linear)."""
    n_events = x.shape[0]
    n_out = index.shape[0]
    y = np.empty((n_events, n_out), dtype=np.int64)
    for n in nb.prange(n_events):
        for k in range(n_out):
            src = index[k]
            y[n, k] = cast(x[n, src], x_frac, res_spec) if src >= 0 else 0
    return y


@nb.njit(**_JIT)
def average_cast(x, x_frac, window, count, acc_spec, res_spec):
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
                    acc = cast(aligned(acc, acc_frac, frac) + aligned(x[n, src], x_frac, frac), frac, acc_spec)
            quotient = abs(acc) // count[o]
            y[n, o] = cast(quotient if acc >= 0 else -quotient, acc_frac, res_spec)
    return y


@nb.njit(cache=True)
def tree_sum(values, lo, count, frac, spec):
    """nnet::reduce with Op_add over values[lo:lo+count]: a balanced tree, cast into `spec` at every node."""
    if count == 1:
        return values[lo]
    if count == 2:
        return cast(values[lo] + values[lo + 1], frac, spec)
    left = 1
    while left * 2 < count:
        left *= 2
    return cast(tree_sum(values, lo, left, frac, spec) + tree_sum(values, lo + left, count - left, frac, spec),
                frac, spec)


@nb.njit(**_JIT)
def kl_divergence_cast(mean, mean_frac, logvar, logvar_frac, one, table, table_frac, index_scale, index_shift,
                       index_offset, inv_n, acc_spec, minus_half, res_spec):
    """The VAE's KL head (hls4ml contrib/kl_layer semantics): res(-0.5 * acc(tree_sum(kl_i) * acc(1/n))).

    kl_i = acc(acc(acc(L(1) + logvar_i) - exp_table[idx_i]) - acc(mean_i**2)), with
    idx_i = clamp(floor(logvar_code_i * index_scale / 2**index_shift) + index_offset, 0, len(table) - 1), `one` = L(1)
    as a code of logvar's type, `inv_n` = acc(1/n) and `minus_half` = res(-0.5) as codes.
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
            mean_sq = cast(mean[n, i] * mean[n, i], 2 * mean_frac, acc_spec)
            k = cast(one + lv, logvar_frac, acc_spec)
            idx = ((lv * index_scale) >> index_shift) + index_offset
            idx = min(max(idx, 0), last)
            k = cast(aligned(k, acc_frac, f2) - aligned(table[idx], table_frac, f2), f2, acc_spec)
            kl[i] = cast(k - mean_sq, acc_frac, acc_spec)
        total = tree_sum(kl, 0, n_in, acc_frac, acc_spec)
        total = cast(total * inv_n, 2 * acc_frac, acc_spec)
        y[n, 0] = cast(minus_half * total, res_frac + acc_frac, res_spec)
    return y


@nb.njit(**_JIT)
def mse_cast(ref, ref_frac, rec, rec_frac, diff_spec, sq_spec, acc_spec, inv_n, res_spec):
    """The AE's distance head: res(acc(tree_sum(acc(sq((rec_i - ref_i)**2))) * acc(1/n)))."""
    n_events, n_in = ref.shape
    acc_frac = acc_spec[1]
    d_frac = diff_spec[1]
    frac = max(ref_frac, rec_frac)
    y = np.empty((n_events, 1), dtype=np.int64)
    for n in nb.prange(n_events):
        leaves = np.empty(n_in, dtype=np.int64)
        for i in range(n_in):
            d = cast(aligned(rec[n, i], rec_frac, frac) - aligned(ref[n, i], ref_frac, frac), frac, diff_spec)
            s = cast(d * d, 2 * d_frac, sq_spec)
            leaves[i] = cast(s, sq_spec[1], acc_spec)
        total = tree_sum(leaves, 0, n_in, acc_frac, acc_spec)
        y[n, 0] = cast(cast(total * inv_n, 2 * acc_frac, acc_spec), acc_frac, res_spec)
    return y
