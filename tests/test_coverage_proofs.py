"""Proofs of unreachability are sound: no event ever reaches a bin proved unreachable (interval enclosure, affine
refinement, low-bit congruences, exhaustive chains, linear relaxation); and each refinement proves what intervals
alone cannot."""

import os
import threading

import numpy as np
import pytest

from emulator.coverage import InstrumentedEmulator, Trigger, coverage_bins
from emulator.coverage.intervals import Enclosure
from emulator.coverage.preimages import CodeTarget, translate
from emulator.coverage.relaxation import (MARGIN, LinearProgram, _quiet, basis_to_input, bottleneck, lp_proofs,
                                          ruling_sides)
from emulator.coverage.search import SearchBudget
from emulator.coverage.stimuli import targeted_stimuli
from emulator.emulator import Emulator
from emulator.fixed_type import FixedType
from emulator.manifest import Layer, Manifest, Tensor
from test_coverage_manifests import autoencoder_head, chain_with_heads, cnn, dense, random_codes

T = FixedType.parse


def difference_of_copies() -> Manifest:
    """y = x - x through two dense layers: intervals see [-2R, 2R]; the affine forms see 0."""
    w = T("ap_fixed<4,2>")
    copies = dense("copies", "x", 1, 2, w, w, T("ap_fixed<16,8>"), T("ap_fixed<12,8,AP_RND,AP_SAT>"),
                   weight=[[1, 1]], bias=[0, 0])
    diff = dense("diff", "copies", 2, 1, w, w, T("ap_fixed<16,8>"), T("ap_fixed<8,4,AP_RND,AP_SAT>"),
                 weight=[[4], [-4]], bias=[0])
    return Manifest("difference", [Tensor("x", (1,), T("ap_fixed<10,8>"))], [copies, diff], ["diff"])


def odd_bias() -> Manifest:
    """A sum of even products plus an odd bias: its low bit is always 1, so a one-bit rounding never meets a tie."""
    layer = dense("fc", "x", 3, 1, T("ap_fixed<6,3>"), T("ap_fixed<6,3>"), T("ap_fixed<16,8>"),
                  T("ap_fixed<12,7,AP_RND,AP_SAT>"), weight=[[2], [-6], [4]], bias=[1])
    return Manifest("odd_bias", [Tensor("x", (3,), T("ap_fixed<8,5>"))], [layer], ["fc"])


def everything_reached(manifest, trigger, codes):
    emulator = InstrumentedEmulator(manifest, trigger)
    return {b for b, h in zip(emulator.bin_ids, emulator.cover_codes(codes).report.hits) if h}


