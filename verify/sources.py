"""Event sources cut into shards: ranges of the seeded generator stream, or event ranges of a published HDF5 file.

A `Shard` is a half-open range [start, stop) of global event indices; a source reads any shard on its own, so
shards can be verified in any order, in threads or on other machines (sources and shards are small and picklable).
Events come back as float64 (n, 19, 3) arrays of (pT, eta, phi), the layout of models.data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.data import SYNTHETIC_NOTE, DataError, count_events, generate_range, load_events, published_path
from models.data.generator import PROCESSES


@dataclass(frozen=True, order=True)
class Shard:
    """Events [start, stop) of a source, by global event index."""

    start: int
    stop: int

    def __post_init__(self):
        if not 0 <= self.start <= self.stop:
            raise ValueError(f"a shard needs 0 <= start <= stop, got [{self.start}, {self.stop})")

    @property
    def size(self) -> int:
        return self.stop - self.start


def split(n_events: int, shard_size: int, first: int = 0) -> list:
    """Consecutive shards of at most `shard_size` events covering [first, first + n_events)."""
    if shard_size < 1:
        raise ValueError(f"the shard size must be positive, got {shard_size}")
    return [Shard(s, min(s + shard_size, first + n_events)) for s in range(first, first + n_events, shard_size)]


@dataclass(frozen=True)
class GeneratorSource:
    """The built-in generator's stream of `process` events for `seed` (synthetic, not the paper's dataset)."""

    process: str = "background"
    seed: int = 0

    def __post_init__(self):
        if self.process not in PROCESSES:
            raise DataError(f"unknown process {self.process!r}; the generator knows: {', '.join(PROCESSES)}")

    @property
    def note(self) -> str:
        return SYNTHETIC_NOTE

    def describe(self) -> dict:
        return {"kind": "generator", "process": self.process, "seed": self.seed, "note": self.note}

    def available(self) -> int | None:
        """The number of events the source holds (None: unbounded)."""
        return None

    def read(self, shard: Shard) -> np.ndarray:
        return generate_range(self.process, shard.start, shard.stop, self.seed)


@dataclass(frozen=True)
class HDF5Source:
    """Events of one HDF5 file in the published ADC2021 layout (values and class ids checked by models.data)."""

    path: Path

    @classmethod
    def from_argument(cls, location, process: str = "background") -> "HDF5Source":
        """A file, or a directory holding the published file of `process`."""
        location = Path(location)
        if location.is_dir():
            location = published_path(process, location)
        if not location.is_file():
            raise DataError(f"event file not found: {location} (give --data a published HDF5 file, or the directory "
                            f"holding it; leave --data out to use the built-in generator)")
        return cls(location.resolve())

    @property
    def note(self) -> str:
        return f"data: {self.path} (published ADC2021 HDF5 layout)"

    def describe(self) -> dict:
        return {"kind": "hdf5", "path": str(self.path), "note": self.note}

    def available(self) -> int:
        return count_events(self.path)

    def read(self, shard: Shard) -> np.ndarray:
        return load_events(self.path, shard.start, shard.stop)
