"""`InstrumentedEmulator`: the emulator's kernels run with a probe; same output codes, plus coverage.

The plain `Emulator` methods it inherits stay uninstrumented; `cover*` and `bin_hits` run the kernels with the
counting probe, `distances` with the distance probe (how far each event is from each bin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from emulator.emulator import DEFAULT_BLOCK, Emulator
from emulator.manifest import Manifest

from .bins import TRIGGER_KINDS, TRIGGER_SITE, Trigger, coverage_bins
from .probe import FAR, KINDS, SAT_HIGH, SAT_LOW, WRAP, new_distance_probe, new_probe
from .report import CoverageReport, LayerStats

PROBE_BYTES = 1 << 26
"""Memory for the probe arrays of one block: blocks shrink so that all layers' probes fit in it."""


@nb.njit(cache=True)
def _reduce(probe):
    """One pass over a probe (events, sites, elements, kinds): casts and events per bin, and (events with an
    overflowing cast, overflowing casts)."""
    n, n_sites, n_elements, n_kinds = probe.shape
    casts = np.zeros((n_sites, n_elements, n_kinds), dtype=np.int64)
    hits = np.zeros((n_sites, n_elements, n_kinds), dtype=np.int64)
    events_overflow, overflow_casts = 0, 0
    for e in range(n):
        overflowed = 0
        for s in range(n_sites):
            for k in range(n_elements):
                for kind in range(n_kinds):
                    c = probe[e, s, k, kind]
                    if c:
                        casts[s, k, kind] += c
                        hits[s, k, kind] += 1
                        if kind == SAT_HIGH or kind == SAT_LOW or kind == WRAP:
                            overflowed += c
        overflow_casts += overflowed
        events_overflow += overflowed > 0
    return casts, hits, (events_overflow, overflow_casts)


@dataclass
class Coverage:
    """Outputs (as `Emulator.predict_codes` gives them: {output name: codes}) and the coverage of the run."""

    outputs: dict
    report: CoverageReport


