"""The RTL generators of the activations (firmware.rtl.ops_activations) equal the emulator bit for bit in a Verilator
co-simulation (Icarus in make regression) and are lint clean.

One single-input manifest holds every activation, each reading the input (signed) or its ReLU (unsigned): the table
activations with tables of power-of-two and other sizes, elu and selu, the rectifiers, hard sigmoid and tanh,
binary tanh, and softmax in each implementation (one stable softmax in two slices of a multi-dimensional input).
Tables are filled as the exporter fills them (emulator.tables), so no hls4ml is needed.
"""

import numpy as np
import pytest

from emulator.fixed_type import FixedType
from emulator.layers.activations import LOOKUPS, SELU_LAMBDA
from emulator.manifest import Layer, Manifest, Tensor
from emulator.plan import constant_code
from emulator.tables import (activation_table, legacy_exp_table, legacy_invert_table, softmax_exp_table,
                             softmax_invert_table)
from firmware.rtl.generator import generate_rtl
from firmware.rtl.lint import lint
from testbench.test_rtl_cosim import check

T = FixedType.parse
EVENTS = {"verilator": 20_000, "icarus": 300}
X = T("ap_fixed<10,4>")
SLICE = dict(n_slice=6, n_inner=1, n_outer=1)


def _lookup(kind, size, table, result):
    divisor = LOOKUPS[kind]
    return Layer(kind, kind, ["x"], (6,), T(result), types={"table": T(table)},
                 params={"divisor": divisor, "offset": (divisor // 2 * size) // divisor},
                 tensors={"table": activation_table(kind, size, T(table))})


def _softmax(name, op, src, result, exp_size, inv_size, address, slices=SLICE, **types):
    t = {k: T(v) for k, v in types.items()}
    negative = op == "softmax_stable"
    return Layer(name, op, [src], (6,), T(result), types=t, params=slices, tensors={
        "exp_table": softmax_exp_table(exp_size, T(address), 1.0, t["exp_table"], negative),
        "inv_table": softmax_invert_table(inv_size, t["inv_inp"], t["inv_table"])})


def activation_model(seed: int = 7) -> Manifest:
    rng = np.random.default_rng(seed)
    elu_table, selu_table, param = T("ap_fixed<16,4,AP_RND,AP_SAT>"), T("ap_fixed<18,8>"), T("ap_ufixed<8,0>")
    slope, shift = FixedType(16, 0, signed=False), FixedType(2, 0, signed=False)
    lambda_value, lambda_t = SELU_LAMBDA
    softmax_types = dict(exp_table="ap_fixed<18,8,AP_RND,AP_SAT>", inv_table="ap_fixed<18,8,AP_RND,AP_SAT>",
                         accum="ap_fixed<18,8,AP_RND,AP_SAT>", inv_inp="ap_fixed<16,6,AP_RND,AP_SAT>")
    legacy_table = FixedType(18, 8)
    layers = [
        _lookup("sigmoid", 200, "ap_fixed<18,8,AP_RND,AP_SAT>", "ap_ufixed<10,1,AP_RND,AP_SAT>"),
        _lookup("tanh", 256, "ap_fixed<16,2,AP_RND_CONV,AP_SAT>", "ap_fixed<9,2,AP_RND,AP_SAT>"),
        _lookup("softplus", 128, "ap_ufixed<16,6,AP_RND,AP_SAT>", "ap_fixed<10,4>"),
        _lookup("softsign", 64, "ap_fixed<12,2>", "ap_fixed<8,2,AP_RND_ZERO,AP_SAT>"),
        Layer("elu", "elu", ["x"], (6,), T("ap_fixed<10,4,AP_RND,AP_SAT>"), types={"table": elu_table, "param": param},
              params={"alpha": constant_code(0.7, param)}, tensors={"table": activation_table("elu", 128, elu_table)}),
        Layer("selu", "selu", ["x"], (6,), T("ap_fixed<12,4,AP_TRN,AP_WRAP>"),
              types={"table": selu_table, "lambda": lambda_t}, params={"lambda": constant_code(lambda_value, lambda_t)},
              tensors={"table": activation_table("selu", 100, selu_table)}),
        Layer("thresholded", "thresholded_relu", ["x"], (6,), T("ap_fixed<9,4>"), types={"param": T("ap_fixed<8,3>")},
              params={"theta": constant_code(0.5, T("ap_fixed<8,3>"))}),
        Layer("prelu", "prelu", ["x"], (6,), T("ap_fixed<10,3,AP_RND,AP_SAT>"), types={"param": T("ap_fixed<8,2>")},
              tensors={"param": rng.integers(-128, 128, size=6).astype(np.int64)}),
        Layer("hard_sigmoid", "hard_sigmoid", ["x"], (6,), T("ap_fixed<8,1,AP_RND,AP_SAT>"),
              types={"slope": slope, "shift": shift},
              params={"slope": constant_code(0.2, slope), "shift": constant_code(0.5, shift)}),
        Layer("hard_tanh", "hard_tanh", ["x"], (6,), T("ap_fixed<6,2,AP_RND_CONV,AP_SAT>"),
              types={"slope": shift, "shift": shift}, params={"slope": 2, "shift": 2}),
        Layer("binary", "binary_tanh", ["x"], (6,), T("ap_int<2>")),
        Layer("relu", "relu", ["x"], (6,), T("ap_ufixed<9,4>")),
        _softmax("latency", "softmax_latency", "x", "ap_ufixed<10,0,AP_RND,AP_SAT>", 64, 128, "ap_fixed<10,4>",
                 **softmax_types),
        _softmax("stable", "softmax_stable", "x", "ap_fixed<10,2,AP_RND,AP_SAT>", 128, 256, "ap_ufixed<9,3>",
                 inp_norm="ap_ufixed<9,3>", **softmax_types),
        _softmax("stable_slices", "softmax_stable", "relu", "ap_fixed<12,2,AP_RND,AP_SAT>", 256, 64,
                 "ap_ufixed<9,4>", dict(n_slice=3, n_inner=1, n_outer=2), inp_norm="ap_ufixed<9,4>", **softmax_types),
        Layer("legacy", "softmax_legacy", ["x"], (6,), T("ap_ufixed<12,1,AP_RND,AP_SAT>"),
              types={"table": legacy_table}, params=SLICE,
              tensors={"exp_table": legacy_exp_table(64, legacy_table),
                       "inv_table": legacy_invert_table(128, legacy_table)}),
        Layer("argmax", "softmax_argmax", ["x"], (6,), T("ap_ufixed<4,1>"), params=SLICE),
    ]
    outputs = [layer.name for layer in layers if layer.name != "relu"]
    return Manifest("activations_test", [Tensor("x", (6,), X)], layers, outputs)


@pytest.fixture(scope="module")
def manifest():
    return activation_model()


def test_manifest_holds_every_activation(manifest):
    assert {"sigmoid", "tanh", "softplus", "softsign", "elu", "selu", "thresholded_relu", "prelu", "hard_sigmoid",
            "hard_tanh", "binary_tanh", "softmax_latency", "softmax_stable", "softmax_legacy",
            "softmax_argmax"} <= {layer.op for layer in manifest.layers}


def test_activation_rtl_is_lint_clean(manifest, tmp_path):
    design = generate_rtl(manifest, tmp_path)
    lint(design.sources, design.top)


@pytest.mark.parametrize("simulator", ["verilator", pytest.param("icarus", marks=pytest.mark.regression)])
def test_activation_rtl_matches_emulator(manifest, simulator):
    check(manifest, simulator, EVENTS[simulator])
