"""emulator.arith against ap_fixed compiled with g++ (tests/ap_reference.py): codes compared with ==, for every
rounding x overflow x signedness combination on many (width, integer) shapes."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from ap_reference import ApReference
from emulator.arith import cast, quantize, requantize, to_float, type_spec
from emulator.fixed_type import OVERFLOW_MODES, ROUNDING_MODES, FixedType, UnsupportedType

MODES = [(signed, r, o) for signed in (True, False) for r in ROUNDING_MODES for o in OVERFLOW_MODES
         if signed or o != "WRAP_SM"]
MODE_IDS = [f"{'s' if s else 'u'}-{r}-{o}" for s, r, o in MODES]
# (width, integer): widths 1..2, integer < 0 and > width, the common widths, and the widest supported.
SHAPES = [(1, 1), (1, -2), (2, 5), (8, -2), (18, 8), (32, 16), (48, 10), (60, 30), (62, 2)]
# ap_fixed(double) reads a subnormal double with a hidden 1 bit; only types this fine can see it.
SUBNORMAL_TYPES = [FixedType(8, -1020, s, r, "SAT") for s in (True, False) for r in ("TRN", "RND_CONV")]
TYPES = [FixedType(w, i, s, r, o) for w, i in SHAPES for s, r, o in MODES] + SUBNORMAL_TYPES
FLOAT_TYPES = [FixedType(w, i, s) for w, i in SHAPES for s in (True, False)]  # to_double ignores the modes
# requantize: source (width, integer, signed) -> destination shape, taken in every mode. The frac may drop by at
# most the source width: beyond that ap_fixed's C simulation reads a bit above the MSB and aborts (assert).
PAIR_SHAPES = [
    ((18, 8, True), (18, 8)),     # same shape: only SAT_SYM can change a code
    ((18, 8, True), (8, -2)),     # same frac, much narrower: overflow
    ((32, 16, True), (18, 8)),    # frac down by 6 and fewer integer bits
    ((8, 4, False), (18, 8)),     # narrow unsigned -> wide, frac up
    ((60, 30, True), (2, 5)),     # frac down by 33
    ((62, 2, False), (1, -2)),    # 62-bit unsigned, frac down by 57
    ((20, -3, True), (48, 10)),   # frac up by 15
    ((48, 48, True), (60, 30)),   # frac up by 30: shifted codes exceed int64
    ((62, 61, True), (62, 2)),    # frac up by 59: shifted codes exceed int64
    ((2, 2, False), (1, 1)),      # unsigned 2-bit -> signed or unsigned 1-bit
    ((1, 1, True), (2, 3)),      # 1-bit source, frac down by 1
]
# cast_raw takes any int64 value: ap_fixed<64,64> sources reach its shift-by-63, shift-by-64 and overflowing paths.
INT64_PAIR_SHAPES = [((64, 64, True), (8, 71)), ((64, 64, True), (8, 72)), ((64, 64, True), (62, 2))]
PAIRS = [(FixedType(*src), FixedType(*dst, s, r, o)) for src, dst in PAIR_SHAPES + INT64_PAIR_SHAPES
         for s, r, o in MODES]
FAIL_SHAPES = {(18, 8), (8, -2)}  # shapes of the "can the harness fail" tests


# ---- test values ------------------------------------------------------------------------------
def doubles_for(t: FixedType, rng: np.random.Generator) -> np.ndarray:
    """A few thousand doubles that probe t: ties and near-ties on its grid and finer, codes +- 1 ulp,
    signed zeros, subnormals, huge values, its min and max and just beyond, random values."""
    f = t.fractional
    lo, hi = float(t.min_code), float(t.max_code)
    span = hi - lo + 1
    k = np.floor(np.concatenate([[lo, hi, lo - 1, hi + 1, 0, -1, 1, -2],
                                 rng.uniform(lo - span, hi + span, 300),
                                 rng.uniform(lo, hi + 1, 150) if span > 2 else [],
                                 rng.integers(-64, 64, 50)]))
    exact = np.ldexp(k, -f)
    ties = np.concatenate([np.ldexp(2 * k + 1, -f - 1 - j) for j in (0, 1, 2)])
    near = np.concatenate([np.nextafter(v, s) for v in (exact, ties) for s in (-np.inf, np.inf)]
                          + [exact + np.ldexp(1.0, -f - 30), exact - np.ldexp(1.0, -f - 30)])
    special = np.array([0.0, 5e-324, 2.2250738585072014e-308, 2.2250738585072009e-308, 1e-300, 2.0 ** -1000,
                        1.0, 0.5, 0.25, 1e30, 2.0 ** 62 + 2.0 ** 10, 2.0 ** 63, 1e300, 1.7976931348623157e308,
                        t.max, t.min, t.max + t.lsb / 2, t.min - t.lsb / 2, t.max + t.lsb, t.min - t.lsb,
                        2.0 ** t.integer, 2.0 ** (t.integer - 1), 2.0 ** (t.integer - 1) + t.lsb / 2])
    subnormals = np.ldexp(rng.integers(1, 1 << 52, 20).astype(np.float64), -1074)
    magnitudes = np.ldexp(1.0 + rng.random(300), rng.integers(max(-1070, -f - 70), min(1020, t.integer + 70), 300))
    uniform = rng.uniform(min(-hi, lo) * 2 - 1, hi * 2 + 1, 300) * t.lsb
    values = np.concatenate([exact, ties, near, special, -special, subnormals, -subnormals, magnitudes,
                             -magnitudes, uniform])
    return values[np.isfinite(values)]


def codes_for(src: FixedType, dst: FixedType, rng: np.random.Generator) -> np.ndarray:
    """Codes of src: its extremes, random codes, codes at and around dst's ties and at dst's limits."""
    lo, hi = src.min_code, src.max_code
    shift = src.fractional - dst.fractional
    picks = [lo, lo + 1, hi, hi - 1, 0, 1, -1, 2, -2]
    randoms = rng.integers(lo, hi + 1, 600, dtype=np.int64)
    small = rng.integers(0, 1 << min(src.width, 62), 300) >> rng.integers(0, src.width, 300)
    picks += randoms.tolist() + small.tolist() + (-small).tolist()
    if shift > 0:
        half = 1 << (shift - 1)
        picks += [(c >> shift << shift) + half + d for c in randoms[:300].tolist() for d in (-1, 0, 1)]
        picks += [c >> shift << shift for c in randoms[300:].tolist()]
    for limit in (dst.min_code, dst.max_code, -dst.max_code):
        edge = limit << shift if shift >= 0 else limit >> -shift
        picks += [edge + d for d in range(-3, 4)]
    picks = [c for c in picks if lo <= c <= hi]
    return np.array(picks, dtype=np.int64)


def codes_of(t: FixedType, rng: np.random.Generator) -> np.ndarray:
    """Random codes of t and its extremes, spread over all magnitudes."""
    spread = rng.integers(0, 1 << min(t.width, 62), 500) >> rng.integers(0, t.width, 500)
    picks = np.concatenate([[t.min_code, t.max_code, 0, 1], rng.integers(t.min_code, t.max_code + 1, 500),
                            spread, -spread])
    return picks[(picks >= t.min_code) & (picks <= t.max_code)]


# ---- the reference, run once ------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference():
    """Inputs and ap_fixed outputs of every job, keyed ('Q'|'F', type) or ('R', (src, dst))."""
    rng = np.random.default_rng(20240611)
    jobs, keys = [], []
    for index, t in enumerate(TYPES):
        jobs.append(("Q", index, doubles_for(t, rng)))
        keys.append(("Q", t))
    for index, t in enumerate(FLOAT_TYPES):
        jobs.append(("F", index, codes_of(t, rng)))
        keys.append(("F", t))
    for index, (src, dst) in enumerate(PAIRS):
        jobs.append(("R", index, codes_for(src, dst, rng)))
        keys.append(("R", (src, dst)))
    outputs = ApReference(TYPES, PAIRS, FLOAT_TYPES).run(jobs)
    return {key: (job[2], out) for key, job, out in zip(keys, jobs, outputs)}


def assert_same_codes(what: str, inputs: np.ndarray, expected: np.ndarray, got: np.ndarray):
    bad = np.flatnonzero(expected != got)
    if bad.size:
        rows = "\n".join(f"  input {inputs[i]!r} ({float(inputs[i]).hex() if inputs.dtype.kind == 'f' else ''}):"
                         f" ap_fixed {expected[i]}, emulator {got[i]}" for i in bad[:8])
        pytest.fail(f"{what}: {bad.size} of {inputs.size} codes differ from ap_fixed, e.g.\n{rows}")


# ---- differential tests ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_quantize_matches_ap_fixed(reference, mode):
    signed, rounding, overflow = mode
    for width, integer in SHAPES:
        t = FixedType(width, integer, signed, rounding, overflow)
        x, expected = reference["Q", t]
        assert_same_codes(f"quantize to {t}", x, expected, quantize(x, t))


def test_quantize_reads_subnormals_as_ap_fixed_does(reference):
    for t in SUBNORMAL_TYPES:
        x, expected = reference["Q", t]
        assert_same_codes(f"quantize to {t}", x, expected, quantize(x, t))
    # The quirk itself, in g++: -2**-1074 reads as -(2**52 + 1) * 2**-1075, about -2**-1023, not as a tiny value.
    t = FixedType(8, -1020, True, "TRN", "SAT")
    x, expected = reference["Q", t]
    smallest = np.flatnonzero(x == -5e-324)
    assert smallest.size and (expected[smallest] == -33).all()


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_requantize_matches_ap_fixed(reference, mode):
    signed, rounding, overflow = mode
    for (src_shape, dst_shape) in PAIR_SHAPES:
        src, dst = FixedType(*src_shape), FixedType(*dst_shape, signed, rounding, overflow)
        codes, expected = reference["R", (src, dst)]
        assert_same_codes(f"{dst} = {src}", codes, expected, requantize(codes, src, dst))


def test_to_float_matches_to_double(reference):
    for t in FLOAT_TYPES:
        codes, expected = reference["F", t]
        for mode in (t, t.with_(rounding="RND_CONV", overflow="SAT")):
            assert_same_codes(f"{mode}.to_double()", codes, expected.view(np.int64),
                              to_float(codes, mode).view(np.int64))


def test_sat_sym_maps_the_most_negative_code_to_minus_max(reference):
    """ap_fixed's observed SAT_SYM quirk, confirmed by g++: the in-range value t.min becomes -t.max."""
    checked = 0
    for t in TYPES:
        if t.overflow == "SAT_SYM" and t.signed and t.width > 1 and t not in SUBNORMAL_TYPES:
            x, expected = reference["Q", t]
            at_min = np.flatnonzero(x == t.min)
            assert at_min.size and (expected[at_min] == -t.max_code).all(), str(t)
            assert (quantize(x[at_min], t) == -t.max_code).all(), str(t)
            checked += 1
    assert checked == len(SHAPES) * len(ROUNDING_MODES) - 2 * len(ROUNDING_MODES)  # all but the width-1 shapes


