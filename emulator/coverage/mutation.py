"""Mutation score: which mutants (mutants.py) a set of events tells apart from the original model, and a search for
events that tell apart the ones the events miss.

A mutant is distinguished by an event when any output code differs from the original's on it (for a threshold
mutant: when the trigger decision differs). The search for a survivor starts from the events given and keeps the
children whose difference from the original reaches deeper into the model (the last layer whose codes differ, then
how many of its codes differ) until an output differs; a threshold mutant's is a search for the one score code at
which the decisions differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emulator.emulator import Emulator
from emulator.manifest import Manifest

from .bins import Trigger
from .instrumented import InstrumentedEmulator
from .mutants import Mutant
from .preimages import CodeTarget
from .search import Moves, SearchBudget, guided_search


@dataclass
class Score:
    """Per mutant name, the first event of each event set that distinguishes it (or None); the mutants themselves."""

    mutants: list
    first: dict = field(default_factory=dict)  # event set -> {mutant name: event index or None}

    def distinguished(self, *sets) -> list:
        """Names of the mutants distinguished by any of the event sets named."""
        return [m.name for m in self.mutants
                if any(self.first[s].get(m.name) is not None for s in sets)]

    def summary(self, *sets) -> dict:
        """{distinguished, equivalent, survived, total, score}: score = distinguished / non-equivalent mutants."""
        equivalent = [m.name for m in self.mutants if m.equivalent]
        hit = self.distinguished(*sets)
        live = len(self.mutants) - len(equivalent)
        return {"distinguished": len(hit), "equivalent": len(equivalent), "survived": live - len(hit),
                "total": len(self.mutants), "score": len(hit) / live if live else 1.0}


def distinguishing(manifest: Manifest, mutant: Mutant, codes: np.ndarray, trigger: Trigger | None,
                   reference: dict | None = None) -> np.ndarray:
    """(N,) bool: the events on which `mutant` gives other outputs (or trigger decisions) than the original."""
    reference = reference or Emulator(manifest).predict_codes(codes).codes
    if mutant.kind == "threshold":
        score = reference[trigger.output][:, 0]
        return (score > trigger.code) != (score > mutant.threshold)
    observed = Emulator(mutant.manifest).predict_codes(codes).codes
    return np.any([(observed[name] != reference[name]).any(axis=1) for name in manifest.outputs], axis=0)


def score(manifest: Manifest, mutants: list, event_sets: dict, trigger: Trigger | None) -> Score:
    """Which event of each set ({name: (N, n_in) codes}) first distinguishes each non-equivalent mutant."""
    result = Score(list(mutants))
    for set_name, codes in event_sets.items():
        firsts = {}
        reference = Emulator(manifest).predict_codes(codes).codes if len(codes) else None
        for m in mutants:
            if m.equivalent or not len(codes):
                firsts[m.name] = None
                continue
            hits = np.flatnonzero(distinguishing(manifest, m, codes, trigger, reference))
            firsts[m.name] = int(hits[0]) if len(hits) else None
        result.first[set_name] = firsts
    return result


def kill(manifest: Manifest, mutant: Mutant, seeds: np.ndarray, trigger: Trigger | None,
         budget: SearchBudget = SearchBudget(), seed: int = 0):
    """An event (input codes) that distinguishes `mutant`, searched from `seeds`, or None within the budget."""
    if mutant.kind == "threshold":
        code = mutant.threshold if mutant.threshold > trigger.code else trigger.code
        target = CodeTarget(trigger.output, 0, np.array([code]), np.array([code]))
        found = guided_search(InstrumentedEmulator(manifest), [target], seeds, budget, seed)
        return found.get(0)
    original, changed = Emulator(manifest), Emulator(mutant.manifest)
    order = [layer.name for layer in manifest.layers]
    rng = np.random.default_rng(seed)
    moves = Moves(manifest.input.type, seeds, rng)

    def depth(events):
        a, b = original.trace_codes(events), changed.trace_codes(events)
        out = np.zeros(len(events), dtype=np.int64)
        for k, name in enumerate(order):
            differ = (a[name] != b[name]).sum(axis=1)
            out = np.where(differ > 0, k * (1 << 20) + np.minimum(differ, (1 << 20) - 1), out)
        output = np.any([(a[n] != b[n]).any(axis=1) for n in manifest.outputs], axis=0)
        return np.where(output, np.iinfo(np.int64).max, out)

    population = np.unique(np.asarray(seeds, dtype=np.int64), axis=0)
    value = depth(population)
    spent = len(population)
    keep = max(1, budget.batch // budget.children)
    while True:
        best = np.argsort(-value, kind="stable")[:keep]
        if value[best[0]] == np.iinfo(np.int64).max:
            return population[best[0]].copy()
        if spent >= budget.events:
            return None
        children = moves(np.repeat(population[best], budget.children, axis=0))
        spent += len(children)
        population = np.concatenate([population[best], children])
        value = np.concatenate([value[best], depth(children)])
