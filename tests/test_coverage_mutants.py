"""Mutants: each changes one thing of the manifest; equivalent ones are never told apart by any event; the
summation order is honoured by the emulator; the score counts what event sets distinguish."""

import threading
import time

import numpy as np
import pytest

from emulator import Emulator
from emulator.coverage import InstrumentedEmulator, Trigger
from emulator.coverage.campaign import run
from emulator.coverage.intervals import Enclosure
from emulator.coverage.kl_overflow import Region, mean_floor
from emulator.coverage.mutants import KINDS, mutants
from emulator.coverage.mutation import distinguishing, score
from emulator.coverage.relaxation import LinearProgram
from emulator.coverage.search import SearchBudget
from emulator.fixed_type import UnsupportedType
from emulator.manifest import Manifest
from test_coverage_manifests import (autoencoder_head, chain_with_heads, cnn, kl_behind_relu, kl_of_two_means,
                                     kl_with_log_variance, random_codes, saturating_sum)
from test_coverage_proofs import stress_codes



def chain_trigger():
    manifest = chain_with_heads()
    scores = Emulator(manifest).predict_codes(random_codes(manifest, 2000, seed=31)).codes["kl"][:, 0]
    return manifest, Trigger("kl", int(np.percentile(scores, 90)))


def test_each_mutant_changes_one_thing():
    manifest, trigger = chain_trigger()
    found = mutants(manifest, trigger)
    assert {m.kind for m in found} == set(KINDS)
    names = [m.name for m in found]
    assert len(names) == len(set(names))
    original = manifest.to_dict()["layers"]
    for m in found:
        if m.kind == "threshold":
            assert m.manifest is manifest and abs(m.threshold - trigger.code) == 1
            continue
        assert m.manifest.content_hash != manifest.content_hash, m.name
        changed = [a["name"] for a, b in zip(original, m.manifest.to_dict()["layers"]) if a != b]
        assert changed == [m.layer], m.name
        again = Manifest.from_dict(m.manifest.to_dict())
        assert again.content_hash == m.manifest.content_hash
    assert "sum_order" not in str(manifest.to_dict())  # the default order is not spelled out: hashes stay


def autoencoder_trigger():
    return autoencoder_head(), Trigger("mse", 160, k=4)


@pytest.mark.parametrize("build", [chain_trigger, lambda: (cnn(), None), autoencoder_trigger])
def test_equivalent_mutants_are_never_distinguished(build):
    manifest, trigger = build()
    found = mutants(manifest, trigger)
    equivalent = [m for m in found if m.equivalent]
    assert equivalent and len(equivalent) < len(found)
    codes = stress_codes(manifest, 3000, seed=32)
    reference = Emulator(manifest).predict_codes(codes).codes
    for m in equivalent:
        assert not distinguishing(manifest, m, codes, trigger, reference).any(), (m.name, m.equivalent)


def test_summation_order_is_honoured():
    manifest = saturating_sum()
    events = np.array([[100, 50, -100], [-100, -50, 100], [1, 2, 3]], dtype=np.int64)
    reversed_ = next(m for m in mutants(manifest) if m.kind == "sum_order")
    assert reversed_.equivalent is None
    assert Emulator(manifest).predict_codes(events).code[:, 0].tolist() == [27, -28, 6]
    assert Emulator(reversed_.manifest).predict_codes(events).code[:, 0].tolist() == [50, -50, 6]
    manifest.layer("fc").params["sum_order"] = "sideways"
    with pytest.raises(UnsupportedType, match="sum_order 'sideways'"):
        Emulator(manifest)


def test_one_signed_saturating_sums_make_order_mutants_equivalent():
    """The MSE sums squares: saturating or not, the total is clipped once whatever the order."""
    manifest, trigger = autoencoder_trigger()
    found = {m.name: m for m in mutants(manifest, trigger)}
    assert "one sign" in found["sum_order:mse"].equivalent
    assert found["sum_order:rec"].equivalent  # wraps
    assert "multiple of 16" in found["threshold:+1"].equivalent  # the score is the mean on a grid 16 times finer
    assert found["threshold:-1"].equivalent is None
    codes = stress_codes(manifest, 3000, seed=33)
    sites = InstrumentedEmulator(manifest).cover_codes(codes).report
    assert any(h for b, h in zip(sites.bin_ids, sites.hits) if b.startswith("mse/sum/") and b.endswith("sat_high"))
    mixed = next(m for m in mutants(saturating_sum()) if m.kind == "sum_order")
    assert mixed.equivalent is None  # terms of both signs: the order matters (test_summation_order_is_honoured)


def test_wrapping_sums_make_order_mutants_equivalent():
    manifest = chain_with_heads()  # every accumulator of the dense layers wraps
    orders = [m for m in mutants(manifest, enclosure=Enclosure(manifest)) if m.kind == "sum_order"]
    assert {m.layer for m in orders} == {"fc", "z_mean", "z_log_var", "rec", "kl", "mse"}
    assert all("wraps" in m.equivalent for m in orders if m.layer in ("fc", "z_mean", "z_log_var", "rec"))


