"""Mutation score: which mutants (mutants.py) a set of events tells apart from the original model, and a search for
events that tell apart the ones the events miss.

A mutant is distinguished by an event when any output code differs from the original's on it (for a threshold
mutant: when the trigger decision differs). The search for a survivor starts from the events given and keeps the
children whose difference from the original reaches deeper into the model (the last layer whose codes differ, then
how many of its codes differ) until an output differs; a threshold mutant's is a search for the one score code at
which the decisions differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from emulator.emulator import Emulator
from emulator.manifest import Manifest
from emulator.plan import plan_layer

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


def activation(oracle: InstrumentedEmulator, mutant: Mutant) -> list:
    """Objectives (bin ids of the original model, code targets) reached only by events on which the mutated
    arithmetic can differ from the original: the ties of a changed rounding, the overflows of a changed overflow
    mode or summation order, codes beyond a narrower type's range, the one score code where a threshold matters."""
    manifest, trigger = oracle.manifest, oracle.trigger
    if mutant.kind == "threshold":
        code = mutant.threshold if mutant.threshold > trigger.code else trigger.code
        return [CodeTarget(trigger.output, 0, np.array([code]), np.array([code]))]
    layer = manifest.layer(mutant.layer)
    if mutant.kind == "narrower":
        t, narrow = layer.result, mutant.manifest.layer(layer.name).result
        starts, ends = np.array([t.min_code, narrow.max_code + 1]), np.array([narrow.min_code - 1, t.max_code])
        keep = starts <= ends
        return [CodeTarget(layer.name, e, starts[keep], ends[keep]) for e in range(layer.size)]
    kinds = {"rounding": ("tie",), "overflow": ("sat_high", "sat_low", "wrap"),
             "sum_order": ("sat_high", "sat_low")}.get(mutant.kind, ())
    types = {site.name: site.type for site in plan_layer(layer, manifest).sites}
    if mutant.kind == "sum_order":
        wanted = lambda b: b.site in ("accum", "sum")  # noqa: E731
    else:
        wanted = lambda b: types[b.site] == layer.result  # noqa: E731
    return [b.id for b in oracle.bins if b.layer == layer.name and b.site in types and b.kind in kinds and wanted(b)]


def kill(oracle: InstrumentedEmulator, mutant: Mutant, seeds: np.ndarray, budget: SearchBudget = SearchBudget(),
         seed: int = 0):
    """An event (input codes) that distinguishes `mutant` from the model of `oracle` (whose trigger is the
    original's), or None within the budget: first events that activate the mutant, then children whose difference
    reaches deeper."""
    manifest, trigger = oracle.manifest, oracle.trigger
    objectives = activation(oracle, mutant)
    if objectives:
        half = dataclasses.replace(budget, events=budget.events // 2)
        found = guided_search(oracle, objectives, seeds, half, seed)
        if found:
            active = np.stack(list(found.values()))
            differ = np.flatnonzero(distinguishing(manifest, mutant, active, trigger))
            if len(differ):
                return active[differ[0]].copy()
            seeds = active
        elif mutant.kind == "threshold":
            return None
    if mutant.kind == "threshold":
        return None
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
        if spent >= budget.events // (2 if objectives else 1):
            return None
        children = moves(np.repeat(population[best], budget.children, axis=0))
        spent += len(children)
        population = np.concatenate([population[best], children])
        value = np.concatenate([value[best], depth(children)])
