"""Manifests built directly (random integer weights, chosen types) for the RTL co-simulation tests, and stimuli.

`dnn_vae_encoder()` is DNN-VAE sized (57 -> BN -> dense 32 -> dense 16 -> dense 3 + 3 -> KL, 8-bit weights);
`small_cnn()` covers zeropad2d, conv2d, relu, avgpool2d, upsampling2d, reshape, dense and the MSE head.
"""

from __future__ import annotations

import numpy as np

from emulator.fixed_type import FixedType
from emulator.manifest import Layer, Manifest, Tensor
from emulator.tables import kl_exp_table

T = FixedType.parse


def _codes(rng, t: FixedType, shape, zero_fraction=0.0, span=None) -> np.ndarray:
    """Random codes of t (within +-span codes if given), some exactly zero."""
    low, high = (t.min_code, t.max_code) if span is None else (max(t.min_code, -span), min(t.max_code, span))
    codes = rng.integers(low, high + 1, size=shape)
    codes[rng.random(shape) < zero_fraction] = 0
    return codes.astype(np.int64)


def _dense(rng, name, src, n_in, n_out, weight, bias, accum, result, zero_fraction=0.5) -> Layer:
    return Layer(name, "dense", [src], (n_out,), T(result),
                 types={"weight": T(weight), "bias": T(bias), "accum": T(accum)},
                 params={"n_in": n_in, "n_out": n_out},
                 tensors={"weight": _codes(rng, T(weight), (n_in, n_out), zero_fraction),
                          "bias": _codes(rng, T(bias), (n_out,))})


def _batchnorm(rng, name, src, n, result, scale="ap_fixed<8,3>", bias="ap_fixed<8,3>") -> Layer:
    return Layer(name, "batchnorm", [src], (n,), T(result), types={"scale": T(scale), "bias": T(bias)},
                 params={"n_filt": -1},
                 tensors={"scale": _codes(rng, T(scale), (n,)), "bias": _codes(rng, T(bias), (n,))})


def _leaky(name, src, n, result, alpha=0.3) -> Layer:
    param = T("ap_fixed<16,6>")
    return Layer(name, "leaky_relu", [src], (n,), T(result), types={"param": param},
                 params={"alpha": int(round(alpha * 2 ** param.fractional))})


def dnn_vae_encoder(seed: int = 1) -> Manifest:
    """The DNN VAE encoder with its KL head; accumulators in WRAP (adder trees) and one in SAT (ordered chain)."""
    rng = np.random.default_rng(seed)
    table_t = T("ap_fixed<18,8,AP_RND,AP_SAT>")
    layers = [
        _batchnorm(rng, "bn0", "input_1", 57, "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"),
        _dense(rng, "dense1", "bn0", 57, 32, "ap_fixed<8,2>", "ap_fixed<8,3>", "ap_fixed<24,12>", "ap_fixed<16,6>"),
        _batchnorm(rng, "bn1", "dense1", 32, "ap_fixed<16,6,AP_RND,AP_SAT_SYM>"),
        _leaky("act1", "bn1", 32, "ap_fixed<16,6,AP_RND_ZERO,AP_WRAP_SM>"),
        _dense(rng, "dense2", "act1", 32, 16, "ap_fixed<8,2>", "ap_fixed<8,3>",
               "ap_fixed<18,8,AP_RND_INF,AP_SAT>", "ap_fixed<16,6,AP_TRN_ZERO,AP_SAT_ZERO>"),
        _batchnorm(rng, "bn2", "dense2", 16, "ap_fixed<16,6>"),
        _leaky("act2", "bn2", 16, "ap_ufixed<12,4,AP_RND_MIN_INF,AP_SAT>"),
        _dense(rng, "mu", "act2", 16, 3, "ap_fixed<8,1>", "ap_fixed<8,1>", "ap_fixed<22,10>", "ap_fixed<16,6>"),
        _dense(rng, "logvar", "act2", 16, 3, "ap_fixed<8,1>", "ap_fixed<8,1>", "ap_fixed<22,10>", "ap_fixed<16,6>"),
        Layer("kl", "kl_divergence", ["mu", "logvar"], (1,), T("ap_fixed<16,8,AP_RND,AP_SAT>"),
              types={"accum": T("ap_fixed<20,10,AP_RND,AP_SAT>"), "exp_table": table_t},
              params={"n_in": 3, "table_size": 1024, "exp_range": 8},
              tensors={"exp_table": kl_exp_table(1024, 8, table_t)}),
    ]
    return Manifest("dnn_vae_encoder_test", [Tensor("input_1", (57,), T("ap_fixed<16,6>"))], layers, ["kl"])


