"""Hand-built manifests for the coverage tests: every op of the manifest schema, with integer codes chosen here."""

from __future__ import annotations

import numpy as np

from emulator.fixed_type import FixedType
from emulator.manifest import Layer, Manifest, Tensor
from emulator.tables import kl_exp_table

T = FixedType.parse


def _codes(rng, t: FixedType, shape) -> np.ndarray:
    return rng.integers(t.min_code, t.max_code + 1, size=shape, dtype=np.int64)


def dense(name, src, n_in, n_out, w, b, accum, result, rng=None, weight=None, bias=None) -> Layer:
    weight = _codes(rng, w, (n_in, n_out)) if weight is None else np.asarray(weight, dtype=np.int64)
    bias = _codes(rng, b, (n_out,)) if bias is None else np.asarray(bias, dtype=np.int64)
    return Layer(name, "dense", [src], (n_out,), result, {"weight": w, "bias": b, "accum": accum},
                 {"n_in": n_in, "n_out": n_out}, {"weight": weight, "bias": bias})


def two_input_dense() -> Manifest:
    """y = cast_res(acc(acc(x0) + acc(x1))) with unit weights: integer inputs, 8-bit SAT accumulator, result on a
    grid of 2 (one dropped bit: odd sums are exact RND ties)."""
    layer = dense("fc", "x", 2, 1, T("ap_fixed<4,4>"), T("ap_fixed<4,4>"), T("ap_fixed<8,8,AP_TRN,AP_SAT>"),
                  T("ap_fixed<6,7,AP_RND,AP_SAT>"), weight=[[1], [1]], bias=[0])
    return Manifest("two_input_dense", [Tensor("x", (2,), T("ap_fixed<8,8>"))], [layer], ["fc"])


def saturating_sum() -> Manifest:
    """acc = sat8(sat8(sat8(x0) + x1) + x2): the order of the sum matters once a partial sum saturates."""
    layer = dense("fc", "x", 3, 1, T("ap_fixed<4,4>"), T("ap_fixed<4,4>"), T("ap_fixed<8,8,AP_TRN,AP_SAT>"),
                  T("ap_fixed<8,8>"), weight=[[1], [1], [1]], bias=[0])
    return Manifest("saturating_sum", [Tensor("x", (3,), T("ap_fixed<8,8>"))], [layer], ["fc"])


def cnn(seed=0) -> Manifest:
    """zeropad2d, conv2d, relu, avgpool2d, upsampling2d, reshape, dense."""
    rng = np.random.default_rng(seed)
    geometry = dict(stride_height=1, stride_width=1, pad_top=0, pad_bottom=0, pad_left=0, pad_right=0)
    pad = Layer("pad", "zeropad2d", ["x"], (5, 5, 1), T("ap_fixed<10,4,AP_RND,AP_SAT>"), {}, dict(
        in_height=3, in_width=3, n_chan=1, pad_top=1, pad_bottom=1, pad_left=1, pad_right=1, out_height=5, out_width=5))
    w_t, b_t = T("ap_fixed<6,2>"), T("ap_fixed<6,2>")
    conv = Layer("conv", "conv2d", ["pad"], (3, 3, 2), T("ap_fixed<8,3,AP_RND,AP_SAT>"),
                 {"weight": w_t, "bias": b_t, "accum": T("ap_fixed<12,5>")},
                 dict(in_height=5, in_width=5, n_chan=1, n_filt=2, filt_height=3, filt_width=3, out_height=3,
                      out_width=3, **geometry),
                 {"weight": _codes(rng, w_t, (3, 3, 1, 2)), "bias": _codes(rng, b_t, (2,))})
    relu = Layer("relu", "relu", ["conv"], (3, 3, 2), T("ap_ufixed<8,3,AP_RND_ZERO,AP_SAT>"))
    pool = Layer("pool", "avgpool2d", ["relu"], (2, 2, 2), T("ap_fixed<8,3,AP_RND_INF,AP_WRAP>"),
                 {"accum": T("ap_fixed<12,6>")},
                 dict(in_height=3, in_width=3, n_filt=2, pool_height=2, pool_width=2, out_height=2, out_width=2,
                      count_pad=False, **geometry))
    up = Layer("up", "upsampling2d", ["pool"], (4, 4, 2), T("ap_fixed<8,3>"),
               params=dict(in_height=2, in_width=2, n_chan=2, height_factor=2, width_factor=2))
    flat = Layer("flat", "reshape", ["up"], (32,), T("ap_fixed<8,3>"))
    fc = dense("fc", "flat", 32, 3, T("ap_fixed<6,1>"), T("ap_fixed<6,1>"), T("ap_fixed<14,6,AP_TRN,AP_SAT>"),
               T("ap_fixed<10,5,AP_RND_CONV,AP_WRAP>"), rng)
    return Manifest("cnn", [Tensor("x", (3, 3, 1), T("ap_fixed<10,4,AP_RND_CONV,AP_SAT>"))],
                    [pad, conv, relu, pool, up, flat, fc], ["fc"])


