"""The specialised fast emulator (emulator.fast) against the reference emulator: equal codes on every path.

Test manifests are built directly (random 8-bit weights, half of them zero); inputs mix ordinary codes, codes that
saturate every layer, the extreme codes, zeros and rounding ties. Some manifests have accumulators that do overflow,
in every overflow mode, so the interval proof must keep those casts; every cast mode is checked exhaustively over a
14-bit input in 16-, 32- and 64-bit lanes; hypothesis draws random layer chains with random types. Every code path
of the generator has a test: unrolled and looped convolutions, exact / modular / sequential accumulation, int32 and
int64 input codes, partial blocks, threads, layers left to the reference kernels, and the machine-code cache.
(The reference emulator is itself tested against hls4ml's C simulation in test_emulator_vs_csim.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from emulator import Emulator, FixedType, InputError, Manifest
from emulator.arith import quantize
from emulator.fast import FastEmulator, Range, codegen, generate, prove_cast
from emulator.fast.casts import plan_accumulation
from emulator.fast.compiled import Kernel
from emulator.fast.vector_ir import Vec
from emulator.fast.intervals import cast_range
from emulator.fixed_type import OVERFLOW_MODES, ROUNDING_MODES, UnsupportedType
from emulator.manifest import Layer, Tensor
from models.zoo import NAMES, ZOO_DIR

IN_T = FixedType(18, 12, True, "RND_CONV", "SAT")
W_T = FixedType(8, 1)
RES_T = FixedType(16, 6, True, "RND_CONV", "SAT")
ACT_T = FixedType(8, 4, True, "RND_CONV", "SAT")


# ---- manifest builders ------------------------------------------------------------------------------------
def codes(rng, shape, t: FixedType, zero_fraction=0.5):
    c = rng.integers(t.min_code, t.max_code + 1, size=shape, dtype=np.int64)
    c[rng.random(shape) < zero_fraction] = 0
    return c


def dense(rng, name, src, n_in, n_out, result=RES_T, accum=FixedType(31, 12), weight=W_T, bias=W_T):
    return Layer(name, "dense", [src], (n_out,), result, {"weight": weight, "bias": bias, "accum": accum},
                 {"n_in": n_in, "n_out": n_out},
                 {"weight": codes(rng, (n_in, n_out), weight), "bias": codes(rng, (n_out,), bias)})


def batchnorm(rng, name, src, n, result=FixedType(20, 8, True, "RND_CONV", "SAT")):
    scale_t, bias_t = FixedType(18, 2, True, "RND_CONV", "SAT"), FixedType(18, 4, True, "RND_CONV", "SAT")
    return Layer(name, "batchnorm", [src], (n,), result, {"scale": scale_t, "bias": bias_t}, {"n_filt": -1},
                 {"scale": codes(rng, (n,), scale_t, 0.1), "bias": codes(rng, (n,), bias_t, 0.3)})


def leaky(name, src, n, result=ACT_T):
    alpha_t = FixedType(18, 0, True, "RND_CONV", "SAT")
    return Layer(name, "leaky_relu", [src], (n,), result, {"param": alpha_t}, {"alpha": 78643})


def kl_layer(name, mean, logvar, n):
    table_t = FixedType(26, 13, True, "RND_CONV", "SAT")
    table = quantize(np.exp((np.arange(1024) - 512) / 64.0), table_t)
    return Layer(name, "kl_divergence", [mean, logvar], (1,), FixedType(31, 12, True, "RND_CONV", "SAT"),
                 {"accum": FixedType(31, 15, True, "RND_CONV", "SAT"), "exp_table": table_t},
                 {"n_in": n, "table_size": 1024, "exp_range": 8}, {"exp_table": table})


def vae_manifest(seed=1) -> Manifest:
    """57 -> batchnorm -> dense 32 -> leaky_relu -> dense 16 -> leaky_relu -> dense 3 (mean) + dense 3 -> KL."""
    rng = np.random.default_rng(seed)
    layers = [batchnorm(rng, "bn", "events", 57),
              dense(rng, "d1", "bn", 57, 32), leaky("a1", "d1", 32),
              dense(rng, "d2", "a1", 32, 16, accum=FixedType(22, 10)), leaky("a2", "d2", 16),
              dense(rng, "mean", "a2", 16, 3, result=ACT_T, accum=FixedType(20, 8)),
              dense(rng, "logvar", "a2", 16, 3, result=ACT_T, accum=FixedType(20, 8)),
              kl_layer("kl", "mean", "logvar", 3)]
    return Manifest("test_vae", [Tensor("events", (57,), IN_T)], layers, ["kl"])


def ae_manifest(seed=2) -> Manifest:
    """A small DNN autoencoder with the MSE head."""
    rng = np.random.default_rng(seed)
    bn_t = FixedType(20, 8, True, "RND_CONV", "SAT")
    layers = [batchnorm(rng, "bn", "events", 24, bn_t),
              dense(rng, "d1", "bn", 24, 8), leaky("a1", "d1", 8),
              dense(rng, "d2", "a1", 8, 24, accum=FixedType(22, 10)),
              Layer("mse", "mse", ["bn", "d2"], (1,), FixedType(31, 12, True, "RND_CONV", "SAT"),
                    {"diff": FixedType(22, 10, True, "RND_CONV", "SAT"),
                     "square": FixedType(31, 17, True, "RND_CONV", "SAT"),
                     "accum": FixedType(31, 17, True, "RND_CONV", "SAT")}, {"n_in": 24})]
    return Manifest("test_ae", [Tensor("events", (24,), IN_T)], layers, ["mse"])


def conv(rng, name, src, in_hw, n_chan, n_filt, filt, result=RES_T, accum=FixedType(28, 12), bias=True):
    (ih, iw), (fh, fw) = in_hw, filt
    oh, ow = ih - fh + 1, iw - fw + 1
    params = dict(in_height=ih, in_width=iw, n_chan=n_chan, n_filt=n_filt, filt_height=fh, filt_width=fw,
                  stride_height=1, stride_width=1, pad_top=0, pad_bottom=0, pad_left=0, pad_right=0,
                  out_height=oh, out_width=ow)
    b = codes(rng, (n_filt,), W_T) if bias else np.zeros(n_filt, dtype=np.int64)
    return Layer(name, "conv2d", [src], (oh, ow, n_filt), result, {"weight": W_T, "bias": W_T, "accum": accum},
                 params, {"weight": codes(rng, (fh, fw, n_chan, n_filt), W_T), "bias": b})


def padded_conv(rng, name, src, in_hw, n_chan, n_filt, filt, pads, result=RES_T, accum=FixedType(28, 12)):
    """A 'same'-style convolution keeping its padding inside the layer (taps on the padding read 0)."""
    layer = conv(rng, name, src, in_hw, n_chan, n_filt, filt, result, accum)
    top, bottom, left, right = pads
    p = layer.params
    p.update(pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right,
             out_height=p["in_height"] + top + bottom - p["filt_height"] + 1,
             out_width=p["in_width"] + left + right - p["filt_width"] + 1)
    return Layer(name, "conv2d", [src], (p["out_height"], p["out_width"], n_filt), result, layer.types, p,
                 layer.tensors)


def cnn_manifest(seed=3) -> Manifest:
    """(6,3,1) -> zeropad -> conv 3x3 -> relu -> avgpool 2x2 (padded right, uneven counts) -> upsampling -> conv 3x1
    -> flatten -> dense."""
    rng = np.random.default_rng(seed)
    pool_acc = FixedType(12, 6)
    relu_t = FixedType(8, 4, False, "RND_CONV", "SAT")
    layers = [
        Layer("pad", "zeropad2d", ["events"], (8, 5, 1), IN_T, {},
              dict(in_height=6, in_width=3, n_chan=1, pad_top=1, pad_bottom=1, pad_left=1, pad_right=1,
                   out_height=8, out_width=5)),
        conv(rng, "c1", "pad", (8, 5), 1, 4, (3, 3), bias=False),
        Layer("r1", "relu", ["c1"], (6, 3, 4), relu_t),
        Layer("pool", "avgpool2d", ["r1"], (3, 2, 4), relu_t, {"accum": pool_acc},
              dict(in_height=6, in_width=3, n_filt=4, pool_height=2, pool_width=2, stride_height=2, stride_width=2,
                   pad_top=0, pad_bottom=0, pad_left=0, pad_right=1, count_pad=0, out_height=3, out_width=2)),
        Layer("up", "upsampling2d", ["pool"], (6, 2, 4), relu_t, {},
              dict(in_height=3, in_width=2, n_chan=4, height_factor=2, width_factor=1, out_height=6, out_width=2)),
        conv(rng, "c2", "up", (6, 2), 4, 3, (3, 1)),
        Layer("flat", "reshape", ["c2"], (24,), RES_T),
        dense(rng, "out", "flat", 24, 3),
    ]
    return Manifest("test_cnn", [Tensor("events", (6, 3, 1), IN_T)], layers, ["out"])


def padded_cnn_manifest(seed=5) -> Manifest:
    """(6,4,2) -> conv 3x3 with padding inside the layer -> avgpool 3x3 stride 2 padded, counting the padding."""
    rng = np.random.default_rng(seed)
    relu_t = FixedType(10, 5, False, "RND", "SAT")
    layers = [
        padded_conv(rng, "c1", "events", (6, 4), 2, 5, (3, 3), (1, 1, 1, 1)),
        Layer("r1", "relu", ["c1"], (6, 4, 5), relu_t),
        Layer("pool", "avgpool2d", ["r1"], (3, 2, 5), relu_t, {"accum": FixedType(14, 8, True, "TRN", "SAT")},
              dict(in_height=6, in_width=4, n_filt=5, pool_height=3, pool_width=3, stride_height=2, stride_width=2,
                   pad_top=1, pad_bottom=0, pad_left=1, pad_right=0, count_pad=1, out_height=3, out_width=2)),
        Layer("flat", "reshape", ["pool"], (30,), relu_t),
        dense(rng, "out", "flat", 30, 4, accum=FixedType(16, 6, True, "TRN", "WRAP")),
    ]
    return Manifest("test_padded_cnn", [Tensor("events", (6, 4, 2), IN_T)], layers, ["out", "pool"])


OVERFLOWING_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM", "WRAP_SM")


def overflow_manifest(seed=4) -> Manifest:
    """Parallel dense layers whose narrow accumulators overflow, in every overflow mode: exact products (the WRAP
    sum is wrapped once) and products that need rounding into the accumulator (every cast kept, in order)."""
    rng = np.random.default_rng(seed)
    layers, outputs = [batchnorm(rng, "bn", "events", 16, FixedType(12, 6, True, "RND", "SAT"))], []
    for mode in OVERFLOWING_MODES:
        for frac, rounding in ((8 + 6, "TRN"), (7, "RND_CONV")):  # product frac is 6 + 7 = 13
            name = f"d_{mode}_{frac}"
            accum = FixedType(frac + 4, 4, True, rounding, mode)
            layers.append(dense(rng, name, "bn", 16, 6, result=FixedType(10, 3, True, "RND_ZERO", mode),
                                accum=accum))
            outputs.append(name)
    return Manifest("test_overflow", [Tensor("events", (16,), IN_T)], layers, outputs)


def wide_manifest(seed=7) -> Manifest:
    """Exact sums that leave int32 (added as a tree of int64 products), and products too wide for a 16-bit pair
    (plain multiplies), next to a 16-bit split."""
    rng = np.random.default_rng(seed)
    in_t = FixedType(17, 7, True, "RND", "SAT")
    layers = [dense(rng, "tree", "events", 6, 4, weight=FixedType(12, 2), accum=FixedType(44, 20)),
              Layer("one", "linear", ["events"], (1,), in_t),
              dense(rng, "plain", "one", 1, 3, weight=FixedType(15, 2), bias=FixedType(15, 2),
                    accum=FixedType(32, 8))]
    return Manifest("test_wide", [Tensor("events", (6,), in_t)], layers, ["tree", "plain"])


SWEEP_IN = FixedType(14, 7, True, "TRN", "WRAP")


def cast_sweep_manifest() -> Manifest:
    """Every (rounding, overflow, signedness) cast of a 14-bit input, dropping 1 or 7 fractional bits into a
    6-bit type (16-bit lanes), and dropping 26 bits from a 44-bit copy (64-bit lanes) and 9 from a 24-bit copy
    (32-bit lanes); with exhaustive_stimulus every input code is cast."""
    layers = [Layer("wide64", "linear", ["events"], (8,), FixedType(44, 14, True, "TRN", "SAT")),
              Layer("wide32", "linear", ["events"], (8,), FixedType(24, 8, True, "TRN", "SAT"))]
    sources = [("events", 7 - s) for s in (1, 7)] + [("wide64", 4), ("wide32", 7)]
    for rounding in ROUNDING_MODES:
        for overflow in OVERFLOW_MODES:
            for signed in (True, False):
                if overflow == "WRAP_SM" and not signed:
                    continue
                for src, frac in sources:
                    t = FixedType(6, 6 - frac, signed, rounding, overflow)
                    layers.append(Layer(f"c_{src}_{frac}_{rounding}_{overflow}_{int(signed)}", "linear", [src],
                                        (8,), t))
    layers.append(Layer("left_shift", "linear", ["events"], (8,), FixedType(12, 2, True, "RND", "SAT_SYM")))
    return Manifest("test_casts", [Tensor("events", (8,), SWEEP_IN)], layers, [layer.name for layer in layers])


def exhaustive_stimulus(manifest: Manifest) -> np.ndarray:
    """Every code of the (small) input type once, in (N, n_in) events."""
    t, size = manifest.input.type, manifest.input.size
    return np.arange(t.min_code, t.max_code + 1, dtype=np.int64).reshape(-1, size)


def two_input_manifest(seed=6) -> Manifest:
    """Two inputs, a dense on each, joined by an `add` (no fast-path generator: the reference kernel runs it)."""
    rng = np.random.default_rng(seed)
    b_t = FixedType(10, 4, True, "RND", "SAT")
    layers = [dense(rng, "da", "a", 12, 6), dense(rng, "db", "b", 5, 6),
              Layer("sum", "add", ["da", "db"], (6,), RES_T, {}, {"n_elem1": 6, "n_elem2": 6}),
              leaky("act", "sum", 6), dense(rng, "out", "act", 6, 2)]
    return Manifest("test_two_inputs", [Tensor("a", (12,), IN_T), Tensor("b", (5,), b_t)], layers, ["out", "db"])


# ---- inputs ---------------------------------------------------------------------------------------------
def input_codes(t: FixedType, size: int, n: int, rng) -> np.ndarray:
    """Codes of one input: small, full-range (saturating downstream), extreme codes, zeros, and exact rounding ties
    (and their neighbours) for every number of dropped bits from 1 to 12."""
    x = rng.integers(t.min_code, t.max_code + 1, size=(n, size), dtype=np.int64)
    x[: n // 4] >>= min(8, t.width - 1)
    x[n // 4: n // 2] >>= min(3, t.width - 1)
    shifts = rng.integers(1, 13, size=(100, size))
    ties = ((rng.integers(-64, 64, size=(100, size)) << shifts) + (1 << (shifts - 1))
            + rng.integers(-1, 2, size=(100, size)))
    special = np.concatenate([
        np.full((50, size), t.max_code), np.full((50, size), t.min_code), np.zeros((50, size), dtype=np.int64),
        np.where(rng.random((50, size)) < 0.5, t.min_code, t.max_code), np.clip(ties, t.min_code, t.max_code),
    ])
    k = min(len(special), n // 2)
    x[n - k:] = special[rng.permutation(len(special))[:k]]
    return x


def stimulus(manifest: Manifest, n=2000, seed=0):
    """Input codes of every input (an array for one input, a dict by name for several)."""
    rng = np.random.default_rng(seed)
    codes = {t.name: input_codes(t.type, t.size, n, rng) for t in manifest.inputs}
    return next(iter(codes.values())) if len(codes) == 1 else codes


MANIFESTS = {"vae": vae_manifest, "ae": ae_manifest, "cnn": cnn_manifest, "padded_cnn": padded_cnn_manifest,
             "overflow": overflow_manifest, "casts": cast_sweep_manifest, "two_inputs": two_input_manifest,
             "wide": wide_manifest}


@pytest.fixture(scope="module", params=sorted(MANIFESTS))
def case(request):
    manifest = MANIFESTS[request.param]()
    x = exhaustive_stimulus(manifest) if request.param == "casts" else stimulus(manifest)
    return manifest, FastEmulator(manifest), Emulator(manifest), x


def assert_same(fast_prediction, reference_prediction):
    for name, expected in reference_prediction.codes.items():
        got = fast_prediction.codes[name]
        mismatched = np.flatnonzero((got != expected).any(axis=1))
        assert mismatched.size == 0, (f"{name}: {mismatched.size} events differ, first {mismatched[:5].tolist()}: "
                                      f"fast {got[mismatched[:3]].tolist()} "
                                      f"reference {expected[mismatched[:3]].tolist()}")


def as_int32(codes):
    return {k: v.astype(np.int32) for k, v in codes.items()} if isinstance(codes, dict) else codes.astype(np.int32)


# ---- equality with the reference ------------------------------------------------------------------------
def test_fast_equals_reference(case):
    manifest, fast, reference, x = case
    assert_same(fast.predict_codes(x), reference.predict_codes(x))


def test_int32_input_codes_give_the_same_outputs(case):
    manifest, fast, reference, x = case
    assert_same(fast.predict_codes(as_int32(x)), reference.predict_codes(x))


def test_proven_ranges_hold_on_the_reference_trace(case):
    """Every layer output of the reference emulator lies in the range the interval analysis proved for it."""
    manifest, fast, reference, x = case
    trace = reference.trace_codes(x)
    for name in (layer.name for layer in manifest.layers if layer.name not in fast.reference_layers):
        lo, hi = (np.array([getattr(r, end) for r in fast.ranges[name]]) for end in ("lo", "hi"))
        assert ((trace[name] >= lo) & (trace[name] <= hi)).all(), f"{name}: a traced code lies outside its range"


@pytest.mark.parametrize("name", ["cnn", "padded_cnn"])
def test_convolutions_looping_over_pixels(name, monkeypatch):
    """With no unrolling budget every convolution loops over its pixels, reading frame rows (padding: a zero row)."""
    monkeypatch.setattr(codegen, "UNROLL_MACS", 0)
    manifest = MANIFESTS[name]()
    assert "(conv2d): frame rows" in " ".join(generate(manifest).notes)
    x = stimulus(manifest, n=700, seed=3)
    assert_same(FastEmulator(manifest).predict_codes(x), Emulator(manifest).predict_codes(x))


@pytest.mark.parametrize("name", ["vae", "ae", "cnn", "padded_cnn"])
def test_staged_multiply_accumulate(name, monkeypatch):
    """Every exact multiply-accumulate staged: pair vectors through the frame, outputs in groups of 5 per part."""
    monkeypatch.setattr(codegen, "STAGE_STEPS", 0)
    monkeypatch.setattr(codegen, "ACCUMULATORS", 5)
    manifest = MANIFESTS[name]()
    x = stimulus(manifest, n=700, seed=4)
    assert_same(FastEmulator(manifest).predict_codes(x), Emulator(manifest).predict_codes(x))


def test_every_accumulation_path_is_generated():
    """The test manifests reach every way a sum is generated (casts.plan_accumulation, casts.dot_steps)."""
    seen = set()
    for name in ("vae", "cnn", "padded_cnn", "overflow", "wide"):
        manifest = MANIFESTS[name]()
        for layer in (layer for layer in manifest.layers if layer.op == "dense"):
            x = [Vec(f"%x{i}", 32, Range.of(manifest.producer_type(layer.inputs[0])))
                 for i in range(layer.params["n_in"])]
            w = layer.tensors["weight"].reshape(len(x), -1)
            for j in range(w.shape[1]):
                plan = plan_accumulation([(i, x[i], int(w[i, j])) for i in range(len(x))], 0,
                                         manifest.producer_type(layer.inputs[0]).fractional, layer)
                seen |= {plan.kind} | {step.kind for _, step in plan.steps}
    assert seen == {"dots", "tree", "wrap", "sequential", "pair", "split", "plain"}


@given(st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_layer_chains(data):
    """Chains of dense, batchnorm, (leaky) ReLU and linear layers with random types in every mode."""
    check_random_chain(data)


@pytest.mark.regression
@given(st.data())
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_layer_chains_at_length(data):
    check_random_chain(data)


def check_random_chain(data):
    manifest = data.draw(random_chains())
    try:
        reference = Emulator(manifest)
    except UnsupportedType:
        assume(False)  # beyond the reference emulator's exact int64 path
    x = stimulus(manifest, n=300, seed=data.draw(st.integers(0, 1000)))
    assert_same(FastEmulator(manifest).predict_codes(x), reference.predict_codes(x))


@st.composite
def any_types(draw, max_width=24):
    width = draw(st.integers(2, max_width))
    signed = draw(st.booleans())
    overflow = draw(st.sampled_from([m for m in OVERFLOW_MODES if signed or m != "WRAP_SM"]))
    return FixedType(width, draw(st.integers(-2, width + 2)), signed, draw(st.sampled_from(ROUNDING_MODES)), overflow)


@st.composite
def random_chains(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 20))
    layers, src = [], "events"
    for k in range(draw(st.integers(1, 4))):
        op, name = draw(st.sampled_from(["dense", "batchnorm", "relu", "leaky_relu", "linear"])), f"l{k}"
        result = draw(any_types())
        if op == "dense":
            n_out = draw(st.integers(1, 12))
            layer = dense(rng, name, src, n, n_out, result, accum=draw(any_types(40)), weight=draw(any_types(8)),
                          bias=draw(any_types(10)))
            n = n_out
        elif op == "batchnorm":
            s_t, b_t = draw(any_types(12)), draw(any_types(12))
            layer = Layer(name, op, [src], (n,), result, {"scale": s_t, "bias": b_t}, {"n_filt": -1},
                          {"scale": codes(rng, (n,), s_t, 0.1), "bias": codes(rng, (n,), b_t, 0.3)})
        elif op == "leaky_relu":
            layer = Layer(name, op, [src], (n,), result, {"param": FixedType(18, 0, True, "RND_CONV", "SAT")},
                          {"alpha": int(rng.integers(-(1 << 17), 1 << 17))})
        else:
            layer = Layer(name, op, [src], (n,), result)
        layers.append(layer)
        src = name
    n_in = layers[0].params.get("n_in", layers[0].size)
    return Manifest("random_chain", [Tensor("events", (n_in,), draw(any_types(20)))], layers, [src])


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 1000])
def test_any_event_count_including_partial_blocks(n):
    manifest = vae_manifest()
    x = stimulus(manifest, n=max(n, 200), seed=n)
    x = x[len(x) - n:]
    assert_same(FastEmulator(manifest).predict_codes(x), Emulator(manifest).predict_codes(x))


def test_float_predict_matches_reference():
    manifest = ae_manifest()
    x = np.random.default_rng(7).normal(0, 300, size=(500, 24))
    assert_same(FastEmulator(manifest).predict(x), Emulator(manifest).predict(x))


def test_two_threads_give_the_same_outputs():
    import numba

    manifest = vae_manifest()
    fast, reference = FastEmulator(manifest), Emulator(manifest)
    x = stimulus(manifest, n=50000, seed=9)
    previous = numba.get_num_threads()
    try:
        for threads in {1, numba.config.NUMBA_NUM_THREADS}:
            numba.set_num_threads(threads)
            assert_same(fast.predict_codes(x), reference.predict_codes(x))
    finally:
        numba.set_num_threads(previous)


def test_emulator_fast_method_returns_the_fast_emulator():
    manifest = ae_manifest()
    fast = Emulator(manifest).fast()
    assert isinstance(fast, FastEmulator)
    x = stimulus(manifest, n=100)
    assert_same(fast.predict_codes(x), Emulator(manifest).predict_codes(x))


# ---- layers left to the reference kernels ----------------------------------------------------------------
def test_an_op_without_a_generator_runs_on_its_reference_kernel():
    manifest = two_input_manifest()
    fast = FastEmulator(manifest)
    assert list(fast.reference_layers) == ["sum"]
    assert "op 'add' has no fast-emulator generator" in fast.reference_layers["sum"]
    assert [type(s).__name__ for s in fast.stages] == ["Segment", "ReferenceStage", "Segment"]


def test_a_layer_its_generator_refuses_runs_on_its_reference_kernel(monkeypatch):
    def refuse(g, layer, inputs):
        raise UnsupportedType("refused for the test")

    monkeypatch.setitem(codegen.GENERATORS, "leaky_relu", refuse)
    manifest = vae_manifest()
    fast = FastEmulator(manifest)
    assert sorted(fast.reference_layers) == ["a1", "a2"]
    assert "layer 'a1' (leaky_relu): refused for the test" in fast.reference_layers["a1"]
    x = stimulus(manifest, n=500)
    assert_same(fast.predict_codes(x), Emulator(manifest).predict_codes(x))
    assert_same(fast.predict_codes(x.astype(np.int32)), Emulator(manifest).predict_codes(x))


def test_out_of_range_codes_into_a_reference_layer_are_refused(monkeypatch):
    monkeypatch.delitem(codegen.GENERATORS, "batchnorm")
    manifest = ae_manifest()
    x = stimulus(manifest, n=300)
    x[77, 2] = IN_T.min_code - 1
    with pytest.raises(InputError, match=r"events \[77\]"):
        FastEmulator(manifest).predict_codes(x)


# ---- the proofs -----------------------------------------------------------------------------------------
def test_wide_accumulators_are_summed_without_casts():
    """d2 sums 32 products of 8-bit codes into a 22-bit accumulator: no partial sum can overflow."""
    manifest = vae_manifest()
    seen, kept = generate(manifest).casts["d2"]
    non_zero = np.count_nonzero(manifest.layer("d2").tensors["weight"])
    assert seen == 16 + 2 * non_zero  # per non-zero weight a product cast and an accumulator cast; 16 result casts
    assert kept == 16  # only the result casts remain


def test_overflowing_accumulators_keep_their_casts():
    casts = generate(overflow_manifest()).casts
    for name in (n for n in casts if n.startswith("d_")):
        seen, kept = casts[name]
        assert kept > 6, name  # more than the 6 result casts: the accumulators' overflow handling stays


@pytest.mark.parametrize("t", [FixedType(8, 3, True, r, o) for r in ROUNDING_MODES for o in OVERFLOW_MODES])
def test_cast_proof_is_sound_and_tight(t):
    """prove_cast's result range holds every exact cast of the range, is reached at both ends when no overflow is
    possible, and `overflows` is False only when no code overflows."""
    from emulator.arith import cast_raw, type_spec

    rng = np.random.default_rng(11)
    for _ in range(40):
        lo = int(rng.integers(-4000, 4000))
        hi = lo + int(rng.integers(0, 3000))
        frac = int(rng.integers(0, 8))
        proof = prove_cast(Range(lo, hi), frac, t)
        values = [int(cast_raw(v, frac, *type_spec(t))) for v in range(lo, hi + 1)]
        assert proof.result.lo <= min(values) and max(values) <= proof.result.hi
        if not proof.overflows:
            shifted = [v >> proof.shift if proof.shift > 0 else v << -proof.shift for v in range(lo, hi + 1)]
            assert all(t.min_code <= y <= t.max_code for y in values)
            assert (min(values), max(values)) == (proof.result.lo, proof.result.hi)
            if proof.shift <= 0:
                assert values == shifted


def test_range_arithmetic():
    a, b = Range(-3, 5), Range(2, 4)
    assert (a + b, a - b, a * b) == (Range(-1, 9), Range(-7, 3), Range(-12, 20))
    assert Range(-3, 2).square() == Range(0, 9) and Range(2, 3).square() == Range(4, 9)
    assert cast_range(Range(0, 1000), 0, FixedType(8, 8, True, "TRN", "SAT")) == Range(0, 127)
    with pytest.raises(ValueError, match="empty range"):
        Range(2, 1)


# ---- bad input, the machine-code cache ------------------------------------------------------------------
def test_out_of_range_codes_are_refused_with_their_events():
    manifest = ae_manifest()
    x = stimulus(manifest, n=300)
    x[123, 4] = IN_T.max_code + 1
    with pytest.raises(InputError, match=r"events \[123\]"):
        FastEmulator(manifest).predict_codes(x)
    with pytest.raises(InputError, match=r"events \[123\]"):
        FastEmulator(manifest).predict_codes(x.astype(np.int32))


def test_wrong_dtype_and_shape_are_refused():
    fast = FastEmulator(ae_manifest())
    with pytest.raises(InputError, match="dtype float64"):
        fast.predict_codes(np.zeros((3, 24)))
    with pytest.raises(InputError, match="shape"):
        fast.predict_codes(np.zeros((3, 23), dtype=np.int64))


def test_machine_code_is_cached_on_disk(tmp_path):
    ir = generate(ae_manifest()).ir
    first, second = Kernel(ir, tmp_path), Kernel(ir, tmp_path)
    assert (first.compiled, second.compiled) == (True, False)
    assert len(list(tmp_path.glob("*.o"))) == 1


# ---- the zoo --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_zoo_model(name):
    path = ZOO_DIR / name / "manifest.json"
    assert path.exists(), f"zoo model {name} is missing: python -m models.zoo build"
    manifest = Manifest.load(path)
    fast = FastEmulator(manifest)
    assert fast.reference_layers == {}
    x = stimulus(manifest, n=3000, seed=12)
    expected = Emulator(manifest).predict_codes(x)
    assert_same(fast.predict_codes(x), expected)
    assert_same(fast.predict_codes(x.astype(np.int32)), expected)


@pytest.mark.regression
@pytest.mark.parametrize("name", NAMES)
def test_zoo_model_on_a_million_events(name):
    """Generator events and limit/tie stimulus, int32 and int64 codes, one thread and all."""
    import numba
    from models.data.generator import generate as generate_events

    path = ZOO_DIR / name / "manifest.json"
    assert path.exists(), f"zoo model {name} is missing: python -m models.zoo build"
    manifest = Manifest.load(path)
    fast, reference = FastEmulator(manifest), Emulator(manifest)
    events = reference.quantize_inputs(generate_events("background", 1_000_000, 5).reshape(1_000_000, -1))
    x = np.concatenate([events, stimulus(manifest, n=20000, seed=13)])
    expected = reference.predict_codes(x)
    previous = numba.get_num_threads()
    try:
        for threads in {1, numba.config.NUMBA_NUM_THREADS}:
            numba.set_num_threads(threads)
            assert_same(fast.predict_codes(x), expected)
            assert_same(fast.predict_codes(x.astype(np.int32)), expected)
    finally:
        numba.set_num_threads(previous)
