"""The RTL generators of the structure ops (firmware.rtl.ops_structure, and conv2d with padding inside the layer) equal
the emulator bit for bit in a Verilator co-simulation (Icarus in make regression) and are lint clean.

One single-input, multi-branch, two-output manifest holds every op: padded 1D and 2D convolutions, depthwise
convolutions, max pooling with padding on unsigned and signed inputs (hls4ml's pad value differs), average and
global pooling, every merge (with hls4ml's modulo broadcast), concatenation along each axis, and a dot product.
"""

import numpy as np
import pytest

from emulator.fixed_type import FixedType, UnsupportedType
from emulator.manifest import Layer, Manifest, Tensor
from firmware.rtl.generator import generate_rtl
from firmware.rtl.lint import lint
from testbench.test_rtl_cosim import check

T = FixedType.parse
EVENTS = {"verilator": 20_000, "icarus": 300}


def _conv(rng, name, op, src, geometry, weight, bias, accum, result):
    g = {**dict(stride_height=1, stride_width=1, pad_top=0, pad_bottom=0, pad_left=0, pad_right=0), **geometry}
    taps = g["filt_height"] * g["filt_width"] * g["n_chan"]
    shape = (taps, g["n_filt"]) if op == "conv2d" else (taps,)
    w = rng.integers(T(weight).min_code, T(weight).max_code + 1, size=shape)
    w[rng.random(shape) < 0.2] = 0
    b = rng.integers(T(bias).min_code, T(bias).max_code + 1, size=g["n_filt"])
    out = (g["out_height"], g["out_width"], g["n_filt"])
    return Layer(name, op, [src], out, T(result), types={"weight": T(weight), "bias": T(bias), "accum": T(accum)},
                 params=g, tensors={"weight": w.astype(np.int64), "bias": b.astype(np.int64)})


def _pool(name, op, src, result, accum, in_hw, n_filt, pool, stride, pads, out_hw):
    params = dict(in_height=in_hw[0], in_width=in_hw[1], n_filt=n_filt, pool_height=pool[0], pool_width=pool[1],
                  stride_height=stride[0], stride_width=stride[1], pad_top=pads[0], pad_bottom=pads[1],
                  pad_left=pads[2], pad_right=pads[3], out_height=out_hw[0], out_width=out_hw[1], count_pad=0)
    return Layer(name, op, [src], (*out_hw, n_filt), T(result), types={"accum": T(accum)}, params=params)


def _merge(name, op, inputs, shape, result, n_elem1, n_elem2):
    return Layer(name, op, inputs, shape, T(result), params={"n_elem1": n_elem1, "n_elem2": n_elem2})


