"""The instrumented emulator: same output codes as the plain one; bins count exactly on hand-built cases."""

import numpy as np
import pytest

from emulator import Emulator
from emulator.coverage import CoverageReport, InstrumentedEmulator, Trigger, coverage_bins
from emulator.coverage.intervals import unreachable_bins
from emulator.plan import plan_layer
from emulator import kernels
from test_coverage_manifests import chain_with_heads, cnn, random_codes, two_input_dense


@pytest.mark.parametrize("build", [cnn, chain_with_heads, two_input_dense])
def test_instrumented_outputs_equal_plain(build):
    manifest = build()
    codes = random_codes(manifest, 3000, seed=1)
    plain = Emulator(manifest).predict_codes(codes, block=700)
    covered = InstrumentedEmulator(manifest).cover_codes(codes, block=700)
    assert covered.outputs.keys() == plain.codes.keys()
    for name, expected in plain.codes.items():
        assert np.array_equal(covered.outputs[name], expected), name
    assert covered.report.events == len(codes)
    assert covered.report.hits.sum() > 0


def test_plan_sites_match_kernel_site_ids():
    manifest = chain_with_heads()
    names = {layer.op: tuple(s.name for s in plan_layer(layer, manifest).sites) for layer in manifest.layers}
    assert names["dense"] == kernels.MATMUL_SITES
    assert names["kl_divergence"] == kernels.KL_SITES
    assert names["mse"] == kernels.MSE_SITES
    assert names["leaky_relu"] == names["relu"] == kernels.LEAKY_RELU_SITES


# events of two_input_dense: (x0, x1) -> accum x0 + x1 (SAT at [-128, 127]) -> result acc / 2 (RND, SAT at [-32, 31])
EVENTS = np.array([[100, 50],    # accum saturates high (150 -> 127); result 63.5 is a tie, saturates high
                   [3, 2],       # result 2.5: tie
                   [-100, -50],  # accum saturates low (-150 -> -128); result -64 saturates low
                   [4, 2],       # nothing
                   [31, 31],     # result 31: at max, no overflow
                   [-64, 0]],    # result -32: at min, no overflow
                  dtype=np.int64)
EXPECTED = {  # bin id: (casts, events)
    "fc/accum/0/sat_high": (1, 1), "fc/accum/0/sat_low": (1, 1), "fc/accum/0/at_max": (1, 1),
    "fc/accum/0/at_min": (1, 1),
    "fc/product/0/sat_high": (0, 0), "fc/product/0/at_max": (0, 0), "fc/product/0/at_min": (0, 0),
    "fc/bias/0/at_max": (0, 0),
    "fc/result/0/tie": (2, 2), "fc/result/0/sat_high": (1, 1), "fc/result/0/sat_low": (1, 1),
    "fc/result/0/at_max": (2, 2), "fc/result/0/at_min": (2, 2),
}


def test_bins_count_known_events():
    emulator = InstrumentedEmulator(two_input_dense())
    assert "fc/product/0/tie" not in emulator.bin_ids  # no bits dropped: no tie bin
    assert "fc/accum/0/wrap" not in emulator.bin_ids  # a SAT accumulator has no wrap bin
    report = emulator.cover_codes(EVENTS).report
    for bin_id, counts in EXPECTED.items():
        assert report.count(bin_id) == counts, bin_id


def test_casts_counted_per_cast_and_events_once():
    emulator = InstrumentedEmulator(two_input_dense())
    k = 7
    report = emulator.cover_codes(np.repeat(np.array([[127, 127]]), k, axis=0)).report
    # the accumulator meets 127 + 127 (saturates) once per event and sits at its max after both steps
    assert report.count("fc/accum/0/sat_high") == (k, k)
    assert report.count("fc/accum/0/at_max") == (2 * k, k)
    assert report.count("fc/product/0/at_max") == (2 * k, k)