def small_cnn(seed: int = 2) -> Manifest:
    """A 6x3x1 image: zero-pad to 7x3, conv 3x3 (2 filters), ReLU, avg-pool (2,1), upsample (2,1), flatten,
    dense back to 18 values, and the MSE of input against that reconstruction."""
    rng = np.random.default_rng(seed)
    x_t = T("ap_fixed<10,4>")
    layers = [
        Layer("pad", "zeropad2d", ["image"], (7, 3, 1), T("ap_fixed<10,4>"),
              params=dict(in_height=6, in_width=3, n_chan=1, pad_top=1, pad_bottom=0, pad_left=0, pad_right=0,
                          out_height=7, out_width=3)),
        Layer("conv", "conv2d", ["pad"], (5, 1, 2), T("ap_fixed<12,5,AP_RND,AP_SAT>"),
              types={"weight": T("ap_fixed<6,2>"), "bias": T("ap_fixed<6,2>"),
                     "accum": T("ap_fixed<14,6,AP_TRN,AP_SAT>")},
              params=dict(in_height=7, in_width=3, n_chan=1, n_filt=2, filt_height=3, filt_width=3,
                          stride_height=1, stride_width=1, pad_top=0, pad_bottom=0, pad_left=0, pad_right=0,
                          out_height=5, out_width=1),
              tensors={"weight": _codes(rng, T("ap_fixed<6,2>"), (3, 3, 1, 2), 0.3),
                       "bias": _codes(rng, T("ap_fixed<6,2>"), (2,))}),
        Layer("relu", "relu", ["conv"], (5, 1, 2), T("ap_ufixed<10,4,AP_RND_CONV,AP_SAT>")),
        Layer("pool", "avgpool2d", ["relu"], (2, 1, 2), T("ap_fixed<10,4,AP_RND,AP_WRAP>"),
              types={"accum": T("ap_fixed<12,5,AP_RND,AP_SAT>")},
              params=dict(in_height=5, in_width=1, n_filt=2, pool_height=2, pool_width=1, stride_height=2,
                          stride_width=1, pad_top=0, pad_bottom=0, pad_left=0, pad_right=0, out_height=2,
                          out_width=1, count_pad=0)),
        Layer("up", "upsampling2d", ["pool"], (4, 1, 2), T("ap_fixed<10,4>"),
              params=dict(in_height=2, in_width=1, n_chan=2, height_factor=2, width_factor=1, out_height=4,
                          out_width=1)),
        Layer("flat", "reshape", ["up"], (8,), T("ap_fixed<10,4>")),
        _dense(rng, "decode", "flat", 8, 18, "ap_fixed<6,2>", "ap_fixed<6,2>", "ap_fixed<16,6>", "ap_fixed<10,4>", 0.2),
        Layer("mse", "mse", ["image", "decode"], (1,), T("ap_fixed<16,6,AP_RND,AP_SAT>"),
              types={"diff": T("ap_fixed<11,5,AP_RND,AP_SAT>"), "square": T("ap_fixed<16,8,AP_RND_CONV,AP_SAT>"),
                     "accum": T("ap_fixed<18,9,AP_RND,AP_SAT>")},
              params={"n_in": 18}),
    ]
    return Manifest("small_cnn_test", [Tensor("image", (6, 3, 1), x_t)], layers, ["mse"])


def stimulus(manifest: Manifest, n_events: int, seed: int = 3) -> np.ndarray:
    """Input codes (n_events, n_in): mostly moderate values, some at the extremes of the input type."""
    rng = np.random.default_rng(seed)
    t = manifest.input.type
    size = manifest.input.size
    codes = rng.normal(0, (t.max_code - t.min_code) / 16, size=(n_events, size)).round().astype(np.int64)
    extremes = rng.integers(t.min_code, t.max_code + 1, size=(n_events, size))
    codes = np.where(rng.random((n_events, size)) < 0.1, extremes, codes)
    return np.clip(codes, t.min_code, t.max_code)
