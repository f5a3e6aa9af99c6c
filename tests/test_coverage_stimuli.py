"""Targeted stimuli for a first dense / batchnorm layer reach the saturation and tie bins the data leaves empty."""

import numpy as np

from emulator.coverage import InstrumentedEmulator
from emulator.coverage.intervals import Enclosure
from emulator.coverage.residues import settle_ties
from emulator.coverage.search import SearchBudget
from emulator.coverage.stimuli import Stimuli, targeted_stimuli
from emulator.fixed_type import FixedType
from emulator.manifest import Layer, Manifest, Tensor
from test_coverage_manifests import chain_with_heads, cnn, dense, random_codes

T = FixedType.parse


def first_dense() -> Manifest:
    layer = dense("fc", "x", 8, 4, T("ap_fixed<6,2>"), T("ap_fixed<6,2>"), T("ap_fixed<12,5,AP_RND,AP_SAT>"),
                  T("ap_fixed<8,3,AP_RND,AP_SAT>"), np.random.default_rng(5))
    return Manifest("first_dense", [Tensor("x", (8,), T("ap_fixed<14,6,AP_RND_CONV,AP_SAT>"))], [layer], ["fc"])


def first_batchnorm() -> Manifest:
    rng = np.random.default_rng(6)
    s_t, b_t = T("ap_fixed<10,3>"), T("ap_fixed<10,3>")
    bn = Layer("bn", "batchnorm", ["x"], (5,), T("ap_fixed<8,4,AP_RND,AP_SAT>"), {"scale": s_t, "bias": b_t},
               {"n_filt": -1}, {"scale": rng.integers(-512, 512, 5), "bias": 8 * rng.integers(-64, 64, 5)})
    return Manifest("first_bn", [Tensor("x", (5,), T("ap_fixed<10,5,AP_RND_CONV,AP_SAT>"))], [bn], ["bn"])


def quiet_events(manifest, n=50):
    """Events at zero: no rounding tie, no overflow."""
    return np.zeros((n, manifest.input.size), dtype=np.int64)


def check(manifest, wanted):
    emulator = InstrumentedEmulator(manifest)
    data = quiet_events(manifest)
    empty = emulator.cover_codes(data).report.empty()
    assert set(wanted) <= set(empty), "the data must leave the targeted bins empty"
    result = targeted_stimuli(manifest, empty, data)
    assert set(result.found) | set(result.unreachable) | set(result.missed) == set(empty)
    assert not set(result.found) & set(result.unreachable)
    ids = list(result.found)
    hits = emulator.bin_hits(np.stack([result.found[b] for b in ids]), ids)
    assert hits.diagonal().all(), "every stimulus reaches its bin on the instrumented emulator"
    t = manifest.input.type
    assert all(t.min_code <= e.min() and e.max() <= t.max_code for e in result.found.values())
    missing = [b for b in wanted if b not in result.found]
    assert not missing, f"not found: {missing}; unreachable: {[result.unreachable.get(b) for b in missing]}"
    return result


def test_first_dense_saturation_and_ties():
    manifest = first_dense()
    wanted = [f"fc/{site}/{j}/{kind}" for j in range(4)
              for site, kind in [("accum", "sat_high"), ("accum", "sat_low"), ("result", "sat_high"),
                                 ("result", "sat_low"), ("result", "tie"), ("result", "at_max"), ("result", "at_min")]]
    w = manifest.layer("fc").tensors["weight"]
    wanted += [f"fc/product/{j}/tie" for j in range(4) if (w[:, j] % 2).any()]  # an odd weight makes ties
    result = check(manifest, wanted)
    assert not result.missed


def test_first_batchnorm_is_exhausted():
    manifest = first_batchnorm()
    scale = manifest.layer("bn").tensors["scale"]
    wanted = [f"bn/result/{i}/tie" for i in range(5)]
    wanted += [f"bn/result/{i}/{kind}" for i in range(5) if abs(scale[i]) > 64 for kind in ("sat_high", "sat_low")]
    result = check(manifest, wanted)
    assert not result.missed  # an elementwise first layer over 1024 input codes is swept exhaustively
    for proof in result.unreachable.values():
        assert proof


def test_deeper_bins_are_searched_verified_or_reported():
    manifest = chain_with_heads()
    emulator = InstrumentedEmulator(manifest)
    data = random_codes(manifest, 1000, seed=8)
    empty = emulator.cover_codes(data).report.empty()
    deep = [b for b in empty if b.split("/")[0] in ("fc", "lrelu", "z_mean")]
    result = targeted_stimuli(manifest, deep, data, budget=SearchBudget(events=8192))
    assert set(result.found) | set(result.unreachable) | set(result.missed) == set(deep)
    if result.found:
        ids = list(result.found)
        assert emulator.bin_hits(np.stack([result.found[b] for b in ids]), ids).diagonal().all()


