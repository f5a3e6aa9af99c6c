"""The distance probe agrees with the counting probe, element-local bins become exact conditions on one upstream code,
and the guided search reaches bins that random data leaves empty."""

import numpy as np
import pytest

from emulator.coverage import InstrumentedEmulator, Trigger
from emulator.coverage.intervals import Enclosure
from emulator.coverage.preimages import CodeTarget, element_sources, translate
from emulator.coverage.search import SearchBudget, guided_search, threshold_crossings
from test_coverage_manifests import chain_with_heads, cnn, random_codes


def test_distance_is_zero_exactly_where_a_bin_is_hit():
    for manifest, trigger in ((chain_with_heads(), Trigger("kl", 0, k=3)), (cnn(), None)):
        emulator = InstrumentedEmulator(manifest, trigger)
        codes = random_codes(manifest, 1500, seed=11)
        if trigger is not None:  # put the threshold where scores are, so that the trigger bins are hit
            score = emulator.predict_codes(codes).codes["kl"][:, 0]
            emulator = InstrumentedEmulator(manifest, Trigger("kl", int(np.median(score)), k=3))
        ids = list(emulator.bin_ids)
        distances = emulator.distances(codes, ids)
        hits = emulator.bin_hits(codes, ids)
        assert np.array_equal(distances == 0, hits)
        assert hits.any() and (~hits).any() and (distances >= 0).all()


def test_code_target_distance():
    target = CodeTarget("fc", 0, np.array([-5, 10, 20]), np.array([-3, 10, 25]))
    codes = np.array([-9, -5, -4, -3, 0, 9, 10, 11, 15, 19, 22, 30])
    assert target.distance(codes).tolist() == [4, 0, 0, 0, 3, 1, 0, 1, 5, 1, 0, 5]
    assert [target.nearest(c) for c in (-100, 0, 16, 100)] == [-5, -3, 20, 25]


def test_element_local_bins_become_sufficient_conditions_upstream():
    """For every bin of an element-local layer, an event meeting the translated condition reaches it (the runs of
    codes kept may be a sample, never a superset); bins proved unreachable are never hit."""
    manifest = chain_with_heads()
    emulator = InstrumentedEmulator(manifest)
    chains = element_sources(manifest)
    wanted = [b for b in emulator.bin_ids if b.split("/")[0] in chains]
    targets, proofs = translate(manifest, wanted)
    assert targets and proofs
    assert {t.layer for t in targets.values()} == {"x", "fc"}  # bn reads the input; lrelu, relu, lin hang off fc
    codes = np.concatenate([random_codes(manifest, 3000, seed=12), random_codes(manifest, 3000, seed=13) // 8])
    trace = emulator.trace_codes(codes)
    trace["x"] = codes
    ids = list(targets)
    hits = emulator.bin_hits(codes, ids)
    met = np.stack([targets[b].distance(trace[targets[b].layer][:, targets[b].element]) == 0 for b in ids], axis=1)
    assert not (met & ~hits).any(), [ids[k] for k in np.flatnonzero((met & ~hits).any(axis=0))]
    assert met.any(axis=0).sum() > len(ids) // 2
    assert not emulator.bin_hits(codes, list(proofs)).any()


@pytest.mark.parametrize("pool", [1, 8])
def test_guided_search_reaches_saturation_the_data_misses(pool):
    """A hill climb (a pool of one event per objective) and a search keeping a pool of routes both get there."""
    manifest = chain_with_heads()
    emulator = InstrumentedEmulator(manifest)
    data = random_codes(manifest, 500, seed=14) // 16  # small inputs: nothing saturates
    empty = emulator.cover_codes(data).report.empty()
    proofs = Enclosure(manifest).unreachable([b for b in emulator.bins if b.id in set(empty)])
    wanted = [b for b in empty if b.startswith(("fc/result", "rec/result")) and b not in proofs
              and b.endswith(("sat_high", "sat_low"))]
    assert len(wanted) >= 4
    found = guided_search(emulator, wanted, data, SearchBudget(events=1 << 14, pool=pool))
    assert len(found) >= len(wanted) // 2
    events = np.stack(list(found.values()))
    hits = emulator.bin_hits(events, [wanted[k] for k in found])
    assert hits.diagonal().all()
    t = manifest.input.type
    assert t.min_code <= events.min() and events.max() <= t.max_code


def test_copies_of_one_condition_are_searched_once():
    """Equal code targets (the copies of an element behind upsampling or padding) take one column of the search and
    are reached by the same event."""
    manifest = chain_with_heads()
    asked = []

    class Counting(InstrumentedEmulator):
        def distances(self, codes, objectives, block=1 << 14):
            asked.append(len(objectives))
            return super().distances(codes, objectives, block)

    fc_t = manifest.layer("fc").result
    high = CodeTarget("fc", 0, np.array([fc_t.max_code - 4]), np.array([fc_t.max_code]))
    copy = CodeTarget("fc", 0, high.starts.copy(), high.ends.copy())
    low = CodeTarget("fc", 1, np.array([fc_t.min_code]), np.array([fc_t.min_code + 4]))
    data = random_codes(manifest, 500, seed=15) // 16
    found = guided_search(Counting(manifest), [high, low, copy], data, SearchBudget(events=1 << 13))
    assert asked and max(asked) == 2
    assert 0 in found and np.array_equal(found[0], found[2])


def test_threshold_crossings_are_adjacent_codes_either_side_of_the_threshold():
    manifest = chain_with_heads()
    codes = random_codes(manifest, 400, seed=16)
    score = InstrumentedEmulator(manifest).predict_codes(codes).codes["kl"][:, 0]
    trigger = Trigger("kl", int(np.median(score)), k=3)
    emulator = InstrumentedEmulator(manifest, trigger)
    pairs = threshold_crossings(emulator, codes, pairs=64)
    assert pairs.shape == (128, manifest.input.size)
    step = pairs[1::2] - pairs[0::2]
    assert ((step != 0).sum(axis=1) == 1).all() and (np.abs(step).sum(axis=1) == 1).all()
    fired = emulator.predict_codes(pairs).codes["kl"][:, 0] > trigger.code
    assert not fired[0::2].any() and fired[1::2].all()
    assert not len(threshold_crossings(emulator, codes[score <= trigger.code]))
