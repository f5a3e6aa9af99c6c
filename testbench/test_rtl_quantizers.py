"""The RTL generators of the quantizer ops (firmware.rtl.ops_quantizers) equal the emulator bit for bit in a
Verilator co-simulation (Icarus in make regression) and are lint clean.

One single-input manifest holds every quantizer op: power-of-two weights (exponents that wrap bits out of the top of
the product type and shift them out of its bottom, both signs), a power-of-two scale, binary thresholds feeding
dense layers on binary data (nnet::cast's binary-network case, and 'data_binary' products), a ternary threshold.
Weights and thresholds are seeded random codes; no hls4ml is needed (the emulator is checked against hls4ml's C-sim
in tests/test_catalogue_quantizers.py).
"""

import numpy as np
import pytest

from emulator.fixed_type import FixedType
from emulator.layers.quantizers import BIT_TYPE, SIGN_TYPE, shift_product_type
from emulator.manifest import Layer, Manifest, Tensor
from firmware.rtl.generator import generate_rtl
from firmware.rtl.lint import lint
from testbench.test_rtl_cosim import check

T = FixedType.parse
EVENTS = {"verilator": 20_000, "icarus": 300}
X = T("ap_fixed<10,3>")


def _codes(rng, t: FixedType, shape, spread: float = 1.0) -> np.ndarray:
    """Random codes of `t`, within `spread` of its range around 0."""
    lo, hi = int(t.min_code * spread), int(t.max_code * spread)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int64)


def _binary_input(name, src, n_in, n_out, table, product, bnn, rng):
    types = {"product": product, "bias": T("ap_fixed<8,3>"), "accum": T("ap_fixed<10,4,AP_TRN,AP_SAT>")}
    return Layer(name, "dense_binary_input", [src], (n_out,), T("ap_fixed<9,5,AP_RND,AP_SAT>"), types=types,
                 params={"n_in": n_in, "n_out": n_out, "bnn_cast": bnn},
                 tensors={"product": table.astype(np.int64), "bias": _codes(rng, types["bias"], n_out)})


def quantizer_model(seed: int = 5) -> Manifest:
    rng = np.random.default_rng(seed)
    exponent5, exponent4 = FixedType(5, 5), FixedType(4, 4)
    po2_t, scale_t = T("ap_fixed<12,4,AP_RND_CONV,AP_SAT>"), T("ap_fixed<10,4,AP_RND,AP_SAT>")
    w = rng.integers(0, 2, size=(5, 4))
    weight_t = T("ap_fixed<6,2>")
    signed_w = _codes(rng, weight_t, (5, 4))
    layers = [
        Layer("po2", "dense_exponential", ["x"], (5,), po2_t,
              types={"exponent": exponent5, "product": shift_product_type(X, exponent5), "bias": T("ap_fixed<8,2>"),
                     "accum": T("ap_fixed<20,6,AP_RND,AP_SAT>")}, params={"n_in": 6, "n_out": 5},
              tensors={"sign": rng.integers(0, 2, size=(6, 5)), "exponent": rng.integers(-16, 16, size=(6, 5)),
                       "bias": _codes(rng, T("ap_fixed<8,2>"), 5)}),
        Layer("scale", "scale_exponential", ["po2"], (5,), scale_t,
              types={"exponent": exponent4, "product": shift_product_type(po2_t, exponent4),
                     "bias": T("ap_fixed<8,3>")},
              params={"n_filt": -1},
              tensors={"sign": rng.integers(0, 2, size=5), "exponent": rng.integers(-8, 8, size=5),
                       "bias": _codes(rng, T("ap_fixed<8,3>"), 5)}),
        Layer("bits", "binary_threshold", ["scale"], (5,), BIT_TYPE, params={"n_filt": -1},
              tensors={"threshold": _codes(rng, scale_t, 5, 0.2)}),
        _binary_input("both", "bits", 5, 4, np.stack([w == 0, w == 1]), BIT_TYPE, True, rng),
        _binary_input("data_binary", "bits", 5, 4, np.stack([-signed_w, signed_w]), T("ap_fixed<7,3>"), False, rng),
        Layer("ternary", "ternary_threshold", ["both"], (4,), SIGN_TYPE, params={"n_filt": -1},
              tensors={"threshold_hi": _codes(rng, T("ap_fixed<9,5>"), 4, 0.1) + 8,
                       "threshold_lo": _codes(rng, T("ap_fixed<9,5>"), 4, 0.1) - 8}),
    ]
    return Manifest("quantizers_test", [Tensor("x", (6,), X)], layers, ["ternary", "data_binary"])


@pytest.fixture(scope="module")
def manifest():
    return quantizer_model()


def test_rtl_of_quantizer_ops_is_lint_clean(manifest, tmp_path):
    design = generate_rtl(manifest, tmp_path)
    lint(design.sources, design.top)


@pytest.mark.parametrize("simulator", ["verilator", pytest.param("icarus", marks=pytest.mark.regression)])
def test_rtl_of_quantizer_ops_matches_emulator(manifest, simulator):
    check(manifest, simulator, EVENTS[simulator])