def chain_with_heads(seed=0) -> Manifest:
    """batchnorm, dense, leaky_relu, relu, linear, and both score heads (kl_divergence, mse)."""
    rng = np.random.default_rng(seed)
    s_t, b_t = T("ap_fixed<10,3>"), T("ap_fixed<10,3>")
    bn = Layer("bn", "batchnorm", ["x"], (6,), T("ap_fixed<10,5,AP_RND,AP_SAT>"), {"scale": s_t, "bias": b_t},
               {"n_filt": -1}, {"scale": _codes(rng, s_t, (6,)), "bias": _codes(rng, b_t, (6,))})
    w, acc = T("ap_fixed<8,2>"), T("ap_fixed<18,8>")
    fc = dense("fc", "bn", 6, 4, w, w, acc, T("ap_fixed<12,6,AP_RND_CONV,AP_SAT>"), rng)
    lrelu = Layer("lrelu", "leaky_relu", ["fc"], (4,), T("ap_fixed<10,5,AP_RND_MIN_INF,AP_SAT_SYM>"),
                  {"param": T("ap_fixed<10,0>")}, {"alpha": 154})
    relu = Layer("relu", "relu", ["lrelu"], (4,), T("ap_fixed<8,4,AP_RND,AP_SAT_ZERO>"))
    lin = Layer("lin", "linear", ["relu"], (4,), T("ap_fixed<7,3,AP_RND_CONV,AP_WRAP_SM>"))
    z_mean = dense("z_mean", "lin", 4, 2, w, w, acc, T("ap_fixed<10,3,AP_RND,AP_SAT>"), rng)
    z_log_var = dense("z_log_var", "lin", 4, 2, w, w, acc, T("ap_fixed<10,4,AP_RND,AP_SAT>"), rng)
    table_t = T("ap_fixed<16,6>")
    kl = Layer("kl", "kl_divergence", ["z_mean", "z_log_var"], (1,), T("ap_fixed<20,8,AP_RND_CONV,AP_SAT>"),
               {"accum": T("ap_fixed<20,8>"), "exp_table": table_t}, {"n_in": 2, "table_size": 64, "exp_range": 1},
               {"exp_table": np.sort(_codes(rng, table_t, (64,)))})
    rec = dense("rec", "lin", 4, 6, w, w, acc, T("ap_fixed<10,5,AP_RND,AP_SAT>"), rng)
    mse = Layer("mse", "mse", ["bn", "rec"], (1,), T("ap_fixed<16,8,AP_RND_CONV,AP_SAT>"),
                {"diff": T("ap_fixed<12,6,AP_RND,AP_SAT>"), "square": T("ap_fixed<16,8,AP_RND,AP_SAT>"),
                 "accum": T("ap_fixed<18,10>")}, {"n_in": 6})
    return Manifest("chain", [Tensor("x", (6,), T("ap_fixed<12,6,AP_RND_CONV,AP_SAT>"))],
                    [bn, fc, lrelu, relu, lin, z_mean, z_log_var, kl, rec, mse], ["kl", "mse"])


def autoencoder_head(seed=0) -> Manifest:
    """An input batchnorm (scales of one and an odd scale, biases that make ties, saturating), a reconstruction and
    the MSE head, its sum saturating. Reference codes are 2 * bias mod 32 where the scale is one (bias 33: 16.5
    rounds to 16 under RND_CONV), so the square of rec - ref (rec a multiple of 32 on its grid) meets a tie, 2**8
    mod 2**9, only at elements 1 (ref = 16 mod 32) and 2 (odd scale), or when ref saturates to an odd code."""
    rng = np.random.default_rng(seed)
    s_t, b_t = T("ap_fixed<10,3>"), T("ap_fixed<12,3>")
    bn = Layer("bn", "batchnorm", ["x"], (4,), T("ap_fixed<12,4,AP_RND_CONV,AP_SAT>"), {"scale": s_t, "bias": b_t},
               {"n_filt": -1}, {"scale": np.array([128, 128, 93, 128]), "bias": np.array([0, 33, 0, 1])})
    w = T("ap_fixed<8,2>")
    rec = dense("rec", "bn", 4, 4, w, w, T("ap_fixed<18,8>"), T("ap_fixed<8,5,AP_RND,AP_SAT>"), rng)
    mse = Layer("mse", "mse", ["bn", "rec"], (1,), T("ap_fixed<18,7,AP_RND_CONV,AP_SAT>"),
                {"diff": T("ap_fixed<14,6,AP_RND,AP_SAT>"), "square": T("ap_fixed<18,11,AP_RND,AP_SAT>"),
                 "accum": T("ap_fixed<16,9,AP_RND_CONV,AP_SAT>")}, {"n_in": 4})
    return Manifest("autoencoder_head", [Tensor("x", (4,), T("ap_fixed<10,7,AP_RND_CONV,AP_SAT>"))], [bn, rec, mse],
                    ["mse"])


