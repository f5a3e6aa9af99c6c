"""What verifying events produces: per-path counts, the first difference, layer bit differences, scores and vectors.

`ShardResult.outcome()` is everything except wall-clock time, as plain data: two runs over the same events,
however sharded, must give equal outcomes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .sources import Shard

DETERMINISM = "determinism"  # the pseudo-path of the emulator's second run (other batch size, threads and order)


@dataclass
class PathStats:
    """One path against the reference: events compared, events and codes that differ, trigger decisions."""

    events: int = 0
    differing_events: int = 0
    differing_codes: int = 0
    decision_disagreements: int | None = None
    triggered: int | None = None
    seconds: float = 0.0
    latency_cycles: int | None = None
    ii_cycles: int | None = None

    def outcome(self) -> dict:
        body = asdict(self)
        body.pop("seconds")
        return body


@dataclass(frozen=True)
class LayerLocation:
    """The first layer whose codes differ between two traced paths at one event, and the first neuron in it."""

    layer: str
    op: str
    neuron: int
    index: tuple
    type: str
    expected: int
    observed: int
    expected_path: str
    observed_path: str


@dataclass(frozen=True)
class Difference:
    """The first differing output code: global event, path against reference, output element, codes and type."""

    event: int
    path: str
    reference: str
    output: str
    element: int
    expected: int
    observed: int
    type: str
    location: LayerLocation | None = None
    location_note: str = ""

    def order(self, path_order: tuple) -> tuple:
        rank = path_order.index(self.path) if self.path in path_order else len(path_order)
        return self.event, rank, self.output, self.element


@dataclass
class LayerDiff:
    """Codes of one layer that differ between emulator and C-sim on the events whose outputs differ."""

    codes: int = 0
    events: int = 0
    bits: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # count per bit position, LSB first

    def add(self, other: "LayerDiff") -> "LayerDiff":
        width = max(len(self.bits), len(other.bits))
        bits = np.zeros(width, dtype=np.int64)
        bits[:len(self.bits)] += self.bits
        bits[:len(other.bits)] += other.bits
        return LayerDiff(self.codes + other.codes, self.events + other.events, bits)

    def outcome(self) -> dict:
        return {"codes": self.codes, "events": self.events, "bits": [int(b) for b in self.bits]}


@dataclass
class ShardResult:
    """The verification of the events of `shard` on every path that ran, against `reference`."""

    shard: Shard
    reference: str
    paths: dict  # path name -> PathStats (the determinism pseudo-path included)
    first: Difference | None
    layer_diffs: dict  # layer name -> LayerDiff
    scores: np.ndarray | None  # the reference's score codes, in event order (None: no single-valued score output)
    vector_inputs: np.ndarray  # input codes of the shard's events below the vector limit
    vector_outputs: dict  # output name -> the reference's output codes of those events

    @property
    def events(self) -> int:
        return self.shard.size

    @property
    def agrees(self) -> bool:
        return self.first is None and all(s.differing_codes == 0 and not s.decision_disagreements
                                          for s in self.paths.values())

    def outcome(self) -> dict:
        return {
            "shard": [self.shard.start, self.shard.stop],
            "reference": self.reference,
            "paths": {name: stats.outcome() for name, stats in self.paths.items()},
            "first": None if self.first is None else asdict(self.first),
            "layer_diffs": {name: diff.outcome() for name, diff in self.layer_diffs.items()},
            "scores": None if self.scores is None else self.scores.tolist(),
            "vector_inputs": self.vector_inputs.tolist(),
            "vector_outputs": {name: codes.tolist() for name, codes in self.vector_outputs.items()},
        }