@numba.njit  # not cached: numba's cache would not notice a change in emulator/arith.py
def _cast_all(codes, src_frac, spec):
    out = np.empty_like(codes)
    for i in range(codes.size):
        out[i] = cast(codes[i], src_frac, spec)
    return out


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_cast_of_any_int64_value_matches_ap_fixed(reference, mode):
    """cast (the numba core, called from a kernel) on full-range int64 values, wider than requantize accepts."""
    for (src_shape, dst_shape) in INT64_PAIR_SHAPES:
        src, dst = FixedType(*src_shape), FixedType(*dst_shape, *mode)
        codes, expected = reference["R", (src, dst)]
        assert_same_codes(f"{dst} = {src} via cast", codes, expected, _cast_all(codes, src.fractional, type_spec(dst)))


# ---- the harness can fail ----------------------------------------------------------------------
def _differs(reference, key, convert) -> bool:
    inputs, expected = reference[key]
    return bool((convert(inputs) != expected).any())


@pytest.mark.parametrize("shape", sorted(FAIL_SHAPES))
def test_a_wrong_rounding_mode_is_caught(reference, shape):
    """For every pair of distinct rounding modes, emulating the wrong one disagrees with ap_fixed somewhere."""
    for signed in (True, False):
        for right in ROUNDING_MODES:
            t = FixedType(*shape, signed, right, "WRAP")
            for wrong in ROUNDING_MODES:
                if wrong != right and not (not signed and {right, wrong} == {"TRN", "TRN_ZERO"}):
                    assert _differs(reference, ("Q", t), lambda x: quantize(x, t.with_(rounding=wrong))), \
                        f"{t} vs {wrong}"


