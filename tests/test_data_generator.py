"""The synthetic event generator: determinism, layout, the lepton filter, and spectra against the Pythia 8 sample."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from models.data.generator import (
    BLOCK_SIZE, PROCESSES, SYNTHETIC_NOTE, generate, generate_range, lepton_filter, stream, write_published_h5,
)
from models.data.loader import load_events

PYTHIA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pythia8_background.h5"
SIGNALS = ("leptoquark", "Ato4l", "hToTauTau", "hChToTauNu")
N_COMPARE = 50_000


@pytest.fixture(scope="module")
def pythia():
    if not PYTHIA.is_file():
        pytest.fail(f"shared Pythia sample missing: {PYTHIA} (expected next to the repository, in shared/data)")
    with h5py.File(PYTHIA, "r") as handle:
        return handle["Particles"][:, :, :3]


@pytest.fixture(scope="module")
def background():
    return generate("background", N_COMPARE, seed=2108)


@pytest.fixture(scope="module")
def samples(background):
    return {"background": background, **{p: generate(p, 20_000, seed=3986) for p in SIGNALS}}


def _counts(events):
    pt = events[:, :, 0]
    return (pt[:, 1:5] > 0).sum(axis=1), (pt[:, 5:9] > 0).sum(axis=1), (pt[:, 9:] > 0).sum(axis=1)


def _leading_lepton(events):
    return np.maximum(events[:, 1, 0], events[:, 5, 0])


def _triggers(events):
    """(electron trigger, muon trigger) per event, thresholds written out from the paper."""
    pt, abs_eta = events[:, :, 0], np.abs(events[:, :, 1])
    electron = ((pt[:, 1:5] > 23.0) & (abs_eta[:, 1:5] < 3.0)).any(axis=1)
    muon = ((pt[:, 5:9] > 23.0) & (abs_eta[:, 5:9] < 2.1)).any(axis=1)
    return electron, muon


def test_note():
    assert SYNTHETIC_NOTE == "data: synthetic events from the built-in generator (not the paper's dataset)"


@pytest.mark.parametrize("process", PROCESSES)
def test_same_seed_same_events(process):
    first = generate(process, 300, seed=5)
    assert np.array_equal(first, generate(process, 300, seed=5))
    assert not np.array_equal(first, generate(process, 300, seed=6))


def test_processes_differ():
    events = [generate(p, 100, seed=1) for p in PROCESSES]
    assert all(not np.array_equal(a, b) for i, a in enumerate(events) for b in events[i + 1:])


def test_ranges_and_chunks_give_the_same_events(background):
    start, stop = BLOCK_SIZE - 123, BLOCK_SIZE + 77
    assert np.array_equal(generate_range("background", start, stop, 2108), background[start:stop])
    assert np.array_equal(generate_range("background", N_COMPARE - 5, N_COMPARE + 5, 2108)[:5], background[-5:])
    for chunk_size in (1000, 7777, BLOCK_SIZE + 1):
        chunks = list(stream("background", BLOCK_SIZE + 2000, chunk_size, 2108))
        assert all(len(c) == chunk_size for c in chunks[:-1])
        assert np.array_equal(np.concatenate(chunks), background[:BLOCK_SIZE + 2000])
    assert generate_range("background", 10, 10, 2108).shape == (0, 19, 3)
    assert not np.array_equal(background[:BLOCK_SIZE], background[BLOCK_SIZE:2 * BLOCK_SIZE]), "blocks independent"


@pytest.mark.parametrize("process", PROCESSES)
def test_layout(samples, process):
    events = samples[process]
    assert events.dtype == np.float64 and events.shape[1:] == (19, 3) and np.isfinite(events).all()
    pt, eta, phi = events[..., 0], events[..., 1], events[..., 2]
    assert (pt >= 0).all() and (np.abs(phi) <= np.pi).all()
    assert (eta[:, 0] == 0).all() and (pt[:, 0] > 0).all()
    empty = pt == 0
    forward_jet = empty & (phi != 0)
    assert not forward_jet[:, :9].any(), "only jets keep a row with zero pT"
    assert (eta[forward_jet] == 0).all()
    assert (events[empty & ~forward_jet] == 0).all(), "empty rows are all zero"
    assert (np.abs(eta[:, 1:5]) < 3.0).all() and (np.abs(eta[:, 5:9]) < 2.1).all()
    assert (np.abs(eta[:, 9:]) <= 4.0).all()
    for rows in (slice(1, 5), slice(5, 9)):
        assert (np.diff(pt[:, rows], axis=1) <= 0).all(), "leptons ordered by pT, zero-padded"
    jets, present = pt[:, 9:], pt[:, 9:] > 0
    assert (np.diff((present | forward_jet[:, 9:]).astype(int), axis=1) <= 0).all(), "jet rows filled from the first"
    running_min = np.minimum.accumulate(np.where(present, jets, np.inf), axis=1)
    assert np.array_equal(jets[present], running_min[present]), "jets ordered by pT (zeroed forward jets aside)"


@pytest.mark.parametrize("process", PROCESSES)
def test_every_event_passes_the_lepton_filter(samples, process):
    electron, muon = _triggers(samples[process])
    assert (electron | muon).all()
    assert np.array_equal(lepton_filter(samples[process]), electron | muon)


def test_lepton_filter_rejects(pythia):
    events = pythia[:50].copy()
    events[:, 1:9] = 0.0
    events[:10, 1] = (23.0, 0.0, 0.0)     # at threshold: not above it
    events[10:20, 5] = (40.0, 2.2, 0.0)   # muon outside |eta| < 2.1
    events[20:30, 1] = (40.0, 2.9, 0.0)   # electron inside |eta| < 3
    assert np.array_equal(np.flatnonzero(lepton_filter(events)), np.arange(20, 30))


def test_multiplicities_match_pythia(pythia, background):
    for name, ours, theirs in zip(("electrons", "muons", "jets"), _counts(background), _counts(pythia)):
        assert abs(ours.mean() / theirs.mean() - 1) < 0.15, (name, ours.mean(), theirs.mean())
    ours, theirs = sum(_counts(background)[:2]), sum(_counts(pythia)[:2])
    assert abs((ours >= 2).mean() - (theirs >= 2).mean()) < 0.02, "dilepton (Z) fraction"
    ours, theirs = (((e[:, 9:, 0] == 0) & (e[:, 9:, 2] != 0)).sum() / len(e) for e in (background, pythia))
    assert abs(ours / theirs - 1) < 0.4, ("jets beyond |eta| = 4 per event", ours, theirs)


def test_spectra_match_pythia(pythia, background):
    for name, ours, theirs, tolerance in (
            ("leading lepton pT", _leading_lepton(background), _leading_lepton(pythia), 0.10),
            ("MET", background[:, 0, 0], pythia[:, 0, 0], 0.15),
            ("jet pT", background[:, 9:, 0][background[:, 9:, 0] > 0], pythia[:, 9:, 0][pythia[:, 9:, 0] > 0], 0.10)):
        for quantile in (0.25, 0.5, 0.9):
            ratio = np.quantile(ours, quantile) / np.quantile(theirs, quantile)
            assert abs(ratio - 1) < tolerance, (name, quantile, ratio)


def test_trigger_mix_matches_pythia(pythia, background):
    ours, theirs = _triggers(background), _triggers(pythia)
    for channel in range(2):
        assert abs(ours[channel].mean() - theirs[channel].mean()) < 0.03, ("electron", "muon")[channel]


def test_rare_multi_tev_tail(background):
    more = generate_range("background", N_COMPARE, 200_000, 2108)
    events = np.concatenate([background, more])
    above = (events[:, :, 0] > 2000.0).any(axis=1).mean()
    assert 3e-5 < above < 4e-4, above
    assert events[:, :, 0].max() < 6500.0, "below the beam energy"


def test_signals_differ_from_background_plausibly(samples):
    back = samples["background"]

    def leptons(events):
        return sum(_counts(events)[:2]).mean()

    assert leptons(samples["Ato4l"]) > 2.5 > 1.2 > leptons(back)
    assert _counts(samples["leptoquark"])[2].mean() > 2 * _counts(back)[2].mean()
    for tau_process in ("leptoquark", "hToTauTau", "hChToTauNu"):
        assert np.median(_leading_lepton(samples[tau_process])) < 0.9 * np.median(_leading_lepton(back))
    for met_process in ("hToTauTau", "hChToTauNu"):
        assert np.quantile(samples[met_process][:, 0, 0], 0.9) > 1.2 * np.quantile(back[:, 0, 0], 0.9)
    assert np.median(samples["Ato4l"][:, 0, 0]) < 0.5 * np.median(back[:, 0, 0]), "no neutrinos in A -> 4l"


def test_published_writer_round_trips(tmp_path, samples):
    events = samples["background"][:3000]
    path = tmp_path / "synthetic.h5"
    write_published_h5(path, events)
    assert np.array_equal(load_events(path), events)
    with h5py.File(path, "r") as handle:
        classes = handle["Particles"][:, :, 3]
        assert handle["Particles"].dtype == np.float64
        assert list(handle["Particles_Names"][...]) == [b"Pt", b"Eta", b"Phi", b"Class"]
    filled = (events != 0).any(axis=2)
    assert np.array_equal(classes[filled], np.broadcast_to([1] + [2] * 4 + [3] * 4 + [4] * 10, filled.shape)[filled])
    assert (classes[~filled] == 0).all()


def test_writer_rejects_bad_events(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(N, 19, 3\)"):
        write_published_h5(tmp_path / "x.h5", np.zeros((4, 19, 4)))
    with pytest.raises(ValueError, match="NaN"):
        write_published_h5(tmp_path / "x.h5", np.full((4, 19, 3), np.nan))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown process 'QCD'"):
        generate("QCD", 10, 1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        generate("background", 10, -1)
    with pytest.raises(ValueError, match="n must be non-negative"):
        generate("background", -1, 1)
    with pytest.raises(ValueError, match=r"invalid event range \[5, 4\)"):
        generate_range("background", 5, 4, 1)
    with pytest.raises(ValueError, match="chunk_size >= 1"):
        next(stream("background", 10, 0, 1))
