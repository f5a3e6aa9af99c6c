"""Bins of element-local layers as conditions on one code upstream, found by trying every code the enclosure allows.

Each output element of an element-local layer (batchnorm, relu, leaky_relu, linear, reshape, zeropad2d,
upsampling2d) is a function of one element of its input, so along a chain of them, of one element of the chain's
anchor: the nearest tensor upstream that is not element-local (the model input, or a dense, convolution, pooling or
head layer). For every code of that anchor element that the interval enclosure allows (the whole input type for the
model input), the chain is run once; the codes that reach a bin make a `CodeTarget` on the anchor, and a bin that
no code reaches is proved unreachable, exhaustively.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.manifest import Manifest, Tensor

from .affine import ELEMENT_LOCAL, element_source
from .bins import TRIGGER_SITE
from .instrumented import InstrumentedEmulator
from .intervals import Enclosure

SWEEP_LIMIT = 1 << 20
"""Most anchor codes tried for one chain; bins of longer sweeps are left to the search, untranslated."""
_CHUNK = 4096
_RUNS_PER_CHUNK = 64  # runs of codes kept per bin and chunk (evenly spread): the targets stay small


@dataclass(frozen=True)
class CodeTarget:
    """Reached when element `element` of tensor `layer` holds a code in one of the closed runs [starts[k], ends[k]]
    (sorted, disjoint)."""

    layer: str
    element: int
    starts: np.ndarray
    ends: np.ndarray

    def distance(self, codes) -> np.ndarray:
        """Codes from each of `codes` to the nearest code of the target (0 inside it)."""
        codes = np.asarray(codes, dtype=np.int64)
        k = np.searchsorted(self.starts, codes, side="right") - 1
        below = np.where(k >= 0, codes - self.ends[np.maximum(k, 0)], np.iinfo(np.int64).max)
        above = np.where(k + 1 < len(self.starts), self.starts[np.minimum(k + 1, len(self.starts) - 1)] - codes,
                         np.iinfo(np.int64).max)
        return np.maximum(np.minimum(below, above), 0)

    @property
    def key(self) -> tuple:
        """Equal for targets that are the same condition (copies of an element share one)."""
        return self.layer, self.element, self.starts.tobytes(), self.ends.tobytes()

    def nearest(self, code: int) -> int:
        """The code of the target nearest to `code`."""
        k = int(np.argmin(np.maximum(np.maximum(self.starts - code, code - self.ends), 0)))
        return int(np.clip(code, self.starts[k], self.ends[k]))


def element_sources(manifest: Manifest) -> dict:
    """{element-local layer: (anchor tensor name, per output element the anchor element it is a function of, -1 for
    a constant)}."""
    chains = {}
    for layer in manifest.layers:
        if layer.op not in ELEMENT_LOCAL:
            continue
        own = element_source(layer)
        parent = layer.inputs[0]
        if parent in chains:
            anchor, above = chains[parent]
            own = np.where(own >= 0, above[np.maximum(own, 0)], -1)
        else:
            anchor = parent
        chains[layer.name] = (anchor, own.astype(np.int64))
    return chains


def translate(manifest: Manifest, bin_ids, enclosure: Enclosure | None = None) -> tuple:
    """({bin id: CodeTarget on its anchor}, {bin id: proof}) for the bins of `bin_ids` at element-local layers whose
    chain sweep fits SWEEP_LIMIT; other bins are in neither."""
    enclosure = enclosure or Enclosure(manifest)
    chains = element_sources(manifest)
    groups = {}
    for bin_id in bin_ids:
        layer, site, element, _ = bin_id.split("/")
        if layer in chains and site != TRIGGER_SITE:
            anchor, source = chains[layer]
            if source[int(element)] >= 0:
                groups.setdefault(anchor, []).append((bin_id, int(source[int(element)])))
    targets, proofs = {}, {}
    for anchor, wanted in groups.items():
        lo, hi = enclosure.outputs[anchor]
        first = min(int(lo[e]) for _, e in wanted)
        last = max(int(hi[e]) for _, e in wanted)
        if last - first + 1 > SWEEP_LIMIT:
            continue
        runs = _sweep(manifest, anchor, [layer for layer, (a, _) in chains.items() if a == anchor], wanted,
                      first, last, lo, hi)
        where = "input" if anchor == manifest.input.name else "output"
        for (bin_id, e), (starts, ends) in zip(wanted, runs):
            if len(starts):
                targets[bin_id] = CodeTarget(anchor, e, starts, ends)
            else:
                proofs[bin_id] = (f"exhaustive: none of the codes [{lo[e]}, {hi[e]}] that {where} {anchor!r} element "
                                  f"{e} can hold (interval analysis) reaches it")
    return targets, proofs


def _sweep(manifest: Manifest, anchor: str, names: list, wanted: list, first: int, last: int, lo, hi) -> list:
    """Per wanted (bin id, anchor element): the runs (starts, ends) of anchor codes in [lo, hi] of that element that
    reach the bin, trying every code of [first, last] at every anchor element at once (at most _RUNS_PER_CHUNK runs
    per chunk of codes, evenly spread, are kept)."""
    layers = [layer for layer in manifest.layers if layer.name in names]
    chain = Manifest(f"{manifest.name}:{anchor}",
                     [Tensor(anchor, manifest.producer_shape(anchor), manifest.producer_type(anchor))], layers, names)
    oracle = InstrumentedEmulator(chain)
    ids = [bin_id for bin_id, _ in wanted]
    elements = np.array([e for _, e in wanted])
    b_lo, b_hi = lo[elements], hi[elements]
    starts, ends = [[] for _ in wanted], [[] for _ in wanted]
    for begin in range(first, last + 1, _CHUNK):
        codes = np.arange(begin, min(begin + _CHUNK, last + 1), dtype=np.int64)
        hits = oracle.bin_hits(np.repeat(codes[:, None], chain.input.size, axis=1), ids)
        hits &= (codes[:, None] >= b_lo) & (codes[:, None] <= b_hi)
        edges = np.diff(np.pad(hits, ((1, 1), (0, 0))).astype(np.int8), axis=0)
        cols, rows = np.nonzero(edges.T)  # column-major: each bin's edges in code order, opening then closing
        for col, span in zip(*_groups(cols)):
            r = rows[span]
            opened, closed = codes[r[0::2]], codes[r[1::2] - 1]
            keep = np.unique(np.linspace(0, len(opened) - 1, min(len(opened), _RUNS_PER_CHUNK)).astype(int))
            starts[col].append(opened[keep])
            ends[col].append(closed[keep])
    return [_merged(s, e) for s, e in zip(starts, ends)]


def _merged(starts: list, ends: list) -> tuple:
    """Runs as two arrays, runs that touch (a chunk boundary cut them) joined."""
    if not starts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    s, e = np.concatenate(starts), np.concatenate(ends)
    joined = np.r_[False, s[1:] == e[:-1] + 1]
    return s[~joined], e[np.r_[~joined[1:], True]]


def _groups(sorted_keys: np.ndarray):
    """(keys, slices): the distinct values of a sorted array and the slice of each."""
    if not len(sorted_keys):
        return [], []
    edges = np.flatnonzero(np.diff(sorted_keys)) + 1
    begins, stops = np.r_[0, edges], np.r_[edges, len(sorted_keys)]
    return sorted_keys[begins].tolist(), [slice(a, b) for a, b in zip(begins, stops)]
