"""Verify one shard: read its events, put them through the firmware's input type, run every path and the
determinism re-run, compare every output code and trigger decision against the reference, and locate the first
difference with the per-layer traces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.emulator import InputError, quantize_events
from emulator.manifest import Manifest
from models.data import DataError

from .mismatch import layer_differences, locate
from .paths import BackendError, EmulatorBackend, PathRun
from .results import DETERMINISM, Difference, PathStats, ShardResult
from .sources import Shard

PATH_ORDER = ("emulator", "csim", "rtl", DETERMINISM)


@dataclass(frozen=True)
class ShardSettings:
    """What every shard is checked with: the reference path, the threshold code and score output, the number of
    test-vector events, and the seed of the determinism re-run's event order."""

    reference: str
    threshold: int | None
    score_output: str | None
    n_vectors: int
    seed: int


def input_codes(events: np.ndarray, manifest: Manifest, first: int) -> np.ndarray:
    """Float events (n, ...) -> (n, n_in) codes of the model's input type, with its rounding and overflow.
    DataError, naming the events by global index (`first` is the shard's first), for a wrong shape or values
    NaN/infinite."""
    try:
        return quantize_events(events, manifest.input, first)
    except InputError as exc:
        raise DataError(str(exc)) from None


def compare(expected: dict, observed: dict, outputs: list):
    """(per-event differ mask, number of differing codes, first (event, output, element) or None)."""
    n = len(next(iter(expected.values())))
    differ = np.zeros(n, dtype=bool)
    count = 0
    first = None
    for name in outputs:
        mask = expected[name] != observed[name]
        count += int(mask.sum())
        differ |= mask.any(axis=1)
        hits = np.argwhere(mask)
        if len(hits) and (first is None or hits[0][0] < first[0]):
            first = (int(hits[0][0]), name, int(hits[0][1]))
    return differ, count, first


def _checked_outputs(name: str, run: PathRun, manifest: Manifest, n: int) -> None:
    for output in manifest.outputs:
        want = (n, manifest.layer(output).size)
        got = run.codes.get(output)
        if got is None or got.shape != want:
            raise BackendError(f"the {name} path returned {None if got is None else got.shape} codes for output "
                               f"{output!r}, expected {want} (outputs: {sorted(run.codes)})")


def _determinism_run(second: EmulatorBackend, codes: np.ndarray, seed: int, shard: Shard) -> PathRun:
    """The second emulator run on the events in shuffled order, put back in event order."""
    order = np.random.default_rng([seed, shard.start]).permutation(len(codes))
    run = second.run(codes[order])
    unshuffled = {}
    for name, out in run.codes.items():
        back = np.empty_like(out)
        back[order] = out
        unshuffled[name] = back
    return PathRun(unshuffled, run.seconds)


def verify_shard(shard: Shard, source, manifest: Manifest, backends: dict, second: EmulatorBackend | None,
                 settings: ShardSettings) -> ShardResult:
    """Verify the events of `shard` on `backends` ({path name: Backend}, the emulator included) and, if `second`
    is given, the determinism re-run of the emulator."""
    codes = input_codes(source.read(shard), manifest, shard.start)
    n = len(codes)
    runs = {name: backends[name].run(codes) for name in PATH_ORDER if name in backends}
    for name, run in runs.items():
        _checked_outputs(name, run, manifest, n)
    traced = dict(backends)
    pairs = [(name, settings.reference) for name in runs if name != settings.reference]
    if second is not None:
        runs[DETERMINISM] = _determinism_run(second, codes, settings.seed, shard)
        traced[DETERMINISM] = second
        pairs.append((DETERMINISM, "emulator"))
    reference = runs[settings.reference]

    paths = {settings.reference: _stats(reference, reference, settings, n)}
    candidates, differ_by_path = [], {}
    for name, against in pairs:
        differ, count, first = compare(runs[against].codes, runs[name].codes, manifest.outputs)
        stats = _stats(runs[name], runs[against], settings, n)
        stats.differing_events, stats.differing_codes = int(differ.sum()), count
        paths[name] = stats
        differ_by_path[name] = differ
        if first is not None:
            event, output, element = first
            candidates.append(Difference(
                shard.start + event, name, against, output, element, int(runs[against].codes[output][event, element]),
                int(runs[name].codes[output][event, element]), str(manifest.layer(output).result)))
    first = min(candidates, key=lambda d: d.order(PATH_ORDER)) if candidates else None
    if first is not None:
        first = _located(first, codes[first.event - shard.start:first.event - shard.start + 1], manifest, traced)

    layer_diffs = {}
    if {"emulator", "csim"} <= set(backends) and differ_by_path.get("emulator", np.zeros(0, bool)).any():
        events = codes[differ_by_path["emulator"]]
        layer_diffs = layer_differences(manifest, backends["csim"].trace(events), backends["emulator"].trace(events))

    k = int(np.clip(settings.n_vectors - shard.start, 0, n))
    scores = None if settings.score_output is None else reference.codes[settings.score_output][:, 0].copy()
    return ShardResult(shard, settings.reference, {name: paths[name] for name in PATH_ORDER if name in paths}, first,
                       layer_diffs, scores, codes[:k].copy(),
                       {name: out[:k].copy() for name, out in reference.codes.items()})


def _stats(run: PathRun, against: PathRun, settings: ShardSettings, n: int) -> PathStats:
    stats = PathStats(events=n, seconds=run.seconds, latency_cycles=run.latency_cycles, ii_cycles=run.ii_cycles)
    if settings.score_output is not None and settings.threshold is not None:
        fires = run.codes[settings.score_output][:, 0] > settings.threshold
        expected = against.codes[settings.score_output][:, 0] > settings.threshold
        stats.triggered = int(fires.sum())
        stats.decision_disagreements = int((fires != expected).sum())
    return stats


def _located(first: Difference, event_codes: np.ndarray, manifest: Manifest, traced: dict) -> Difference:
    """`first` with the first differing layer and neuron, from the traces of its two paths (or, for a path without
    traces, a note on whether the emulator and the C-sim agree at every layer of that event)."""
    pair = (first.reference, first.path)
    if all(name in traced and traced[name].has_trace for name in pair):
        expected, observed = (traced[name].trace(event_codes) for name in pair)
        where = locate(manifest, expected, observed, tuple(_label(name) for name in pair))
        note = "" if where is not None else (f"the traces of {pair[0]} and {_label(pair[1])} agree at every traced "
                                             f"layer of this event; the difference is at the output only")
        return _with(first, where, note)
    if {"emulator", "csim"} <= set(traced):
        expected, observed = traced["csim"].trace(event_codes), traced["emulator"].trace(event_codes)
        where = locate(manifest, expected, observed, ("csim", "emulator"))
        if where is None:
            note = (f"the {first.path} path has no per-layer trace; the emulator and the C-sim agree at every traced "
                    f"layer of this event, so the difference arises in the {first.path} path")
        else:
            note = f"the {first.path} path has no per-layer trace; the emulator and the C-sim differ too (shown)"
        return _with(first, where, note)
    return _with(first, None, f"the {first.path} path has no per-layer trace and only one traced path ran")


def _label(name: str) -> str:
    return "emulator, 2nd run" if name == DETERMINISM else name


def _with(first: Difference, where, note: str) -> Difference:
    return Difference(first.event, first.path, first.reference, first.output, first.element, first.expected,
                      first.observed, first.type, where, note)


__all__ = ["PATH_ORDER", "ShardSettings", "compare", "input_codes", "verify_shard"]