@pytest.mark.parametrize("shape", sorted(FAIL_SHAPES))
def test_a_wrong_overflow_mode_is_caught(reference, shape):
    """For every pair of distinct overflow modes, emulating the wrong one disagrees with ap_fixed somewhere."""
    for signed in (True, False):
        modes = [o for o in OVERFLOW_MODES if signed or o != "WRAP_SM"]
        for right in modes:
            t = FixedType(*shape, signed, "RND", right)
            for wrong in modes:
                if wrong != right and not (not signed and {right, wrong} == {"SAT", "SAT_SYM"}):
                    assert _differs(reference, ("Q", t), lambda x: quantize(x, t.with_(overflow=wrong))), \
                        f"{t} vs {wrong}"


def test_a_wrong_requantize_rounding_is_caught(reference):
    src = FixedType(32, 16)
    for right in ROUNDING_MODES:
        dst = FixedType(18, 8, True, right, "SAT")
        for wrong in ROUNDING_MODES:
            if wrong != right:
                assert _differs(reference, ("R", (src, dst)),
                                lambda c: requantize(c, src, dst.with_(rounding=wrong))), f"{dst} vs {wrong}"


# ---- bad input ---------------------------------------------------------------------------------
def test_non_finite_values_raise():
    x = np.zeros((3, 4))
    x[0, 2], x[1, 1], x[2, 3] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match=r"3 non-finite .*first flat indices: \[2, 5, 11\]"):
        quantize(x, FixedType(16, 6))