class InstrumentedEmulator(Emulator):
    """An `Emulator` that can also count every bin of `coverage_bins(manifest, trigger)` over events."""

    def __init__(self, manifest: Manifest, trigger: Trigger | None = None):
        super().__init__(manifest)
        self.trigger = trigger
        self.bins = coverage_bins(manifest, trigger)
        self.bin_ids = tuple(b.id for b in self.bins)
        self._index = {bin_id: k for k, bin_id in enumerate(self.bin_ids)}
        self._selection = self._select(range(len(self.bins)))
        per_event = sum(len(step.sites) * max(site.elements for site in step.sites) for _, step in self._steps)
        self._block = max(1, PROBE_BYTES // (4 * len(KINDS) * max(per_event, 1)))

    # ---- running -----------------------------------------------------------------------------
    def cover(self, x, block: int = DEFAULT_BLOCK) -> Coverage:
        """Outputs and coverage for float events (quantized to the input type first)."""
        return self.cover_codes(self.quantize_inputs(x), block)

    def cover_codes(self, codes, block: int = DEFAULT_BLOCK) -> Coverage:
        """Outputs and coverage for raw input codes (N, n_in) int64."""
        report = CoverageReport(self.manifest.name, self.manifest.content_hash, self.bin_ids, self.trigger)
        outputs = {name: [] for name in self.manifest.outputs}
        for values, probes in self._blocks(self._check_codes(codes), block):
            report += self._block_report(values, probes)
            for name in outputs:
                outputs[name].append(values[name])
        return Coverage({name: np.concatenate(parts) for name, parts in outputs.items()}, report)

    def bin_hits(self, codes, bin_ids, block: int = DEFAULT_BLOCK) -> np.ndarray:
        """(N, len(bin_ids)) bool: which events reach each of the bins named."""
        selection = self._select(self._positions(bin_ids))
        parts = []
        for values, probes in self._blocks(self._check_codes(codes), block, selection):
            hits = np.zeros((len(values[self.manifest.input.name]), len(bin_ids)), dtype=bool)
            for name, (where, site, element, kind) in selection.items():
                hits[:, where] = probes[name][:, site, element, kind] > 0
            parts.append(hits)
        return np.concatenate(parts)

    def distances(self, codes, objectives, block: int = DEFAULT_BLOCK) -> np.ndarray:
        """(N, len(objectives)) int64: per event, how far it is from each objective, 0 where it reaches it.

        An objective is a bin id (distance from the distance probe, or from the threshold window for trigger bins)
        or an object with `layer`, `element` and `distance(codes)` (a condition on one layer output's codes).
        Only the layers up to the last one an objective needs are run, only those holding bins with the probe.
        """
        bin_ids = [o for o in objectives if isinstance(o, str)]
        selection = self._select(self._positions(bin_ids))
        where_bins = [k for k, o in enumerate(objectives) if isinstance(o, str)]
        targets = [(k, o) for k, o in enumerate(objectives) if not isinstance(o, str)]
        needed = {name.split(":", 1)[-1] for name in selection} | {o.layer for _, o in targets}
        parts = []
        for values, probes in self._blocks(self._check_codes(codes), block, selection, needed, distance=True):
            out = np.full((len(values[self.manifest.input.name]), len(objectives)), FAR, dtype=np.int64)
            for name, (where, site, element, kind) in selection.items():
                out[:, np.asarray(where_bins)[where]] = probes[name][:, site, element, kind]
            for k, target in targets:
                out[:, k] = target.distance(values[target.layer][:, target.element])
            parts.append(out)
        return np.concatenate(parts)

    # ---- internals ---------------------------------------------------------------------------
    def _select(self, positions) -> dict:
        """{layer: (positions in the list asked for, site ids, elements, kind ids)} of the bins at `positions`."""
        site_ids = {layer.name: {site.name: s for s, site in enumerate(step.sites)} for layer, step in self._steps}
        picked = {}
        for where, k in enumerate(positions):
            b = self.bins[k]
            if b.site == TRIGGER_SITE:
                row = (where, 0, b.element, TRIGGER_KINDS.index(b.kind))
                picked.setdefault(f"{TRIGGER_SITE}:{b.layer}", []).append(row)
            else:
                picked.setdefault(b.layer, []).append(
                    (where, site_ids[b.layer][b.site], b.element, KINDS.index(b.kind)))
        return {name: tuple(np.array(column, dtype=np.int64) for column in zip(*rows)) for name, rows in picked.items()}

    def _positions(self, bin_ids) -> list:
        unknown = [b for b in bin_ids if b not in self._index]
        if unknown:
            raise KeyError(f"model {self.manifest.name!r} has no coverage bins {unknown[:5]}")
        return [self._index[b] for b in bin_ids]

    def _blocks(self, codes: np.ndarray, block: int, selection=None, needed=None, distance: bool = False):
        """Per block of events: ({tensor name: codes}, {layer name or trigger key: probe}). With `selection`, only
        the layers it names get a probe; with `needed` (layer names), the run stops after the last of them."""
        probed = None if selection is None else set(selection)
        steps = self._steps
        if needed is not None:
            last = max((k for k, (layer, _) in enumerate(steps) if layer.name in needed), default=-1)
            steps = steps[:last + 1]
        new = new_distance_probe if distance else new_probe
        block = min(block, self._block // (2 if distance else 1) or 1)
        for start in range(0, max(len(codes), 1), block):
            x = codes[start:start + block]
            values, probes = {self.manifest.input.name: x}, {}
            for layer, step in steps:
                xs = [values[name] for name in layer.inputs]
                if probed is None or layer.name in probed:
                    probe = new(len(x), len(step.sites), max(site.elements for site in step.sites))
                    values[layer.name] = step.run(xs, probe)
                    probes[layer.name] = probe
                else:
                    values[layer.name] = step(xs)
            key = f"{TRIGGER_SITE}:{self.trigger.output}" if self.trigger is not None else None
            if key is not None and (probed is None or key in probed):
                scores = values[self.trigger.output]
                probes[key] = self._trigger_distances(scores) if distance else self._trigger_counts(scores)
            yield values, probes

    def _trigger_counts(self, scores: np.ndarray) -> np.ndarray:
        """(N, 1, elements, 3) 0/1: score code within k below, at, within k above the threshold code."""
        return (self._trigger_distances(scores) == 0).astype(np.int32)

    def _trigger_distances(self, scores: np.ndarray) -> np.ndarray:
        """(N, 1, elements, 3): codes from the score to the windows below, at and above the threshold code."""
        windows = [self.trigger.window(kind) for kind in TRIGGER_KINDS]
        return np.stack([np.maximum(np.maximum(lo - scores, scores - hi), 0) for lo, hi in windows],
                        axis=-1)[:, None]

    def _block_report(self, values: dict, probes: dict) -> CoverageReport:
        n = len(values[self.manifest.input.name])
        if n == 0:
            return CoverageReport(self.manifest.name, self.manifest.content_hash, self.bin_ids, self.trigger)
        casts = np.zeros(len(self.bins), dtype=np.int64)
        hits = np.zeros(len(self.bins), dtype=np.int64)
        overflows = {}
        for name, probe in probes.items():
            layer_casts, layer_hits, overflows[name] = _reduce(probe)
            if name in self._selection:
                where, site, element, kind = self._selection[name]
                casts[where], hits[where] = layer_casts[site, element, kind], layer_hits[site, element, kind]
        layers = {}
        for layer, _ in self._steps:
            codes = values[layer.name]
            layers[layer.name] = LayerStats(
                codes.min(axis=0), codes.max(axis=0),
                int((codes == layer.result.min_code).any(axis=1).sum()),
                int((codes == layer.result.max_code).any(axis=1).sum()), *overflows[layer.name])
        return CoverageReport(self.manifest.name, self.manifest.content_hash, self.bin_ids, self.trigger, n,
                              casts, hits, layers)