def stress_codes(manifest, n, seed):
    t = manifest.input.type
    rng = np.random.default_rng(seed)
    uniform = rng.integers(t.min_code, t.max_code + 1, size=(n, manifest.input.size))
    return np.concatenate([random_codes(manifest, n, seed), uniform, uniform // 64])


@pytest.mark.parametrize("build", [chain_with_heads, cnn, difference_of_copies, odd_bias, autoencoder_head])
def test_no_proved_bin_is_ever_reached(build):
    manifest = build()
    trigger = {"chain": Trigger("kl", 2000, k=4), "autoencoder_head": Trigger("mse", 160, k=4)}.get(manifest.name)
    codes = stress_codes(manifest, 4000, seed=21)
    data = codes[:300]
    empty = InstrumentedEmulator(manifest, trigger).cover_codes(data).report.empty()
    result = targeted_stimuli(manifest, empty, data, trigger, SearchBudget(events=1 << 13, prove_seconds=2.0))
    reached = everything_reached(manifest, trigger,
                                 np.concatenate([codes, result.events().reshape(-1, codes.shape[1])]))
    wrong = set(result.unreachable) & reached
    assert not wrong, {b: result.unreachable[b] for b in list(wrong)[:3]}
    assert set(result.found) <= reached
    assert len(result.found) + len(result.unreachable) + len(result.missed) == len(empty)


def test_affine_forms_see_correlated_inputs():
    manifest = difference_of_copies()
    bins = coverage_bins(manifest)
    plain = Enclosure(manifest, relational=False).unreachable(bins)
    relational = Enclosure(manifest).unreachable(bins)
    assert "diff/result/0/sat_high" not in plain
    assert "diff/result/0/sat_high" in relational and "diff/result/0/sat_low" in relational
    enclosure = Enclosure(manifest)
    lo, hi = enclosure.outputs["diff"]
    assert -8 <= lo[0] <= hi[0] <= 8  # within a few codes of the rounding of each cast


def test_low_bits_rule_out_ties():
    manifest = odd_bias()
    proofs = Enclosure(manifest).unreachable(coverage_bins(manifest))
    assert "mod 2^" in proofs["fc/result/0/tie"]
    codes = stress_codes(manifest, 2000, seed=22)
    assert not InstrumentedEmulator(manifest).bin_hits(codes, ["fc/result/0/tie"]).any()


def test_low_bits_of_the_reference_rule_out_square_ties():
    """The reference's codes (an input batchnorm) are 2 * bias mod 32 or a saturation code; the reconstruction a
    multiple of 32 on the difference's grid: the square meets a tie only where the difference can be 16 mod 32."""
    manifest = autoencoder_head()
    trigger = Trigger("mse", 160, k=4)
    proofs = Enclosure(manifest).unreachable(coverage_bins(manifest, trigger), trigger)
    ties = [f"mse/square/{i}/tie" for i in range(4)]
    assert [tie in proofs for tie in ties] == [True, False, False, True]
    assert "1 mod 2^6" in proofs[ties[3]]  # the odd saturation code of the reference, a class of its own
    codes = stress_codes(manifest, 4000, seed=24)
    reached = everything_reached(manifest, trigger, codes)
    assert {ties[1], ties[2], "bn/result/3/sat_high"} <= reached  # element 3's reference saturates, and never ties


def test_saturating_scores_keep_their_grid_near_the_threshold():
    """The MSE score is the mean on a grid 16 times finer, or the saturated maximum (odd): codes near 160 are
    multiples of 16."""
    manifest = autoencoder_head()
    trigger = Trigger("mse", 160, k=4)
    proofs = Enclosure(manifest).unreachable(coverage_bins(manifest, trigger), trigger)
    assert "multiple of 16" in proofs["mse/trigger/0/below"] and "multiple of 16" in proofs["mse/trigger/0/above"]
    scores = InstrumentedEmulator(manifest).predict_codes(stress_codes(manifest, 4000, seed=25)).codes["mse"]
    t = manifest.layer("mse").result
    assert (scores == t.max_code).any() and (scores[scores != t.max_code] % 16 == 0).all()


def test_even_scores_rule_out_odd_thresholds():
    """The KL score is -0.5 times a code of the accumulator: on a score grid two bits finer than the accumulator's,
    its codes are even (as in dnn_vae_ptq8)."""
    manifest = chain_with_heads()
    manifest.layer("kl").result = T("ap_fixed<24,10,AP_RND_CONV,AP_SAT>")
    enclosure = Enclosure(manifest)
    assert enclosure.zeros["kl"][0] >= 1
    odd = Trigger("kl", 2001, k=1)
    proofs = enclosure.unreachable(coverage_bins(manifest, odd), odd)
    assert "multiple of" in proofs["kl/trigger/0/at"]
    scores = InstrumentedEmulator(manifest).predict_codes(stress_codes(manifest, 2000, seed=23)).codes["kl"]
    assert (scores % 2 == 0).all()


def test_linear_program_bounds_enclose_every_event():
    manifest = chain_with_heads()
    enclosure = Enclosure(manifest)
    codes = stress_codes(manifest, 3000, seed=24)
    trace = InstrumentedEmulator(manifest).trace_codes(codes)
    for name in ("fc", "z_mean", "rec"):
        program = LinearProgram(manifest, enclosure, name)
        for e in range(manifest.layer(name).size):
            assert program.bound(name, e, True) >= trace[name][:, e].max()
            assert program.bound(name, e, False) <= trace[name][:, e].min()
    assert lp_proofs(manifest, enclosure, [], {}) == ({}, {})


def test_an_op_without_a_transfer_proves_nothing_downstream_wrongly():
    """A merge (`add`, from emulator.layers) has no interval transfer: its sites may see anything, nothing of it is
    proved, and the campaign still runs."""
    w = T("ap_fixed<6,2>")
    a = dense("a", "x", 3, 2, w, w, T("ap_fixed<14,6>"), T("ap_fixed<8,4,AP_RND,AP_SAT>"), np.random.default_rng(7))
    b = dense("b", "x", 3, 2, w, w, T("ap_fixed<14,6>"), T("ap_fixed<8,4,AP_RND,AP_SAT>"), np.random.default_rng(8))
    add = Layer("sum", "add", ["a", "b"], (2,), T("ap_fixed<7,3,AP_RND,AP_SAT>"), params={"n_elem1": 2, "n_elem2": 2})
    out = dense("out", "sum", 2, 1, w, w, T("ap_fixed<14,6>"), T("ap_fixed<8,4,AP_RND,AP_SAT>"),
                np.random.default_rng(9))
    manifest = Manifest("merged", [Tensor("x", (3,), T("ap_fixed<8,4>"))], [a, b, add, out], ["out"])
    proofs = Enclosure(manifest).unreachable(coverage_bins(manifest))
    assert not [p for p in proofs if p.startswith("sum/")]
    codes = stress_codes(manifest, 2000, seed=25)
    empty = InstrumentedEmulator(manifest).cover_codes(codes[:200]).report.empty()
    result = targeted_stimuli(manifest, empty, codes[:200], None, SearchBudget(events=1 << 12, prove_seconds=1.0))
    reached = everything_reached(manifest, None, np.concatenate([codes, result.events().reshape(-1, 3)]))
    assert not set(result.unreachable) & reached


def test_a_tightened_argument_keeps_the_lines_of_its_piece():
    """relu(x0 + x1) + relu(x0 - x1) with both arguments known to be > 0 is exactly 2 x0: the program bounds it by
    2 max(x0), not by the chords of the whole argument range."""
    w = T("ap_fixed<4,2>")
    fc = dense("fc", "x", 2, 2, w, w, T("ap_fixed<16,8>"), T("ap_fixed<12,6,AP_RND,AP_SAT>"),
               weight=[[4, 4], [4, -4]], bias=[0, 0])
    relu = Layer("r", "relu", ["fc"], (2,), T("ap_fixed<12,6,AP_RND,AP_SAT>"))
    out = dense("out", "r", 2, 1, w, w, T("ap_fixed<20,10>"), T("ap_fixed<16,8,AP_RND,AP_SAT>"),
                weight=[[4], [4]], bias=[0])
    manifest = Manifest("kinks", [Tensor("x", (2,), T("ap_fixed<8,4>"))], [fc, relu, out], ["out"])
    enclosure = Enclosure(manifest)
    lo, hi = enclosure.outputs["fc"]
    assert (lo < 0).all() and (hi > 0).all()
    enclosure.outputs["fc"] = (np.ones_like(lo), hi)  # past the kink at code 0
    exact = 2 * 127 * 2 ** (8 - 4)  # 2 max(x0) in out's codes (8 fractional bits; x has 4)
    assert LinearProgram(manifest, enclosure, "out").bound("out", 0, True) <= exact + 16  # the casts' slack
    # (the chords of the whole range allowed 6118)


def coarse_pooling(seed: int, bias: int = 0, result: str = "ap_fixed<12,6,AP_RND_CONV,AP_SAT>") -> Manifest:
    """dense (dropping bits, RND_CONV), relu onto 4 bits, average of 3 (a C division), dense (with `bias`, into
    `result`): a chain of coarse casts whose rounding a relaxation must model exactly to bound the output by its true
    maximum."""
    rng = np.random.default_rng(seed)
    w = T("ap_fixed<4,2>")
    fc = dense("fc", "x", 3, 6, w, w, T("ap_fixed<16,8>"), T("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"), rng)
    relu = Layer("relu", "relu", ["fc"], (6,), T("ap_ufixed<4,2,AP_RND_CONV,AP_SAT>"))
    image = Layer("image", "reshape", ["relu"], (3, 1, 2), T("ap_ufixed<4,2,AP_RND_CONV,AP_SAT>"))
    pool = Layer("pool", "avgpool2d", ["image"], (1, 1, 2), T("ap_ufixed<4,2,AP_RND_CONV,AP_SAT>"),
                 {"accum": T("ap_fixed<7,5>")},
                 dict(in_height=3, in_width=1, n_filt=2, pool_height=3, pool_width=1, out_height=1, out_width=1,
                      stride_height=3, stride_width=1, pad_top=0, pad_bottom=0, pad_left=0, pad_right=0,
                      count_pad=False))
    flat = Layer("flat", "reshape", ["pool"], (2,), T("ap_ufixed<4,2,AP_RND_CONV,AP_SAT>"))
    out = dense("out", "flat", 2, 1, w, w, T("ap_fixed<16,8>"), T(result), weight=[[4], [-3]], bias=[bias])
    return Manifest("coarse_pooling", [Tensor("x", (3,), T("ap_fixed<5,3>"))], [fc, relu, image, pool, flat, out],
                    ["out"])


@pytest.mark.parametrize("seed", range(4))
def test_mixed_integer_bound_of_an_element_is_its_true_extreme(seed):
    """Every cast's rounding (the C division of the average included) modelled to the code, on integer codes: the
    mixed-integer program over the output's cone bounds it by its maximum and minimum over all 32^3 events."""
    manifest = coarse_pooling(seed)
    t = manifest.input.type
    codes = np.stack(np.meshgrid(*[np.arange(t.min_code, t.max_code + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    out = Emulator(manifest).predict_codes(codes).code[:, 0]
    program = LinearProgram(manifest, Enclosure(manifest), "out", 0)
    high, low = program.bound("out", 0, True, seconds=10.0), program.bound("out", 0, False, seconds=10.0)
    assert out.max() <= high < out.max() + MARGIN + 1
    assert out.min() - MARGIN - 1 < low <= out.min()


@pytest.mark.parametrize("seed", range(4))
def test_mixed_integer_program_excludes_exactly_the_codes_no_event_reaches(seed):
    """On the chain of coarse casts, the program has a solution at the output's true maximum and minimum over all
    32^3 events (the output within the margin of it), and none MARGIN + 1 codes beyond either."""
    manifest = coarse_pooling(seed)
    t = manifest.input.type
    codes = np.stack(np.meshgrid(*[np.arange(t.min_code, t.max_code + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    out = Emulator(manifest).predict_codes(codes).code[:, 0]
    program = LinearProgram(manifest, Enclosure(manifest), "out", 0)
    top, bottom = int(out.max()), int(out.min())
    for code in (top, bottom):  # a solution there, and the value it gives the output
        assert abs(program.reach("out", {0: (code, code)}, seconds=10.0).values[0] - code) <= MARGIN
    assert program.excludes_all("out", {0: (top + MARGIN + 1, top + 1000)}, seconds=10.0)
    assert program.excludes_all("out", {0: (bottom - 1000, bottom - MARGIN - 1)}, seconds=10.0)


def shifted_pooling(seed: int) -> Manifest:
    """coarse_pooling, then its output less 1 into a type of range [-2, 2): it saturates where the output reaches 3."""
    base = coarse_pooling(seed)
    s_t = T("ap_fixed<4,2>")
    shift = Layer("shift", "batchnorm", ["out"], (1,), T("ap_fixed<10,2,AP_RND_CONV,AP_SAT>"),
                  {"scale": s_t, "bias": s_t}, {"n_filt": -1}, {"scale": np.array([4]), "bias": np.array([-4])})
    return Manifest("shifted_pooling", base.inputs, base.layers + [shift], ["shift"])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("variant, layer", [("target", "shift"), ("sums", "out")])
def test_mixed_integer_program_proves_exactly_the_bins_no_event_reaches(seed, variant, layer):
    """The chain of coarse casts with a saturation between the output's true maximum (2.0 to 3.5 by the seed) and
    its linear bound: a code target (the output, 3 or more, saturates the layer after it) or the sums of the output
    itself (less 1, into [-2, 2)). Over all 32^3 events, seeds 1 and 2 saturate and 0 and 3 never do; the linear
    program proves neither, the mixed-integer one exactly the two bins of the seeds that never saturate; for the
    others it finds solutions that, as input codes, reach the bins."""
    manifest = (shifted_pooling(seed) if variant == "target"
                else coarse_pooling(seed, bias=-4, result="ap_fixed<8,2,AP_RND_CONV,AP_SAT>"))
    t = manifest.input.type
    codes = np.stack(np.meshgrid(*[np.arange(t.min_code, t.max_code + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    bins = [f"{layer}/result/0/sat_high", f"{layer}/result/0/at_max"]
    empty = set(InstrumentedEmulator(manifest).cover_codes(codes).report.empty())
    assert [b in empty for b in bins] == [seed in (0, 3)] * 2
    enclosure = Enclosure(manifest)
    targets, _ = translate(manifest, bins, enclosure)
    assert (variant == "target") == (len(targets) == 2)
    assert lp_proofs(manifest, enclosure, bins, targets, seconds=0.0)[0] == {}
    proofs, solutions = lp_proofs(manifest, enclosure, bins, targets, seconds=10.0)
    assert set(proofs) == (set(bins) if seed in (0, 3) else set())
    assert bool(solutions) == (seed in (1, 2))  # where the bins are reached, the program's solutions reach them too
    if solutions:
        events = basis_to_input(manifest, enclosure.affine.basis, np.array(list(solutions.values())))
        assert InstrumentedEmulator(manifest).bin_hits(events, list(solutions)).diagonal().all()


def test_only_the_bounds_that_can_rule_a_target_out_are_solved():
    """A target at the top of its anchor's range is ruled out by a maximum only; one inside it by either bound."""
    top = CodeTarget("fc", 0, np.array([465]), np.array([600]))
    inside = CodeTarget("fc", 0, np.array([1]), np.array([16]))
    assert ruling_sides(top, -165.0, 600.0) == (True,)
    assert ruling_sides(inside, -165.0, 600.0) == (True, False)
    assert ruling_sides(inside, 1.0, 600.0) == (False,)


def through_two_codes(seed: int) -> Manifest:
    """An autoencoder in miniature: three inputs, a coarse ReLU, a code of two elements (`mid`), and a decoder (dense,
    coarse ReLU, dense) that reads nothing else: `mid` is its bottleneck."""
    rng = np.random.default_rng(seed)
    w, acc, coarse = T("ap_fixed<4,2>"), T("ap_fixed<16,8>"), T("ap_ufixed<4,2,AP_RND_CONV,AP_SAT>")
    layers = [dense("fc", "x", 3, 4, w, w, acc, T("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"), rng),
              Layer("relu", "relu", ["fc"], (4,), coarse),
              dense("mid", "relu", 4, 2, w, w, acc, T("ap_fixed<6,3,AP_RND_CONV,AP_SAT>"), rng),
              dense("fc2", "mid", 2, 4, w, w, acc, T("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"), rng),
              Layer("relu2", "relu", ["fc2"], (4,), coarse),
              dense("out", "relu2", 4, 1, w, w, acc, T("ap_fixed<12,6,AP_RND_CONV,AP_SAT>"), rng)]
    return Manifest("two_codes", [Tensor("x", (3,), T("ap_fixed<5,3>"))], layers, ["out"])


@pytest.mark.parametrize("seed", range(4))
def test_program_after_a_bottleneck_bounds_the_decoder_over_the_code_box(seed):
    """The program from `mid` bounds `out` over every code in mid's enclosure (exhaustive over that box, which holds
    more than the encoder reaches: a program that kept the encoder would bound `out` more tightly than the box
    allows); exact: on the ReLU's linear piece its least squares line has the ratio of the grids as slope, so its
    lines pin the 4-bit code (the pieces' chords alone left it a code of play on these seeds)."""
    manifest = through_two_codes(seed)
    enclosure = Enclosure(manifest)
    assert bottleneck(manifest, "x", "out") == "mid" and bottleneck(manifest, "x", "relu") is None
    lo, hi = enclosure.outputs["mid"]
    box = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 2)
    decoder = Manifest("decoder", [Tensor("mid", (2,), manifest.layer("mid").result)], manifest.layers[3:], ["out"])
    out = Emulator(decoder).predict_codes(box).code[:, 0]
    program = LinearProgram(manifest, enclosure, "out", 0, basis="mid")
    assert program.basis == "mid" and "fc" not in program.variable
    high, low = program.bound("out", 0, True, seconds=10.0), program.bound("out", 0, False, seconds=10.0)
    assert out.max() <= high < out.max() + MARGIN + 1
    assert out.min() - MARGIN - 1 < low <= out.min()


@pytest.mark.parametrize("signs", [(1, 1), (1, -1), (-1, 1), (-1, -1)])
def test_mixed_integer_program_excludes_a_box_exactly_beyond_the_farthest_event(signs):
    """The code `mid` of the miniature autoencoder (seed 0), one sign pattern of its two elements at a time: the
    farthest any event puts both elements out with those signs at once is short of the enclosure's box (each
    element alone reaches further). The mixed-integer program has a solution that far out (the event is one) and
    none MARGIN + 1 codes further (exhaustive over all 32^3 events)."""
    manifest = through_two_codes(0)
    t = manifest.input.type
    codes = np.stack(np.meshgrid(*[np.arange(t.min_code, t.max_code + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    farthest = int((Emulator(manifest).trace_codes(codes)["mid"] * np.array(signs)).min(axis=1).max())
    enclosure = Enclosure(manifest)
    lo, hi = enclosure.outputs["mid"]
    reach = np.where(np.array(signs) > 0, hi, -lo)
    assert farthest + MARGIN + 1 < reach.min()
    program = LinearProgram(manifest, enclosure, "mid")

    def beyond(floor: float) -> dict:
        return {e: (floor, hi[e]) if s > 0 else (lo[e], -floor) for e, s in enumerate(signs)}

    assert not program.excludes_all("mid", beyond(farthest), seconds=10.0)
    assert program.excludes_all("mid", beyond(farthest + MARGIN + 1), seconds=10.0)


def test_solves_running_at_once_leave_stdout_and_stderr_where_they_were():
    """Two solves in threads, the second starting while the first is silenced and finishing after it: they share
    the solver's silencing, the last undoes it, and the process's stdout and stderr point where they did before."""
    where = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)]
    first_in, both_in, first_out = threading.Event(), threading.Barrier(2), threading.Event()

    def solve(first: bool) -> None:
        if not first:
            first_in.wait()
        with _quiet():
            first_in.set()
            both_in.wait()
            if not first:
                first_out.wait()
        if first:
            first_out.set()

    threads = [threading.Thread(target=solve, args=(first,)) for first in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)] == where