@pytest.mark.parametrize("width", [63, 64, 100])
def test_types_beyond_int64_raise(width):
    wide = FixedType(width, 10)
    name = f"ap_fixed<{width},10>"
    with pytest.raises(UnsupportedType, match=name):
        quantize(np.ones(3), wide)
    with pytest.raises(UnsupportedType, match=name):
        requantize(np.ones(3, dtype=np.int64), FixedType(8, 4), wide)
    with pytest.raises(UnsupportedType, match=name):
        requantize(np.ones(3, dtype=np.int64), wide, FixedType(8, 4))
    with pytest.raises(UnsupportedType, match=name):
        to_float(np.ones(3, dtype=np.int64), wide)


def test_codes_outside_the_source_type_raise():
    t = FixedType(8, 4)
    with pytest.raises(ValueError, match=r"\[-129, 5\].*ap_fixed<8,4>"):
        requantize(np.array([-129, 5]), t, t)
    with pytest.raises(ValueError, match=r"\[0, 128\].*ap_fixed<8,4>"):
        to_float(np.array([0, 128]), t)
    with pytest.raises(TypeError, match="integer array"):
        to_float(np.array([0.5]), t)
    assert requantize(np.array([-128, 127]), t, t).tolist() == [-128, 127]  # the range itself is accepted
