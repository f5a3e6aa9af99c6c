"""Guided search for input events that reach objectives (bins, code targets) no data event reached.

Every objective keeps a pool of the nearest events found so far (by `InstrumentedEmulator.distances`); each round
mutates events of the pools of a batch of objectives (a few input codes moved by a power of two, set to a random
code, an end of the range, zero, or a seed event's code; always within the input type's range), and each objective
keeps the nearest of its pool and all the children, a child before an event as near (a step along a plateau). When
the nearest has not come closer for `patience` rounds, the worse half of the pool restarts from random seed events.
A pool of one is a hill climb with restarts, quick up a slope; a larger pool keeps the second-best routes, and
reaches conditions at the end of narrow ridges the climb leaves (targeted stimuli use it for what the climb left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .instrumented import InstrumentedEmulator


@dataclass(frozen=True)
class SearchBudget:
    """`events` evaluated at most; `batch` events per round, at least `children` per objective; `pool` events kept
    per objective; restart after `patience` rounds without progress; `prove_seconds`: the time limit of one
    mixed-integer bound or witness (relaxation.py; 0: linear programs only); `mutant_seconds`: that of one program
    proving a mutant equivalent (None: `prove_seconds`), `solvers` such programs solved at once (threads); `focus`:
    events a last search spends on each condition still open, alone (targeted_stimuli; 0: none)."""

    events: int = 1 << 18
    batch: int = 4096
    children: int = 16
    patience: int = 12
    prove_seconds: float = 30.0
    pool: int = 1
    focus: int = 0
    mutant_seconds: float | None = None
    solvers: int = 1

    @property
    def equivalence_seconds(self) -> float:
        """The time limit of one program proving a mutant equivalent."""
        return self.prove_seconds if self.mutant_seconds is None else self.mutant_seconds


def guided_search(oracle: InstrumentedEmulator, objectives: list, seeds: np.ndarray,
                  budget: SearchBudget = SearchBudget(), seed: int = 0) -> dict:
    """{objective index: an event (input codes) that reaches it} for the objectives (see
    InstrumentedEmulator.distances) the search reaches from `seeds` (N, n_in) within the budget; objectives that are
    one condition (the copies of an element) are searched once."""
    keys = [condition_key(o) for o in objectives]
    first_of = {}  # condition -> the index of its first objective
    for k, key in enumerate(keys):
        first_of.setdefault(key, k)
    if len(first_of) < len(objectives):
        reached = guided_search(oracle, [objectives[k] for k in first_of.values()], seeds, budget, seed)
        column = {key: j for j, key in enumerate(first_of)}
        return {k: reached[column[key]].copy() for k, key in enumerate(keys) if column[key] in reached}
    rng = np.random.default_rng(seed)
    seeds = np.unique(np.asarray(seeds, dtype=np.int64), axis=0)
    first = oracle.distances(seeds, objectives)
    size = min(budget.pool, len(seeds))
    chosen = np.argsort(first, axis=0, kind="stable")[:size].T  # (objectives, pool): the nearest seeds
    pool, distance = seeds[chosen], np.take_along_axis(first.T, chosen, 1)  # each pool nearest first
    found = {int(k): pool[k, 0].copy() for k in np.flatnonzero(distance[:, 0] == 0)}
    stuck = np.zeros(len(objectives), dtype=np.int64)
    spent = len(seeds)
    moves = Moves(oracle.manifest.input.type, seeds, rng)
    while spent < budget.events:
        open_ = np.flatnonzero(distance[:, 0] > 0)
        if not len(open_):
            break
        active = rng.permutation(open_)[:max(1, budget.batch // budget.children)]
        parents = np.repeat(active, max(budget.children, budget.batch // len(active)))  # a full batch
        children = moves(pool[parents, rng.integers(size, size=len(parents))])
        d = oracle.distances(children, [objectives[k] for k in open_])
        spent += len(children)
        merged = np.concatenate([d, distance[open_].T])  # children first: on a tie, a child (a step along a plateau)
        keep = np.argsort(merged, axis=0, kind="stable")[:size].T  # (open objectives, pool)
        nearest = np.take_along_axis(merged.T, keep, 1)
        progress = nearest[:, 0] < distance[open_, 0]
        stuck[open_] = np.where(progress, 0, stuck[open_] + np.isin(open_, active))
        child = keep < len(children)
        pool[open_] = np.where(child[..., None], children[np.minimum(keep, len(children) - 1)],
                               pool[open_[:, None], np.maximum(keep - len(children), 0)])
        distance[open_] = nearest
        for k in open_[nearest[:, 0] == 0]:
            found[int(k)] = pool[k, 0].copy()
        for k in open_[(nearest[:, 0] > 0) & (stuck[open_] > budget.patience)]:  # the worse half restarts
            restart = rng.integers(len(seeds), size=size - size // 2)
            pool[k, size // 2:], distance[k, size // 2:] = seeds[restart], first[restart, k]
            order = np.argsort(distance[k], kind="stable")
            pool[k], distance[k], stuck[k] = pool[k][order], distance[k][order], 0
    return found


def condition_key(objective) -> object:
    """Equal for objectives that are one condition (a bin id, or the key of a code target shared by copies)."""
    return objective if isinstance(objective, str) else objective.key


def threshold_crossings(oracle: InstrumentedEmulator, events: np.ndarray, pairs: int = 512,
                        seed: int = 0) -> np.ndarray:
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
