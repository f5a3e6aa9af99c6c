"""`CoverageReport`: bin counts and per-layer range statistics of a run over events; reports of shards merge by `+`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .bins import Trigger


@dataclass
class LayerStats:
    """What a layer's output codes did over the events: per-element observed extremes, and how many events had an
    element at the type's minimum / maximum code or any overflowing cast in the layer (and how many such casts)."""

    observed_min: np.ndarray
    observed_max: np.ndarray
    events_at_min: int = 0
    events_at_max: int = 0
    events_overflow: int = 0
    overflow_casts: int = 0

    def __add__(self, other: "LayerStats") -> "LayerStats":
        return LayerStats(np.minimum(self.observed_min, other.observed_min),
                          np.maximum(self.observed_max, other.observed_max),
                          self.events_at_min + other.events_at_min, self.events_at_max + other.events_at_max,
                          self.events_overflow + other.events_overflow, self.overflow_casts + other.overflow_casts)


@dataclass
class CoverageReport:
    """Per bin (ids in `bin_ids` order): `casts` that fell in it and `hits`, the events with at least one such cast."""

    model: str
    manifest_hash: str
    bin_ids: tuple
    trigger: Trigger | None = None
    events: int = 0
    casts: np.ndarray = None
    hits: np.ndarray = None
    layers: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.bin_ids)
        self.casts = np.zeros(n, dtype=np.int64) if self.casts is None else np.asarray(self.casts, dtype=np.int64)
        self.hits = np.zeros(n, dtype=np.int64) if self.hits is None else np.asarray(self.hits, dtype=np.int64)

    # ---- queries -----------------------------------------------------------------------------
    def count(self, bin_id: str) -> tuple:
        """(casts, hits) of one bin."""
        k = self._index[bin_id]
        return int(self.casts[k]), int(self.hits[k])

    def empty(self) -> list:
        """Ids of the bins no event reached."""
        return [bin_id for bin_id, h in zip(self.bin_ids, self.hits) if h == 0]

    @cached_property
    def _index(self) -> dict:
        return {bin_id: k for k, bin_id in enumerate(self.bin_ids)}

    # ---- merging -----------------------------------------------------------------------------
    def __add__(self, other: "CoverageReport") -> "CoverageReport":
        if (self.manifest_hash, self.bin_ids, self.trigger) != (other.manifest_hash, other.bin_ids, other.trigger):
            raise ValueError(f"cannot merge coverage of {self.model!r} ({self.manifest_hash[:12]}) with coverage of "
                             f"{other.model!r} ({other.manifest_hash[:12]}): different model, bins or trigger")
        layers = {name: stats + other.layers[name] if name in other.layers else stats
                  for name, stats in self.layers.items()}
        layers.update({name: stats for name, stats in other.layers.items() if name not in self.layers})
        return CoverageReport(self.model, self.manifest_hash, self.bin_ids, self.trigger, self.events + other.events,
                              self.casts + other.casts, self.hits + other.hits, layers)

    # ---- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "model": self.model, "manifest_hash": self.manifest_hash, "events": self.events,
            "trigger": None if self.trigger is None else vars(self.trigger),
            "bins": {bin_id: [int(c), int(h)] for bin_id, c, h in zip(self.bin_ids, self.casts, self.hits)},
            "layers": {name: {"observed_min": s.observed_min.tolist(), "observed_max": s.observed_max.tolist(),
                              "events_at_min": s.events_at_min, "events_at_max": s.events_at_max,
                              "events_overflow": s.events_overflow, "overflow_casts": s.overflow_casts}
                       for name, s in self.layers.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CoverageReport":
        counts = np.array(list(data["bins"].values()), dtype=np.int64).reshape(-1, 2)
        layers = {name: LayerStats(np.array(s["observed_min"], dtype=np.int64),
                                   np.array(s["observed_max"], dtype=np.int64), s["events_at_min"],
                                   s["events_at_max"], s["events_overflow"], s["overflow_casts"])
                  for name, s in data["layers"].items()}
        trigger = None if data["trigger"] is None else Trigger(**data["trigger"])
        return cls(data["model"], data["manifest_hash"], tuple(data["bins"]), trigger, data["events"],
                   counts[:, 0], counts[:, 1], layers)

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "CoverageReport":
        return cls.from_dict(json.loads(Path(path).read_text()))