def test_solve_tie_agrees_with_brute_force():
    import itertools

    from emulator.coverage.stimuli import solve_tie

    for a, c, shift in itertools.product(range(-20, 21), range(-9, 10), range(1, 5)):
        brute = [x for x in range(-50, 51) if (a * x + c) % (1 << shift) == 1 << (shift - 1)]
        assert solve_tie(a, c, shift, -50, 50) == (brute[0] if brute else None), (a, c, shift)


def dense_behind_input_batchnorm() -> Manifest:
    """The paper's encoders start this way: an input batchnorm, a dense layer dropping 10 bits, a batchnorm."""
    rng = np.random.default_rng(11)
    bn_types = {"scale": T("ap_fixed<12,2>"), "bias": T("ap_fixed<12,2>")}
    bn = Layer("bn", "batchnorm", ["x"], (6,), T("ap_fixed<16,6,AP_RND_CONV,AP_SAT>"), bn_types, {"n_filt": -1},
               {"scale": rng.integers(200, 1500, 6), "bias": rng.integers(-512, 512, 6)})
    fc = dense("fc", "bn", 6, 4, T("ap_fixed<8,1>"), T("ap_fixed<8,1>"), T("ap_fixed<24,9>"),
               T("ap_fixed<12,8,AP_RND_CONV,AP_SAT>"), rng)
    bn2 = Layer("bn2", "batchnorm", ["fc"], (4,), T("ap_fixed<10,5,AP_RND_CONV,AP_SAT>"), bn_types, {"n_filt": -1},
                {"scale": rng.integers(200, 1500, 4) | 1, "bias": rng.integers(-512, 512, 4)})
    return Manifest("bn_dense_bn", [Tensor("x", (6,), T("ap_fixed<16,8,AP_RND_CONV,AP_SAT>"))], [bn, fc, bn2],
                    ["bn2"])


def test_ties_behind_an_input_batchnorm_are_swept_not_searched():
    manifest = dense_behind_input_batchnorm()
    emulator = InstrumentedEmulator(manifest)
    empty = emulator.cover_codes(quiet_events(manifest)).report.empty()
    wanted = [b for b in empty if b.endswith("/tie") and b.split("/")[0] in ("fc", "bn2")]
    assert {b.split("/")[0] for b in wanted} == {"fc", "bn2"}
    result = targeted_stimuli(manifest, wanted, quiet_events(manifest), budget=SearchBudget(events=1))
    ids = list(result.found)
    assert emulator.bin_hits(np.stack([result.found[b] for b in ids]), ids).diagonal().all()
    assert not result.missed, f"missed {result.missed}; proofs {result.unreachable}"
    assert any(b.startswith("fc/result/") for b in result.found) and any(b.startswith("bn2/") for b in result.found)


def convolution_behind_copies() -> Manifest:
    """cnn_ae's encoder starts this way: an input batchnorm, a reshape to an image, zero padding, a convolution."""
    rng = np.random.default_rng(12)
    bn_types = {"scale": T("ap_fixed<12,2>"), "bias": T("ap_fixed<12,2>")}
    bn = Layer("bn", "batchnorm", ["x"], (12,), T("ap_fixed<16,6,AP_RND_CONV,AP_SAT>"), bn_types, {"n_filt": -1},
               {"scale": rng.integers(200, 1500, 12), "bias": rng.integers(-512, 512, 12)})
    image = Layer("image", "reshape", ["bn"], (4, 3, 1), T("ap_fixed<16,6,AP_RND_CONV,AP_SAT>"))
    pad = Layer("pad", "zeropad2d", ["image"], (6, 3, 1), T("ap_fixed<16,6,AP_RND_CONV,AP_SAT>"), {}, dict(
        in_height=4, in_width=3, n_chan=1, pad_top=1, pad_bottom=1, pad_left=0, pad_right=0, out_height=6,
        out_width=3))
    w_t, b_t = T("ap_fixed<8,1>"), T("ap_fixed<8,1>")
    conv = Layer("conv", "conv2d", ["pad"], (4, 1, 3), T("ap_fixed<12,7,AP_RND_CONV,AP_SAT>"),
                 {"weight": w_t, "bias": b_t, "accum": T("ap_fixed<24,9>")},
                 dict(in_height=6, in_width=3, n_chan=1, n_filt=3, filt_height=3, filt_width=3, out_height=4,
                      out_width=1, stride_height=1, stride_width=1, pad_top=0, pad_bottom=0, pad_left=0,
                      pad_right=0),
                 {"weight": rng.integers(-128, 128, (3, 3, 1, 3)) | 1, "bias": rng.integers(-128, 128, 3)})
    return Manifest("bn_copies_conv", [Tensor("x", (12,), T("ap_fixed<16,8,AP_RND_CONV,AP_SAT>"))],
                    [bn, image, pad, conv], ["conv"])