def test_score_counts_first_distinguishing_events():
    manifest, trigger = chain_trigger()
    found = mutants(manifest, trigger)
    codes = random_codes(manifest, 500, seed=33)
    result = score(manifest, found, {"data": codes, "none": codes[:0]}, trigger)
    reference = Emulator(manifest).predict_codes(codes).codes
    for m in found:
        first = result.first["data"][m.name]
        if m.equivalent:
            assert first is None
            continue
        differ = np.flatnonzero(distinguishing(manifest, m, codes, trigger, reference))
        assert first == (int(differ[0]) if len(differ) else None)
        assert result.first["none"][m.name] is None
    summary = result.summary("data")
    assert summary["distinguished"] + summary["survived"] + summary["equivalent"] == len(found)


def test_campaign_on_a_small_model():
    """Targeted events only add: bins hit or proved never decrease, nor do the mutants distinguished."""
    manifest, trigger = chain_trigger()
    data = random_codes(manifest, 1000, seed=34)
    result = run(manifest, data, trigger, SearchBudget(events=1 << 13, prove_seconds=2.0))
    counts = result.counts()
    assert counts["hit"] + counts["unreachable"] + counts["missed"] == counts["total"]
    assert counts["hit_by_targeted"] > 0
    data_only, both = result.score.summary("data"), result.score.summary("data", "targeted")
    assert both["distinguished"] >= data_only["distinguished"]
    emulator = InstrumentedEmulator(manifest, trigger)
    targeted = set(result.stimuli.found)
    if targeted:
        hits = emulator.bin_hits(result.targeted, sorted(targeted)).any(axis=0)
        assert hits.all()
    for name, row in result.killers.items():
        m = next(m for m in result.score.mutants if m.name == name)
        assert distinguishing(manifest, m, result.targeted[row:row + 1], trigger).all()
    assert "mutation score" in result.summary_line()


@pytest.mark.parametrize("together", [False, True])
def test_a_narrower_kl_head_is_proved_equivalent_only_where_no_input_tells_it_apart(together):
    """Both means reach -4 within their enclosures, so intervals alone prove nothing; the mixed-integer program
    knows whether they reach it together: apart, the narrower head is proved equivalent and no input tells it apart;
    together, the input 3.75 scores 8 (beyond the narrower type) and tells it apart, nothing is proved, and the
    undecided note names the one sign pattern of the means the program could not exclude: both negative."""
    manifest = kl_of_two_means(together)
    enclosure = Enclosure(manifest)
    assert (enclosure.outputs["mean"][0] == -32).all()
    assert next(m for m in mutants(manifest, None, enclosure) if m.name == "narrower:kl").equivalent is None
    mutant = next(m for m in mutants(manifest, None, enclosure, seconds=10.0) if m.name == "narrower:kl")
    every_input = np.arange(16, dtype=np.int64)[:, None]
    assert distinguishing(manifest, mutant, every_input, None).any() == together
    assert (mutant.equivalent is None) == together
    assert together or "32 codes or more from zero" in mutant.equivalent
    assert (mutant.undecided is not None and mutant.undecided.endswith("excludes 3 of 4 regions (sign pattern of "
                                                                       "'mean', box of 'logvar') within 10 s each, "
                                                                       "not (-,-)")) == together


def test_a_narrower_kl_head_is_proved_equivalent_by_splitting_the_log_variances():
    """Over the whole log-variance range the head's intervals let both means overflow the narrower type from 29 codes
    out, and an input puts them there (x0 = 0 or 3.75): those two sign patterns stay open. Split at a log variance of
    zero, neither half lets them overflow within their range: the mutant is proved equivalent over 6 regions, and no
    input (all 256) tells it apart."""
    manifest = kl_with_log_variance()
    enclosure = Enclosure(manifest)
    layer = manifest.layer("kl")
    narrow = next(m for m in mutants(manifest, None, enclosure) if m.name == "narrower:kl").manifest.layer("kl").result
    assert mean_floor(manifest, enclosure, layer, narrow) == 29
    program = LinearProgram(manifest, enclosure, "kl")
    assert not program.excludes_all("mean", {0: (29, 30), 1: (29, 30)}, seconds=10.0)
    mutant = next(m for m in mutants(manifest, None, enclosure, seconds=10.0) if m.name == "narrower:kl")
    assert mutant.undecided is None
    assert "in any of 6 regions (sign pattern of 'mean', box of 'logvar')" in mutant.equivalent
    every_input = np.array([[a, b] for a in range(16) for b in range(16)], dtype=np.int64)
    assert not distinguishing(manifest, mutant, every_input, None).any()


@pytest.mark.parametrize("mutant_seconds", [None, 10.0])
def test_the_mutants_proofs_have_their_own_time_limit(mutant_seconds):
    """A campaign with linear programs only for the bins (prove_seconds 0) leaves the narrower KL head unproved,
    unless the mutants' proofs get time of their own."""
    manifest = kl_of_two_means(False)
    data = np.arange(16, dtype=np.int64)[:, None]
    budget = SearchBudget(events=1 << 10, prove_seconds=0, mutant_seconds=mutant_seconds)
    assert budget.equivalence_seconds == (mutant_seconds or 0)
    result = run(manifest, data, None, budget)
    mutant = next(m for m in result.score.mutants if m.name == "narrower:kl")
    assert (mutant.equivalent is not None) == (mutant_seconds is not None)


