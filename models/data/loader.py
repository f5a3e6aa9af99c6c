"""Read events from HDF5 files in the published ADC2021 layout into float64 (N, 19, 3) arrays of (pT, eta, phi).

The class column is checked, not trusted: a non-empty row whose class id differs from its slot's class
(1 MET, 2 electron, 3 muon, 4 jet) raises DataError; objects are never re-mapped between slots. Any floating-point
`Particles` dtype is accepted and widened exactly to float64; values must be finite, pT >= 0 and MET eta == 0.
"""
from pathlib import Path

import h5py
import numpy as np

from models.data.layout import MET_ROW, N_FEATURES, N_OBJECTS, PUBLISHED_DATASET, SLOT_CLASS

PUBLISHED_FILES = {
    "background": "background_for_training.h5",
    "Ato4l": "Ato4l_lepFilter_13TeV.h5",
    "leptoquark": "leptoquark_LOWMASS_lepFilter_13TeV.h5",
    "hToTauTau": "hToTauTau_13TeV_PU20.h5",
    "hChToTauNu": "hChToTauNu_13TeV_PU20.h5",
}

_MAX_LISTED = 5


class DataError(ValueError):
    """An event file is missing, unreadable, or not in the published (N, 19, 4) layout."""


def published_path(process, directory):
    """Path of the published ADC2021 file holding `process` inside `directory`."""
    if process not in PUBLISHED_FILES:
        raise DataError(f"unknown process {process!r}; known: {', '.join(PUBLISHED_FILES)}")
    return Path(directory) / PUBLISHED_FILES[process]


def _listed(indices):
    shown = ", ".join(str(int(i)) for i in indices[:_MAX_LISTED])
    more = f" and {len(indices) - _MAX_LISTED} more" if len(indices) > _MAX_LISTED else ""
    return f"{shown}{more}"


def _open(path):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"event file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path} is not a readable HDF5 file (corrupt or wrong format): {exc}") from exc


def _particles(handle):
    """The validated `Particles` dataset of an open file (shape and dtype only; values are checked per slice)."""
    name = handle.filename
    if PUBLISHED_DATASET not in handle:
        raise DataError(f"{name} has no '{PUBLISHED_DATASET}' dataset; it holds: {sorted(handle.keys())}")
    dataset = handle[PUBLISHED_DATASET]
    if not isinstance(dataset, h5py.Dataset):
        raise DataError(f"{name}: '{PUBLISHED_DATASET}' is a group, not a dataset")
    if dataset.ndim != 3 or dataset.shape[1:] != (N_OBJECTS, N_FEATURES + 1):
        raise DataError(f"{name}: '{PUBLISHED_DATASET}' has shape {dataset.shape}, expected (N, {N_OBJECTS}, "
                        f"{N_FEATURES + 1}) = (events, objects, pT/eta/phi/class)")
    if dataset.dtype.kind != "f":
        raise DataError(f"{name}: '{PUBLISHED_DATASET}' has dtype {dataset.dtype}, expected a floating-point type")
    return dataset


def _read(dataset, start, stop):
    try:
        return np.asarray(dataset[start:stop], dtype=np.float64)
    except OSError as exc:
        raise DataError(f"{dataset.file.filename}: cannot read events [{start}, {stop}) (corrupt file): {exc}") from exc


def _checked(block, offset, name):
    """(pT, eta, phi) of a raw (n, 19, 4) block after checking values and classes; `offset` numbers the events."""
    bad = ~np.isfinite(block).all(axis=(1, 2))
    if bad.any():
        raise DataError(f"{name}: NaN or infinite values in events {_listed(np.flatnonzero(bad) + offset)}")
    negative = (block[:, :, 0] < 0).any(axis=1)
    if negative.any():
        raise DataError(f"{name}: negative pT in events {_listed(np.flatnonzero(negative) + offset)}")
    filled = (block != 0).any(axis=2)
    wrong = filled & (block[:, :, 3] != SLOT_CLASS)
    if wrong.any():
        event, row = np.argwhere(wrong)[0]
        raise DataError(f"{name}: class ids contradict the object slots in events "
                        f"{_listed(np.flatnonzero(wrong.any(axis=1)) + offset)} (first: event {event + offset} row "
                        f"{row} has class {block[event, row, 3]:g}, slot expects {SLOT_CLASS[row]:g})")
    met_eta = block[:, MET_ROW, 1] != 0
    if met_eta.any():
        raise DataError(f"{name}: MET has non-zero eta in events {_listed(np.flatnonzero(met_eta) + offset)}")
    return np.ascontiguousarray(block[:, :, :N_FEATURES])


def _bounds(n_events, start, stop, name):
    stop = n_events if stop is None else stop
    if not (0 <= start <= stop <= n_events):
        raise DataError(f"{name}: event range [{start}, {stop}) is outside the file's {n_events} events")
    return start, stop


def load_events(path, start=0, stop=None):
    """Events [start, stop) of a published-layout file as float64 (n, 19, 3) = (pT, eta, phi)."""
    with _open(path) as handle:
        dataset = _particles(handle)
        start, stop = _bounds(dataset.shape[0], start, stop, handle.filename)
        return _checked(_read(dataset, start, stop), start, handle.filename)


def count_events(path):
    """Number of events in a published-layout file."""
    with _open(path) as handle:
        return _particles(handle).shape[0]


def iter_chunks(path, chunk_size, start=0, stop=None):
    """Yield checked float64 (<= chunk_size, 19, 3) chunks of events [start, stop), reading one chunk at a time."""
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise DataError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    with _open(path) as handle:
        dataset = _particles(handle)
        start, stop = _bounds(dataset.shape[0], start, stop, handle.filename)
        for first in range(start, stop, chunk_size):
            last = min(first + chunk_size, stop)
            yield _checked(_read(dataset, first, last), first, handle.filename)
