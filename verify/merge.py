"""Merge shard results: counts add, timings add (latency and II: the largest), the first difference is the one with
the lowest global event index whatever order the shards finished in, and per-event data is concatenated in event
order. Shards must tile one range of events; merging is associative and merge([r]) == r.
"""

from __future__ import annotations

import numpy as np

from .results import PathStats, ShardResult
from .shard import PATH_ORDER
from .sources import Shard


class MergeError(ValueError):
    """Shard results that cannot be merged: gaps or overlaps between shards, or different references."""


def merge(results) -> ShardResult:
    """One ShardResult for the union of `results` (any order)."""
    results = sorted(results, key=lambda r: r.shard)
    if not results:
        raise MergeError("nothing to merge")
    for before, after in zip(results, results[1:]):
        if before.shard.stop != after.shard.start:
            raise MergeError(f"shards {before.shard} and {after.shard} do not tile one range of events")
    references = {r.reference for r in results}
    if len(references) != 1:
        raise MergeError(f"shards were checked against different references: {sorted(references)}")
    names = [name for name in PATH_ORDER if any(name in r.paths for r in results)]
    missing = [(r.shard, name) for r in results for name in names if name not in r.paths]
    if missing:
        raise MergeError(f"paths missing from some shards: {missing[:5]}")
    differences = [r.first for r in results if r.first is not None]
    layer_diffs = {}
    for r in results:
        for layer, diff in r.layer_diffs.items():
            layer_diffs[layer] = layer_diffs[layer].add(diff) if layer in layer_diffs else diff
    scores = None if results[0].scores is None else np.concatenate([r.scores for r in results])
    outputs = results[0].vector_outputs
    return ShardResult(
        shard=Shard(results[0].shard.start, results[-1].shard.stop),
        reference=results[0].reference,
        paths={name: _add([r.paths[name] for r in results]) for name in names},
        first=min(differences, key=lambda d: d.order(PATH_ORDER)) if differences else None,
        layer_diffs=layer_diffs,
        scores=scores,
        vector_inputs=np.concatenate([r.vector_inputs for r in results]),
        vector_outputs={name: np.concatenate([r.vector_outputs[name] for r in results]) for name in outputs},
    )


def _add(stats: list) -> PathStats:
    def total(field):
        values = [getattr(s, field) for s in stats]
        return None if any(v is None for v in values) else sum(values)

    def largest(field):
        values = [getattr(s, field) for s in stats if getattr(s, field) is not None]
        return max(values) if values else None

    return PathStats(
        events=sum(s.events for s in stats),
        differing_events=sum(s.differing_events for s in stats),
        differing_codes=sum(s.differing_codes for s in stats),
        decision_disagreements=total("decision_disagreements"),
        triggered=total("triggered"),
        seconds=sum(s.seconds for s in stats),
        latency_cycles=largest("latency_cycles"),
        ii_cycles=largest("ii_cycles"),
    )
