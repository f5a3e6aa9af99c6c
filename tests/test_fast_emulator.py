"""The specialised fast emulator (emulator.fast) against the reference emulator: equal codes on every path.

Test manifests are built directly (random 8-bit weights, half of them zero); inputs mix ordinary codes, codes that
saturate every layer, the extreme codes and zeros. Some manifests have accumulators that do overflow, in every
overflow mode, so the interval proof must keep those casts; a sweep of casts covers every rounding and overflow
mode in int32 and int64 lanes. The generated kernels are cached under build/fast-emulator/, so reruns are quick.
"""

from __future__ import annotations

import numpy as np
import pytest

from emulator import Emulator, FixedType, InputError, Manifest
from emulator.arith import quantize
from emulator.fast import FastEmulator, Range, generate, prove_cast
from emulator.fast.intervals import cast_range
from emulator.fixed_type import OVERFLOW_MODES, ROUNDING_MODES
from emulator.manifest import Layer, Tensor
from models.zoo import NAMES, ZOO_DIR

IN_T = FixedType(18, 12, True, "RND_CONV", "SAT")
W_T = FixedType(8, 1)
RES_T = FixedType(16, 6, True, "RND_CONV", "SAT")
ACT_T = FixedType(8, 4, True, "RND_CONV", "SAT")


