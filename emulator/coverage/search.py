"""Guided search for input events that reach objectives (bins, code targets) no data event reached.

Every objective keeps the nearest event found so far (by `InstrumentedEmulator.distances`); each round mutates the
nearest events of a batch of objectives (a few input codes moved by a power of two, set to a random code, an end of
the range, zero, or a seed event's code; always within the input type's range) and keeps any child that comes
closer to any objective, or as close (a step along a plateau). An objective stuck for `patience` rounds restarts from
a random seed event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .instrumented import InstrumentedEmulator


@dataclass(frozen=True)
class SearchBudget:
    """`events` evaluated at most; `batch` events per round, `children` per objective; restart after `patience`
    rounds without progress; `prove_seconds`: the time limit of one mixed-integer bound or witness (relaxation.py;
    0: linear programs only)."""

    events: int = 1 << 18
    batch: int = 4096
    children: int = 16
    patience: int = 12
    prove_seconds: float = 30.0


def guided_search(oracle: InstrumentedEmulator, objectives: list, seeds: np.ndarray, budget: SearchBudget = SearchBudget(),
                  seed: int = 0) -> dict:
    """{objective index: an event (input codes) that reaches it} for the objectives (see
    InstrumentedEmulator.distances) the search reaches from `seeds` (N, n_in) within the budget; objectives that are
    one condition (the copies of an element) are searched once."""
    keys = [o if isinstance(o, str) else o.key for o in objectives]
    first = {}  # condition -> the index of its first objective
    for k, key in enumerate(keys):
        first.setdefault(key, k)
    if len(first) < len(objectives):
        reached = guided_search(oracle, [objectives[k] for k in first.values()], seeds, budget, seed)
        column = {key: j for j, key in enumerate(first)}
        return {k: reached[column[key]].copy() for k, key in enumerate(keys) if column[key] in reached}
    rng = np.random.default_rng(seed)
    seeds = np.unique(np.asarray(seeds, dtype=np.int64), axis=0)
    first = oracle.distances(seeds, objectives)
    nearest = seeds[np.argmin(first, axis=0)].copy()
    distance = first.min(axis=0)
    found = {int(k): nearest[k].copy() for k in np.flatnonzero(distance == 0)}
    stuck = np.zeros(len(objectives), dtype=np.int64)
    spent = len(seeds)
    moves = Moves(oracle.manifest.input.type, seeds, rng)
    while spent < budget.events:
        open_ = np.flatnonzero(distance > 0)
        if not len(open_):
            break
        active = rng.permutation(open_)[:max(1, budget.batch // budget.children)]
        parents = np.repeat(active, budget.children)
        children = moves(nearest[parents])
        d = oracle.distances(children, [objectives[k] for k in open_])
        spent += len(children)
        best = np.argmin(d, axis=0)
        closest = d[best, np.arange(len(open_))]
        better = closest < distance[open_]
        for column in np.flatnonzero(better):
            k = open_[column]
            nearest[k], distance[k], stuck[k] = children[best[column]], closest[column], 0
            if distance[k] == 0:
                found[int(k)] = nearest[k].copy()
        own = {int(k): i for i, k in enumerate(open_)}
        for k in active[~better[[own[int(k)] for k in active]]]:
            column = own[int(k)]
            mine = np.flatnonzero((parents == k) & (d[:, column] == distance[k]))
            if len(mine):
                nearest[k] = children[rng.choice(mine)]
            stuck[k] += 1
            if stuck[k] > budget.patience:
                restart = rng.integers(len(seeds))
                nearest[k], distance[k], stuck[k] = seeds[restart], first[restart, k], 0
    return found


def threshold_crossings(oracle: InstrumentedEmulator, events: np.ndarray, pairs: int = 512, seed: int = 0) -> np.ndarray:
    """(2 * pairs or none, n_in) input codes, in pairs that differ by one code of one input and fall on either side
    of the trigger threshold: from an event below and one above it, the inputs of one are set to the other's one at
    a time until the decision flips, then that input is bisected down to adjacent codes. Their scores lie as near
    the threshold as one input code apart allows."""
    trigger = oracle.trigger
    events = np.asarray(events, dtype=np.int64)

    def fires(codes):
        return oracle.predict_codes(codes).codes[trigger.output][:, 0] > trigger.code

    side = fires(events)
    if side.all() or not side.any():
        return np.zeros((0, events.shape[1]), dtype=np.int64)
    rng = np.random.default_rng(seed)
    below = events[~side][rng.integers((~side).sum(), size=pairs)]
    above = events[side][rng.integers(side.sum(), size=pairs)]
    n, size = below.shape
    rank = np.argsort(rng.random((n, size)), axis=1)  # per pair, when each input takes the other event's code
    steps = np.arange(1, size + 1)[:, None, None]
    walked = fires(np.where(rank[None] < steps, above[None], below[None]).reshape(-1, size)).reshape(size, n)
    flip = np.argmax(walked, axis=0)  # the first step that fires: its input is the one to bisect
    rows = np.arange(n)
    column = np.argmax(rank == flip[:, None], axis=1)
    base = np.where(rank < flip[:, None], above, below)
    lo, hi = below[rows, column], above[rows, column]  # base with lo does not fire, with hi fires
    while (np.abs(hi - lo) > 1).any():
        mid = lo + (hi - lo) // 2
        probe = base.copy()
        probe[rows, column] = mid
        up = fires(probe)
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    pair = np.repeat(base, 2, axis=0)
    pair[np.repeat(rows, 2) * 2 + np.tile([0, 1], n), np.repeat(column, 2)] = np.stack([lo, hi], axis=1).ravel()
    return pair


class Moves:
    """Random coordinate moves on input codes of type `t`."""

    KINDS = np.array([0.55, 0.15, 0.1, 0.05, 0.15])  # power-of-two step, random code, range end, zero, seed's code

    def __init__(self, t, seeds: np.ndarray, rng):
        self.lo, self.hi, self.width = t.min_code, t.max_code, t.width
        self.seeds = seeds
        self.rng = rng

    def __call__(self, parents: np.ndarray) -> np.ndarray:
        rng = self.rng
        children = parents.copy()
        n, size = children.shape
        count = rng.choice([1, 1, 1, 2, 3], n)
        for r in range(3):
            rows = np.flatnonzero(count > r)
            cols = rng.integers(0, size, len(rows))
            kind = rng.choice(len(self.KINDS), len(rows), p=self.KINDS)
            step = rng.choice([-1, 1], len(rows)) << rng.integers(0, self.width, len(rows))
            choices = np.stack([
                children[rows, cols] + step,
                rng.integers(self.lo, self.hi + 1, len(rows)),
                rng.choice([self.lo, self.hi], len(rows)),
                np.zeros(len(rows), dtype=np.int64),
                self.seeds[rng.integers(len(self.seeds), size=len(rows)), cols],
            ])
            children[rows, cols] = np.clip(choices[kind, np.arange(len(rows))], self.lo, self.hi)
        return children
