"""The published-layout HDF5 loader: values, slicing, chunked streaming, the shared Pythia file, and clear errors."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from models.data.loader import PUBLISHED_FILES, DataError, count_events, iter_chunks, load_events, published_path

PYTHIA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pythia8_background.h5"
SLOT_CLASSES = [1] + [2] * 4 + [3] * 4 + [4] * 10


@pytest.fixture(scope="module")
def pythia_file():
    if not PYTHIA.is_file():
        pytest.fail(f"shared Pythia sample missing: {PYTHIA} (expected next to the repository, in shared/data)")
    return PYTHIA


def _particles(n, seed=0):
    """(n, 19, 4) events in the published layout: MET, one electron, one muon, two jets, one forward-zeroed jet."""
    rng = np.random.default_rng(seed)
    particles = np.zeros((n, 19, 4))
    for row in (0, 1, 5, 9, 10, 11):
        particles[:, row, 0] = rng.uniform(5.0, 200.0, n)
        particles[:, row, 1] = 0.0 if row == 0 else rng.uniform(-2.0, 2.0, n)
        particles[:, row, 2] = rng.uniform(-np.pi, np.pi, n)
        particles[:, row, 3] = SLOT_CLASSES[row]
    particles[:, 9:12, 0] = -np.sort(-particles[:, 9:12, 0], axis=1)
    particles[:, 11, :2] = 0.0   # a jet beyond |eta| = 4: row and phi kept, pT and eta zeroed
    return particles


def _write(path, data, name="Particles"):
    with h5py.File(path, "w") as handle:
        handle.create_dataset(name, data=data)
    return path


def test_values_are_the_first_three_columns(tmp_path):
    particles = _particles(50)
    events = load_events(_write(tmp_path / "e.h5", particles))
    assert events.dtype == np.float64 and events.shape == (50, 19, 3)
    assert np.array_equal(events, particles[:, :, :3])
    assert events.flags.c_contiguous


def test_float32_files_are_widened_exactly(tmp_path):
    particles = _particles(10).astype(np.float32)
    events = load_events(_write(tmp_path / "e.h5", particles))
    assert events.dtype == np.float64
    assert np.array_equal(events, particles[:, :, :3].astype(np.float64))


def test_start_stop_slice(tmp_path):
    particles = _particles(40)
    path = _write(tmp_path / "e.h5", particles)
    assert np.array_equal(load_events(path, 7, 19), particles[7:19, :, :3])
    assert load_events(path, 40, 40).shape == (0, 19, 3)
    assert count_events(path) == 40


@pytest.mark.parametrize("chunk_size", [1, 7, 40, 1000])
def test_chunks_concatenate_to_the_file(tmp_path, chunk_size):
    particles = _particles(40)
    chunks = list(iter_chunks(_write(tmp_path / "e.h5", particles), chunk_size))
    assert [len(c) for c in chunks] == [min(chunk_size, 40 - s) for s in range(0, 40, chunk_size)]
    assert np.array_equal(np.concatenate(chunks), particles[:, :, :3])


def test_chunks_are_read_lazily_and_errors_name_file_positions(tmp_path):
    particles = _particles(30)
    particles[25, 3, 1] = np.nan
    chunks = iter_chunks(_write(tmp_path / "e.h5", particles), 10)
    assert np.array_equal(next(chunks), particles[:10, :, :3])
    assert np.array_equal(next(chunks), particles[10:20, :, :3])
    with pytest.raises(DataError, match=r"NaN or infinite values in events 25\b"):
        next(chunks)


def test_pythia_file(pythia_file):
    events = load_events(pythia_file)
    with h5py.File(pythia_file, "r") as handle:
        raw = handle["Particles"][...]
    assert events.shape == (20000, 19, 3) and events.dtype == np.float64
    assert np.array_equal(events, raw[:, :, :3])
    forward = (events[:, 9:, 0] == 0) & (events[:, 9:, 2] != 0)
    assert forward.any(), "the sample holds jets beyond |eta| = 4 (pT and eta zeroed, phi kept)"
    assert np.array_equal(np.concatenate(list(iter_chunks(pythia_file, 6000))), events)
    assert np.array_equal(load_events(pythia_file, 19990), events[19990:])


def test_published_names():
    assert published_path("background", "/data") == Path("/data/background_for_training.h5")
    assert published_path("Ato4l", "d") == Path("d/Ato4l_lepFilter_13TeV.h5")
    assert published_path("leptoquark", "d").name == "leptoquark_LOWMASS_lepFilter_13TeV.h5"
    assert published_path("hToTauTau", "d").name == "hToTauTau_13TeV_PU20.h5"
    assert published_path("hChToTauNu", "d").name == "hChToTauNu_13TeV_PU20.h5"
    assert len(PUBLISHED_FILES) == 5
    with pytest.raises(DataError, match="unknown process 'ttbar'"):
        published_path("ttbar", "d")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_events(tmp_path / "absent.h5")
    with pytest.raises(DataError, match="not found"):
        next(iter_chunks(tmp_path / "absent.h5", 10))


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("pT,eta,phi\n1,2,3\n")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        load_events(path)


def test_truncated_file(tmp_path):
    path = _write(tmp_path / "e.h5", _particles(2000))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match="corrupt"):
        load_events(path)


def test_damaged_superblock(tmp_path):
    path = _write(tmp_path / "e.h5", _particles(20))
    data = bytearray(path.read_bytes())
    data[:16] = bytes(16)
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        load_events(path)


def test_missing_particles_dataset(tmp_path):
    path = _write(tmp_path / "e.h5", _particles(5), name="Jets")
    with pytest.raises(DataError, match=r"no 'Particles' dataset; it holds: \['Jets'\]"):
        load_events(path)


@pytest.mark.parametrize("shape", [(5, 19, 3), (5, 20, 4), (5, 76), (19, 4)])
def test_wrong_shape(tmp_path, shape):
    with pytest.raises(DataError, match=r"has shape .* expected \(N, 19, 4\)"):
        load_events(_write(tmp_path / "e.h5", np.zeros(shape)))


def test_wrong_dtype(tmp_path):
    with pytest.raises(DataError, match="dtype int64"):
        load_events(_write(tmp_path / "e.h5", _particles(5).astype(np.int64)))


def test_nan_and_inf_name_the_events(tmp_path):
    particles = _particles(12)
    particles[3, 9, 0] = np.nan
    particles[7, 0, 2] = np.inf
    path = _write(tmp_path / "e.h5", particles)
    with pytest.raises(DataError, match=r"NaN or infinite values in events 3, 7$"):
        load_events(path)
    with pytest.raises(DataError, match=r"events 7$"):
        load_events(path, start=5)


def test_many_bad_events_are_summarised(tmp_path):
    particles = _particles(20)
    particles[:, 1, 1] = -np.inf
    with pytest.raises(DataError, match=r"events 0, 1, 2, 3, 4 and 15 more"):
        load_events(_write(tmp_path / "e.h5", particles))


def test_class_contradicting_slot(tmp_path):
    particles = _particles(6)
    particles[4, 1, 3] = 3   # a muon written into an electron slot
    with pytest.raises(DataError, match=r"contradict the object slots in events 4 .*row 1 has class 3, slot expects 2"):
        load_events(_write(tmp_path / "e.h5", particles))


def test_filled_row_without_class(tmp_path):
    particles = _particles(6)
    particles[2, 14, :3] = (30.0, 1.0, 0.5)   # jet values with class 0
    with pytest.raises(DataError, match=r"events 2 .*row 14 has class 0, slot expects 4"):
        load_events(_write(tmp_path / "e.h5", particles))


def test_negative_pt(tmp_path):
    particles = _particles(6)
    particles[5, 5, 0] = -1.0
    with pytest.raises(DataError, match="negative pT in events 5"):
        load_events(_write(tmp_path / "e.h5", particles))


def test_met_with_eta(tmp_path):
    particles = _particles(6)
    particles[1, 0, 1] = 0.3
    with pytest.raises(DataError, match="MET has non-zero eta in events 1"):
        load_events(_write(tmp_path / "e.h5", particles))


def test_bad_ranges_and_chunk_sizes(tmp_path):
    path = _write(tmp_path / "e.h5", _particles(10))
    with pytest.raises(DataError, match=r"event range \[4, 11\) is outside the file's 10 events"):
        load_events(path, 4, 11)
    with pytest.raises(DataError, match=r"event range \[6, 5\)"):
        load_events(path, 6, 5)
    with pytest.raises(DataError, match="chunk_size must be a positive integer"):
        next(iter_chunks(path, 0))