# ---- manifest builders ------------------------------------------------------------------------------------
# The generated per-model kernels take minutes of LLVM compile time from a cold numba cache (about 7 minutes for the
# first ten tests here on a loaded 2-core machine), which does not fit CI's default run: `make regression` runs them.
pytestmark = pytest.mark.regression

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
                    {"diff": FixedType(22, 10, True, "RND_CONV", "SAT"), "square": FixedType(31, 17, True, "RND_CONV", "SAT"),
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


def cast_sweep_manifest() -> Manifest:
    """One linear layer per (rounding, overflow) mode, from a wide input, plus casts needing int64 lanes."""
    wide = FixedType(24, 12, True, "RND_CONV", "SAT")
    layers = []
    for rounding in ROUNDING_MODES:
        for overflow in OVERFLOW_MODES:
            for signed in (True, False):
                if overflow == "WRAP_SM" and not signed:
                    continue
                t = FixedType(9, 5, signed, rounding, overflow)
                layers.append(Layer(f"c_{rounding}_{overflow}_{int(signed)}", "linear", ["events"], (8,), t))
    layers.append(Layer("wide64", "linear", ["events"], (8,), FixedType(48, 20, True, "RND", "SAT")))
    layers.append(Layer("narrow_from64", "linear", ["wide64"], (8,), FixedType(7, 3, True, "RND_INF", "WRAP")))
    return Manifest("test_casts", [Tensor("events", (8,), wide)], layers, [layer.name for layer in layers])


# ---- inputs ---------------------------------------------------------------------------------------------
def stimulus(manifest: Manifest, n=2000, seed=0) -> np.ndarray:
    """Input codes: small, full-range (saturating downstream), extreme codes, zeros, and rounding ties."""
    t, size = manifest.input.type, manifest.input.size
    rng = np.random.default_rng(seed)
    x = rng.integers(t.min_code, t.max_code + 1, size=(n, size), dtype=np.int64)
    x[: n // 4] >>= 8
    x[n // 4: n // 2] >>= 3
    special = np.concatenate([
        np.full((50, size), t.max_code), np.full((50, size), t.min_code), np.zeros((50, size), dtype=np.int64),
        np.where(rng.random((50, size)) < 0.5, t.min_code, t.max_code),
        np.clip((rng.integers(-64, 64, size=(100, size)) << 6) | (1 << 5), t.min_code, t.max_code),  # ties
    ])
    k = min(len(special), n // 2)
    x[n - k:] = special[:k]
    return x


MANIFESTS = {"vae": vae_manifest, "ae": ae_manifest, "cnn": cnn_manifest, "overflow": overflow_manifest,
             "casts": cast_sweep_manifest}


@pytest.fixture(scope="module", params=sorted(MANIFESTS))
def case(request):
    manifest = MANIFESTS[request.param]()
    return manifest, FastEmulator(manifest), Emulator(manifest)


def assert_same(fast_prediction, reference_prediction):
    for name, expected in reference_prediction.codes.items():
        got = fast_prediction.codes[name]
        mismatched = np.flatnonzero((got != expected).any(axis=1))
        assert mismatched.size == 0, (f"{name}: {mismatched.size} events differ, first {mismatched[:5].tolist()}: "
                                      f"fast {got[mismatched[:3]].tolist()} reference {expected[mismatched[:3]].tolist()}")


# ---- equality with the reference ------------------------------------------------------------------------
def test_fast_equals_reference(case):
    manifest, fast, reference = case
    x = stimulus(manifest)
    assert_same(fast.predict_codes(x), reference.predict_codes(x))


def test_int32_input_codes_give_the_same_outputs(case):
    manifest, fast, reference = case
    x = stimulus(manifest, n=300, seed=5)
    if manifest.input.type.width > 32:
        pytest.skip("input type wider than int32")
    assert_same(fast.predict_codes(x.astype(np.int32)), reference.predict_codes(x))


@pytest.mark.parametrize("n", [1, 17, 1000])
def test_any_event_count_including_partial_blocks(n):
    manifest = vae_manifest()
    fast, reference = FastEmulator(manifest), Emulator(manifest)
    x = stimulus(manifest, n=max(n, 200), seed=n)[-n:]
    assert_same(fast.predict_codes(x), reference.predict_codes(x))


def test_float_predict_matches_reference():
    manifest = ae_manifest()
    x = np.random.default_rng(7).normal(0, 300, size=(500, 24))
    assert_same(FastEmulator(manifest).predict(x), Emulator(manifest).predict(x))


def test_two_threads_give_the_same_outputs():
    numba = pytest.importorskip("numba")
    manifest = vae_manifest()
    fast, reference = FastEmulator(manifest), Emulator(manifest)
    x = stimulus(manifest, n=5000, seed=9)
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


# ---- the proofs -----------------------------------------------------------------------------------------
def test_proven_ranges_hold_on_the_reference_trace(case):
    """Every layer output of the reference emulator lies in the range the interval analysis proved for it."""
    manifest, fast, reference = case
    trace = reference.trace_codes(stimulus(manifest))
    for name, ranges in fast.generated.ranges.items():
        if name not in trace:
            continue
        lo = np.array([r.lo for r in ranges])
        hi = np.array([r.hi for r in ranges])
        values = trace[name]
        assert ((values >= lo) & (values <= hi)).all(), f"{name}: a traced code lies outside its proven range"


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


# ---- bad input ------------------------------------------------------------------------------------------
def test_out_of_range_codes_are_refused_with_their_events():
    manifest = ae_manifest()
    x = stimulus(manifest, n=300)
    x[123, 4] = IN_T.max_code + 1
    with pytest.raises(InputError, match=r"events \[123\]"):
        FastEmulator(manifest).predict_codes(x)


def test_wrong_dtype_and_shape_are_refused():
    fast = FastEmulator(ae_manifest())
    with pytest.raises(InputError, match="dtype float64"):
        fast.predict_codes(np.zeros((3, 24)))
    with pytest.raises(InputError, match="shape"):
        fast.predict_codes(np.zeros((3, 23), dtype=np.int64))


# ---- the zoo --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_zoo_model(name):
    path = ZOO_DIR / name / "manifest.json"
    if not path.exists():
        pytest.skip(f"zoo model {name} is not built")
    manifest = Manifest.load(path)
    x = stimulus(manifest, n=3000, seed=12)
    assert_same(FastEmulator(manifest).predict_codes(x), Emulator(manifest).predict_codes(x))