@pytest.mark.parametrize("solvers", [1, 2])
def test_a_region_the_solver_does_not_settle_is_split_on_the_phases_of_the_means_parent(monkeypatch, solvers):
    """Both means reach -4 (the narrower head's overflow) alone, but only one of the ReLU's two elements lies above
    its kink at a time. The solver settles the sign pattern (-,-) whole; made to give up on every region with no
    phase fixed (as it does on dnn_vae_ptq8's hardest one within minutes), the proof splits (-,-) on the side of the
    kinks of both of 'h''s elements and excludes all four parts: proved over 7 regions, and no input (all 256) tells
    the mutant apart; the same with two regions examined at once."""
    manifest = kl_behind_relu()
    enclosure = Enclosure(manifest)
    mutant = next(m for m in mutants(manifest, None, enclosure, seconds=10.0) if m.name == "narrower:kl")
    assert "in any of 4 regions" in mutant.equivalent
    real, asked = LinearProgram.excludes_all, []

    def gives_up_on_whole_regions(self, name, ranges, seconds, held=None):
        asked.append(sorted(held))
        return len(held) > 1 and real(self, name, ranges, seconds, held)

    monkeypatch.setattr(LinearProgram, "excludes_all", gives_up_on_whole_regions)
    mutant = next(m for m in mutants(manifest, None, enclosure, seconds=10.0, solvers=solvers)
                  if m.name == "narrower:kl")
    assert mutant.undecided is None
    assert "in any of 7 regions" in mutant.equivalent
    assert asked == [["logvar"]] + [["logvar", "pre"]] * 4
    every_input = np.array([[a, b] for a in range(16) for b in range(16)], dtype=np.int64)
    assert not distinguishing(manifest, mutant, every_input, None).any()


def test_the_regions_of_one_level_are_examined_solvers_at_once(monkeypatch):
    """With two solvers, the regions of kl_with_log_variance's narrower head that the means' enclosure leaves to the
    program (two sign patterns, then their halves) go to the solver two at a time, the proof is the one a single
    solver gives, and the log hears of each level of splits."""
    manifest = kl_with_log_variance()
    enclosure = Enclosure(manifest)
    real, lock, running, most = LinearProgram.excludes_all, threading.Lock(), [0], [0]

    def counted(self, name, ranges, seconds, held=None):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        try:
            return real(self, name, ranges, seconds, held)
        finally:
            with lock:
                running[0] -= 1

    alone = next(m for m in mutants(manifest, None, enclosure, seconds=10.0) if m.name == "narrower:kl")
    monkeypatch.setattr(LinearProgram, "excludes_all", counted)
    told = []
    at_once = next(m for m in mutants(manifest, None, enclosure, seconds=10.0, solvers=2, log=told.append)
                   if m.name == "narrower:kl")
    assert most[0] == 2
    assert at_once.equivalent == alone.equivalent and "in any of 6 regions" in at_once.equivalent
    assert [message.split(": ", 1)[1] for message in told] == [
        "of 4 regions examined, 2 excluded, 2 split, 0 left open; 4 parts next (10 s per program, 2 at once)",
        "of 8 regions examined, 6 excluded, 2 split, 0 left open; 0 parts next (10 s per program, 2 at once)"]


def test_the_parts_of_a_region_hold_every_input_of_it_exactly_once():
    """Split on kinks, every input's argument codes lie in exactly one part's ranges (the mixed-integer program
    widens them by its margin only); split on a log-variance, every code of the box in exactly one half."""
    manifest = kl_behind_relu()
    enclosure = Enclosure(manifest)
    program = LinearProgram(manifest, enclosure, "kl")
    kinks = program.kinks("h")
    assert sorted(kinks) == [0, 1] and all(variable == "pre" for variable, _, _ in kinks.values())
    every_input = np.array([[a, b] for a in range(16) for b in range(16)], dtype=np.int64)
    pre = Emulator(manifest).trace_codes(every_input)["pre"]
    region = Region((-1, -1), (0, 0), (0, 0))
    parts = region.parts(order=(1, 0))
    assert [part.phases for part in parts] == [((1, False), (0, False)), ((1, False), (0, True)),
                                               ((1, True), (0, False)), ((1, True), (0, True))]
    held = [part.held("logvar", kinks)["pre"] for part in parts]
    inside = [np.all([(pre[:, e] >= lo) & (pre[:, e] <= hi) for e, (lo, hi) in box.items()], axis=0) for box in held]
    assert sum(i.astype(int) for i in inside).tolist() == [1] * len(pre)
    wide = Region((-1, -1), (-5, 3), (7, 3))
    codes = np.arange(-5, 8)
    halves = wide.parts(order=(1, 0))
    assert [h.phases for h in halves] == [(), ()]
    assert sum(((codes >= h.lo[0]) & (codes <= h.hi[0])).astype(int) for h in halves).tolist() == [1] * len(codes)