def test_hits_per_event():
    emulator = InstrumentedEmulator(two_input_dense())
    ids = ["fc/result/0/tie", "fc/accum/0/sat_high", "fc/result/0/at_min"]
    hits = emulator.bin_hits(EVENTS, ids)
    assert hits.tolist() == [[True, True, False], [True, False, False], [False, False, True],
                             [False, False, False], [False, False, False], [False, False, True]]


def test_shard_reports_add_up(tmp_path):
    manifest = chain_with_heads()
    emulator = InstrumentedEmulator(manifest, Trigger("kl", 0, k=3))
    codes = random_codes(manifest, 2000, seed=2)
    whole = emulator.cover_codes(codes).report
    parts = [emulator.cover_codes(part).report for part in np.array_split(codes, 3)]
    merged = CoverageReport.load(parts[0].save(tmp_path / "shard0.json")) + parts[1] + parts[2]
    assert merged.events == whole.events
    assert np.array_equal(merged.casts, whole.casts) and np.array_equal(merged.hits, whole.hits)
    for name, stats in whole.layers.items():
        other = merged.layers[name]
        assert np.array_equal(stats.observed_min, other.observed_min)
        assert np.array_equal(stats.observed_max, other.observed_max)
        assert (stats.events_at_min, stats.events_overflow) == (other.events_at_min, other.events_overflow)
    with pytest.raises(ValueError, match="cannot merge"):
        whole + InstrumentedEmulator(two_input_dense()).cover_codes(EVENTS).report


def test_kl_table_index_clamps_and_trigger_window():
    manifest = chain_with_heads()
    emulator = InstrumentedEmulator(manifest)
    codes = random_codes(manifest, 4000, seed=3)
    trace = emulator.trace_codes(codes)
    layer = manifest.layer("kl")
    from emulator.plan import exp_table_index
    scale, shift, offset = exp_table_index(layer, manifest)
    raw = ((trace["z_log_var"] * scale) >> shift) + offset
    score = trace["kl"][:, 0]
    threshold = int(np.median(score))
    report = InstrumentedEmulator(manifest, Trigger("kl", threshold, k=2)).cover_codes(codes).report
    for i in range(2):
        assert report.count(f"kl/table_index/{i}/clamp_low") == ((raw[:, i] < 0).sum(),) * 2
        assert report.count(f"kl/table_index/{i}/clamp_high") == ((raw[:, i] > 63).sum(),) * 2
    assert (raw < 0).any() and (raw > 63).any()
    at = int((score == threshold).sum())
    below = int(((score >= threshold - 2) & (score < threshold)).sum())
    above = int(((score > threshold) & (score <= threshold + 2)).sum())
    assert at > 0
    assert report.count("kl/trigger/0/at") == (at, at)
    assert report.count("kl/trigger/0/below") == (below, below)
    assert report.count("kl/trigger/0/above") == (above, above)


def test_bin_ids_are_stable_and_cover_every_layer():
    manifest = cnn()
    ids = [b.id for b in coverage_bins(manifest)]
    assert len(ids) == len(set(ids))
    assert {i.split("/")[0] for i in ids} == {layer.name for layer in manifest.layers}
    assert ids == [b.id for b in coverage_bins(cnn())]
    assert "conv/accum/17/wrap" in ids and "pool/result/7/wrap" in ids and "relu/negative/0/at_min" in ids


def test_interval_analysis_proves_unreachable_bins_and_never_a_hit_one():
    manifest = two_input_dense()
    proofs = unreachable_bins(manifest)
    # the products x * 1 lie in [-128, 127]: the accumulator type holds them
    assert "fc/product/0/sat_high" in proofs and "127" in proofs["fc/product/0/sat_high"]
    assert "fc/accum/0/sat_high" not in proofs
    for build in (cnn, chain_with_heads):
        m = build()
        report = InstrumentedEmulator(m).cover_codes(random_codes(m, 3000, seed=4)).report
        proved = unreachable_bins(m)
        assert proved
        hit = {b for b, h in zip(report.bin_ids, report.hits) if h}
        assert not hit & proved.keys()