def test_ties_of_a_convolution_behind_copies_are_swept_not_searched():
    manifest = convolution_behind_copies()
    emulator = InstrumentedEmulator(manifest)
    empty = emulator.cover_codes(quiet_events(manifest)).report.empty()
    wanted = [b for b in empty if b.startswith("conv/result/") and b.endswith("/tie")]
    assert len(wanted) >= 6
    result = targeted_stimuli(manifest, wanted, quiet_events(manifest), budget=SearchBudget(events=1))
    ids = list(result.found)
    assert emulator.bin_hits(np.stack([result.found[b] for b in ids]), ids).diagonal().all()
    assert not result.missed, f"missed {result.missed}; proofs {result.unreachable}"


def dense_on_coarse_batchnorm(seed: int) -> Manifest:
    """An input batchnorm whose scales are multiples of a power of two and a dense layer dropping 4 bits: whether
    its sums can make a tie depends on the residues the batchnorm's codes can take."""
    rng = np.random.default_rng(seed)
    bn_types = {"scale": T("ap_fixed<8,3>"), "bias": T("ap_fixed<8,3>")}
    scale = (2 * rng.integers(0, 4, 3) + 1) << rng.integers(3, 6, 3)
    bn = Layer("bn", "batchnorm", ["x"], (3,), T("ap_fixed<8,4,AP_RND_CONV,AP_SAT>"), bn_types, {"n_filt": -1},
               {"scale": scale * rng.choice([-1, 1], 3), "bias": rng.integers(-128, 128, 3)})
    weight = rng.integers(1, 4, (3, 2)) << rng.integers(0, 3, (3, 2))
    fc = dense("fc", "bn", 3, 2, T("ap_fixed<6,2>"), T("ap_fixed<4,2>"), T("ap_fixed<16,8>"),
               T("ap_fixed<8,6,AP_RND,AP_SAT>"), rng, weight=weight * rng.choice([-1, 1], (3, 2)))
    return Manifest("coarse_bn_dense", [Tensor("x", (3,), T("ap_fixed<5,3,AP_RND_CONV,AP_SAT>"))], [bn, fc], ["fc"])


def test_sum_ties_settled_by_residues_agree_with_every_event():
    """Differential against exhaustion: a tie the residues prove unreachable is hit by none of the 32**3 events,
    every other one is hit by the event they construct."""
    settled = {"found": 0, "proved": 0}
    for seed in range(12):
        manifest = dense_on_coarse_batchnorm(seed)
        emulator = InstrumentedEmulator(manifest)
        ties = [f"fc/result/{j}/tie" for j in range(2)]
        codes = np.arange(manifest.input.type.min_code, manifest.input.type.max_code + 1)
        every = np.stack(np.meshgrid(codes, codes, codes, indexing="ij"), axis=-1).reshape(-1, 3)
        hit = emulator.bin_hits(every, ties).any(axis=0)
        chain = [manifest.layer("bn"), manifest.layer("fc")]
        found, proofs = settle_ties(manifest, chain, ties, Enclosure(manifest))
        assert set(found) | set(proofs) == set(ties), f"seed {seed}: a tie left unsettled"
        for j, bin_id in enumerate(ties):
            assert hit[j] == (bin_id in found), f"seed {seed}: {bin_id} {proofs.get(bin_id)}"
        if found:
            ids = list(found)
            assert emulator.bin_hits(np.stack([found[b] for b in ids]), ids).diagonal().all()
        settled["found"] += len(found)
        settled["proved"] += len(proofs)
    assert settled["found"] and settled["proved"], settled


def test_focused_search_reaches_conditions_a_small_joint_search_leaves():
    """The same stages, then `focus` events on each condition still open alone: everything found before, and more."""
    manifest = cnn()
    emulator = InstrumentedEmulator(manifest)
    data = random_codes(manifest, 200, seed=3) // 16
    empty = emulator.cover_codes(data).report.empty()
    joint = targeted_stimuli(manifest, empty, data, budget=SearchBudget(events=64, prove_seconds=0))
    focused = targeted_stimuli(manifest, empty, data, budget=SearchBudget(events=64, prove_seconds=0, focus=1 << 12))
    assert set(joint.found) < set(focused.found)
    assert set(focused.missed) < set(joint.missed)
    ids = list(focused.found)
    assert emulator.bin_hits(np.stack([focused.found[b] for b in ids]), ids).diagonal().all()



def test_bins_missed_but_reached_by_an_event_found_for_another_are_credited():
    """An event found for one bin that also reaches a bin left missed counts for that bin; the others stay missed."""
    manifest = cnn()
    emulator = InstrumentedEmulator(manifest)
    event = random_codes(manifest, 1, seed=3)
    report = emulator.cover_codes(event).report
    reached = [b for b, h in zip(report.bin_ids, report.hits) if h]
    never = [b for b, h in zip(report.bin_ids, report.hits) if not h]
    result = Stimuli(found={reached[1]: event[0]}, missed=[reached[0], never[0]])
    result.credit(emulator, result.events())
    assert result.missed == [never[0]]
    assert emulator.bin_hits(result.found[reached[0]][None], [reached[0]]).all()