def kl_of_two_means(together: bool) -> Manifest:
    """One input code x in [0, 3.75], two latent means -2x + 3.5 and (together) the same or (apart) 2x - 4, each
    reaching -4, a log variance of 0, and a KL head of type ap_fixed<10,5> scoring (m0**2 + m1**2) / 4: 8, where the
    type one bit narrower overflows, needs both means at -4, which only the means together reach."""
    w, b, acc = T("ap_fixed<4,3>"), T("ap_fixed<6,3>"), T("ap_fixed<16,8>")
    mean_t = T("ap_fixed<6,3,AP_RND_CONV,AP_SAT>")
    sign = -1 if together else 1
    mean = dense("mean", "x", 1, 2, w, b, acc, mean_t, weight=[[-4, 4 * sign]], bias=[28, 28 if together else -32])
    logvar = dense("logvar", "x", 1, 2, w, b, acc, mean_t, weight=[[0, 0]], bias=[0, 0])
    return Manifest("kl_of_two_means", [Tensor("x", (1,), T("ap_ufixed<4,2>"))], [mean, logvar, _kl_of_two()],
                    ["kl"])


def kl_with_log_variance() -> Manifest:
    """Two inputs: two latent means -2 x0 + 3.75 (together, up to 3.75 from zero) and two log variances
    0.5 x1 - 1 (in [-1, 0.875]), a KL head of type ap_fixed<10,5> scoring the sum of m**2 + exp(v) - 1 - v over 4:
    at most 7.3, short of 8, where the type one bit narrower overflows. Interval analysis of the head over the whole
    log-variance range takes v and exp(v) apart (up to 2.4 per term, not 0.53), and has the means overflow it from
    3.625 out, which the means reach; over v <= 0 or v > 0 alone it finds no overflow at all."""
    w, b, acc = T("ap_fixed<4,3>"), T("ap_fixed<6,3>"), T("ap_fixed<16,8>")
    latent_t = T("ap_fixed<6,3,AP_RND_CONV,AP_SAT>")
    mean = dense("mean", "x", 2, 2, w, b, acc, latent_t, weight=[[-4, -4], [0, 0]], bias=[30, 30])
    logvar = dense("logvar", "x", 2, 2, w, b, acc, latent_t, weight=[[0, 0], [1, 1]], bias=[-8, -8])
    return Manifest("kl_with_log_variance", [Tensor("x", (2,), T("ap_ufixed<4,2>"))], [mean, logvar, _kl_of_two()],
                    ["kl"])


def kl_behind_relu() -> Manifest:
    """Two input codes x0, x1 in [0, 3.75], a ReLU layer 'h' of x0 - x1 and x1 - x0 (at most one of them above zero),
    two latent means -2 h (each reaching -4 alone), log variances of 0, and the KL head of `kl_of_two_means`: 8, where
    the type one bit narrower overflows, needs both means at -4 together, which the ReLU's kinks rule out."""
    w, b, acc = T("ap_fixed<4,3>"), T("ap_fixed<6,3>"), T("ap_fixed<16,8>")
    pre = dense("pre", "x", 2, 2, w, b, acc, T("ap_fixed<8,4,AP_RND_CONV,AP_SAT>"), weight=[[2, -2], [-2, 2]],
                bias=[0, 0])
    h = Layer("h", "relu", ["pre"], (2,), T("ap_ufixed<6,2,AP_RND_CONV,AP_SAT>"))
    latent_t = T("ap_fixed<6,3,AP_RND_CONV,AP_SAT>")
    mean = dense("mean", "h", 2, 2, w, b, acc, latent_t, weight=[[-4, 0], [0, -4]], bias=[0, 0])
    logvar = dense("logvar", "h", 2, 2, w, b, acc, latent_t, weight=[[0, 0], [0, 0]], bias=[0, 0])
    return Manifest("kl_behind_relu", [Tensor("x", (2,), T("ap_ufixed<4,2>"))], [pre, h, mean, logvar, _kl_of_two()],
                    ["kl"])


def _kl_of_two() -> Layer:
    """The KL head "kl" of the two-latent manifests: 'mean' and 'logvar' in, ap_fixed<10,5> out, a 64-entry table."""
    table_t = T("ap_fixed<16,6>")
    return Layer("kl", "kl_divergence", ["mean", "logvar"], (1,), T("ap_fixed<10,5,AP_RND_CONV,AP_SAT>"),
                 {"accum": T("ap_fixed<20,8>"), "exp_table": table_t}, {"n_in": 2, "table_size": 64, "exp_range": 1},
                 {"exp_table": kl_exp_table(64, 1, table_t)})


def random_codes(manifest: Manifest, n: int, seed=0) -> np.ndarray:
    """Input events: mostly small codes, some at the ends of the input range."""
    t, size = manifest.input.type, manifest.input.size
    rng = np.random.default_rng(seed)
    small = rng.integers(-(1 << (t.width - 3)), 1 << (t.width - 3), size=(n, size))
    ends = rng.choice([t.min_code, t.max_code], size=(n, size))
    return np.where(rng.random((n, size)) < 0.1, ends, small).astype(np.int64)


def test_hand_built_manifests_validate_and_round_trip(tmp_path):
    for manifest in (two_input_dense(), cnn(), chain_with_heads(), autoencoder_head()):
        manifest.validate()
        again = Manifest.load(manifest.save(tmp_path / f"{manifest.name}.json"))
        assert again.content_hash == manifest.content_hash