def structure_model(seed: int = 5) -> Manifest:
    """A (5, 4, 2) image through two branches (a 2D one and a 1D one on its first row) that merge again."""
    rng = np.random.default_rng(seed)
    layers = [
        # 2D branch: padded strided conv, unsigned ReLU-like result, padded max pooling (pad value 2**(W-1))
        _conv(rng, "conv", "conv2d", "image", dict(in_height=5, in_width=4, n_chan=2, n_filt=3, filt_height=3,
              filt_width=3, stride_height=2, stride_width=1, pad_top=1, pad_bottom=1, pad_left=1, pad_right=1,
              out_height=3, out_width=4), "ap_fixed<6,2>", "ap_fixed<6,2>", "ap_fixed<14,6,AP_TRN,AP_SAT>",
              "ap_ufixed<8,4,AP_RND,AP_SAT>"),
        _pool("upool", "maxpool2d", "conv", "ap_fixed<9,5,AP_RND_CONV,AP_SAT_SYM>", "ap_fixed<8,4,AP_TRN,AP_WRAP>",
              (3, 4), 3, (2, 2), (2, 2), (0, 1, 0, 0), (2, 2)),
        _conv(rng, "dw", "depthwise2d", "conv", dict(in_height=3, in_width=4, n_chan=3, n_filt=3, filt_height=2,
              filt_width=3, pad_top=0, pad_bottom=1, pad_left=1, pad_right=1, out_height=3, out_width=4),
              "ap_fixed<5,2>", "ap_fixed<6,3>", "ap_fixed<12,5,AP_RND,AP_WRAP>", "ap_fixed<8,3,AP_RND_ZERO,AP_SAT>"),
        _pool("spool", "maxpool2d", "dw", "ap_fixed<8,3>", "ap_fixed<10,4>", (3, 4), 3, (2, 3), (2, 3),
              (0, 1, 1, 1), (2, 2)),
        _pool("apool", "avgpool2d", "dw", "ap_fixed<8,3,AP_RND,AP_SAT>", "ap_fixed<10,4,AP_RND,AP_SAT>", (3, 4), 3,
              (2, 2), (2, 2), (0, 1, 0, 0), (2, 2)),
        _merge("sum", "add", ["upool", "spool"], (2, 2, 3), "ap_fixed<9,5,AP_RND,AP_SAT>", 12, 12),
        _merge("diff", "subtract", ["apool", "upool"], (2, 2, 3), "ap_fixed<7,3,AP_TRN_ZERO,AP_WRAP>", 12, 12),
        _merge("mean", "average", ["sum", "diff"], (2, 2, 3), "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", 12, 12),
        _pool("gavg", "avgpool2d", "mean", "ap_fixed<8,3,AP_RND_INF,AP_SAT>", "ap_fixed<12,5>", (2, 2), 3, (2, 2),
              (2, 2), (0, 0, 0, 0), (1, 1)),
        _merge("scaled", "multiply", ["mean", "gavg"], (2, 2, 3), "ap_fixed<9,3,AP_RND,AP_SAT_ZERO>", 12, 3),
        _merge("high", "maximum", ["scaled", "apool"], (2, 2, 3), "ap_fixed<7,3,AP_RND,AP_SAT>", 12, 12),
        _merge("low", "minimum", ["diff", "gavg"], (2, 2, 3), "ap_ufixed<6,3,AP_RND,AP_SAT>", 12, 3),
        Layer("rows", "concatenate", ["high", "low"], (4, 2, 3), T("ap_fixed<8,3>"), params={"axis": 0, "n_elem1": 12}),
        Layer("cols", "concatenate", ["high", "low"], (2, 4, 3), T("ap_fixed<7,3,AP_RND,AP_SAT>"),
              params={"axis": 1, "n_elem1": 12}),
        Layer("chans", "concatenate", ["rows", "cols"], (4, 2, 6), T("ap_fixed<8,4>"),
              params={"axis": 2, "n_elem1": 24}),
        _pool("gmax", "maxpool2d", "chans", "ap_fixed<8,4>", "ap_fixed<8,4>", (4, 2), 6, (4, 2), (4, 2),
              (0, 0, 0, 0), (1, 1)),
        # 1D branch on the image's first row: padded conv, depthwise, global pooling, 1D concatenation and a dot
        _conv(rng, "conv1d", "conv2d", "image", dict(in_height=1, in_width=4, n_chan=2, n_filt=2, filt_height=1,
              filt_width=3, pad_left=2, pad_right=0, out_height=1, out_width=4), "ap_fixed<6,2>", "ap_fixed<6,2>",
              "ap_fixed<12,5,AP_RND,AP_SAT>", "ap_fixed<8,3,AP_RND,AP_SAT>"),
        _conv(rng, "dw1d", "depthwise2d", "conv1d", dict(in_height=1, in_width=4, n_chan=2, n_filt=2, filt_height=1,
              filt_width=2, stride_width=2, out_height=1, out_width=2), "ap_fixed<6,2>", "ap_fixed<6,2>",
              "ap_fixed<12,5>", "ap_fixed<8,3,AP_RND,AP_SAT>"),
        _pool("gmax1d", "maxpool2d", "dw1d", "ap_fixed<8,3>", "ap_fixed<8,3>", (1, 2), 2, (1, 2), (1, 2),
              (0, 0, 0, 0), (1, 1)),
        Layer("pair", "concatenate", ["gmax1d", "gmax"], (8,), T("ap_fixed<8,4,AP_RND,AP_SAT>"),
              params={"axis": 0, "n_elem1": 2}),
        Layer("swapped", "concatenate", ["gmax", "gmax1d"], (8,), T("ap_fixed<8,4>"), params={"axis": 0, "n_elem1": 6}),
        Layer("dot", "dot", ["pair", "swapped"], (1,), T("ap_fixed<10,5,AP_RND,AP_SAT>"),
              types={"accum": T("ap_fixed<12,6,AP_RND,AP_SAT>")}, params={"n_in": 8}),
    ]
    return Manifest("structure_test", [Tensor("image", (5, 4, 2), T("ap_fixed<8,3>"))], layers, ["dot", "pair"])


@pytest.fixture(scope="module")
def manifest():
    return structure_model()


def test_manifest_holds_every_structure_op(manifest):
    ops = {layer.op for layer in manifest.layers}
    assert {"conv2d", "depthwise2d", "maxpool2d", "avgpool2d", "add", "subtract", "multiply", "average", "maximum",
            "minimum", "concatenate", "dot"} <= ops


def test_structure_rtl_is_lint_clean(manifest, tmp_path):
    design = generate_rtl(manifest, tmp_path)
    lint(design.sources, design.top)


@pytest.mark.parametrize("simulator", ["verilator", pytest.param("icarus", marks=pytest.mark.regression)])
def test_structure_rtl_matches_emulator(manifest, simulator):
    check(manifest, simulator, EVENTS[simulator])


def test_multi_input_rtl_is_refused_with_the_reason(tmp_path):
    manifest = Manifest("two_inputs", [Tensor("a", (3,), T("ap_fixed<8,3>")), Tensor("b", (3,), T("ap_fixed<8,3>"))],
                        [Layer("sum", "add", ["a", "b"], (3,), T("ap_fixed<9,4>"),
                               params={"n_elem1": 3, "n_elem2": 3})],
                        ["sum"])
    with pytest.raises(UnsupportedType, match=r"2 inputs \(a, b\); the generated top level.*one input tensor"):
        generate_rtl(manifest, tmp_path)
