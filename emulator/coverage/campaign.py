"""A coverage campaign: count the bins over the user's events (block by block), note the events near the trigger
threshold and which data event first distinguishes each mutant; then generate targeted events for the empty bins,
prove the rest unreachable where possible, and score the mutants on the data alone and on data plus targeted
events (searching for events that distinguish the survivors).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from emulator.manifest import Manifest

from .bins import Trigger
from .instrumented import InstrumentedEmulator
from .intervals import Enclosure
from .mutants import mutants
from .mutation import Score, distinguishing, kill, score
from .profile import precision_profile
from .report import CoverageReport
from .search import SearchBudget
from .stimuli import SEEDS, Stimuli, targeted_stimuli

BOUNDARY_LIMIT = 1000
"""Data events near the threshold listed in the result (all are counted)."""


@dataclass
class Result:
    """What a campaign found: the data's coverage, the targeted events and why, the mutation scores."""

    report: CoverageReport
    stimuli: Stimuli
    targeted: np.ndarray  # (M, n_in) input codes: the stimuli's events, then events found to kill mutants
    killers: dict  # mutant name -> row of `targeted` found to distinguish it
    score: Score  # event sets "data" and "targeted"
    boundary: list  # (global data event, score code) near the threshold, at most BOUNDARY_LIMIT
    seconds: dict = field(default_factory=dict)

    @property
    def bins(self) -> dict:
        """Bin id -> "data", "targeted", "unreachable" or "missed"."""
        state = {b: "data" for b, h in zip(self.report.bin_ids, self.report.hits) if h}
        state.update({b: "targeted" for b in self.stimuli.found})
        state.update({b: "unreachable" for b in self.stimuli.unreachable})
        state.update({b: "missed" for b in self.stimuli.missed})
        return state

    def counts(self) -> dict:
        """{hit, unreachable, missed, total} over all bins (hit by data or targeted events)."""
        tally = Counter(self.bins.values())
        return {"hit": tally["data"] + tally["targeted"], "hit_by_data": tally["data"],
                "hit_by_targeted": tally["targeted"], "unreachable": tally["unreachable"], "missed": tally["missed"],
                "total": len(self.report.bin_ids)}

    def classes(self) -> dict:
        """Per bin class (the bin kind): {hit, unreachable, missed}."""
        table = {}
        for bin_id, state in self.bins.items():
            row = table.setdefault(bin_id.rsplit("/", 1)[1], {"hit": 0, "unreachable": 0, "missed": 0})
            row["hit" if state in ("data", "targeted") else state] += 1
        return dict(sorted(table.items()))

    def summary_line(self) -> str:
        c = self.counts()
        data, both = self.score.summary("data"), self.score.summary("data", "targeted")
        return (f"coverage: {c['hit']} bins hit ({c['hit_by_targeted']} by targeted events) / {c['unreachable']} "
                f"unreachable / {c['missed']} missed of {c['total']}; mutation score {both['distinguished']}/"
                f"{both['distinguished'] + both['survived']} with targeted events ({data['distinguished']} by data "
                f"alone), {both['equivalent']} equivalent")


class Campaign:
    """Feed the data events with `add`, block by block, then `finish`."""

    def __init__(self, manifest: Manifest, trigger: Trigger | None = None, budget: SearchBudget = SearchBudget(),
                 seed: int = 0):
        self.manifest, self.trigger, self.budget, self.seed = manifest, trigger, budget, seed
        self.emulator = InstrumentedEmulator(manifest, trigger)
        self.enclosure = Enclosure(manifest)
        self.mutants = mutants(manifest, trigger, self.enclosure)
        self.report = CoverageReport(manifest.name, manifest.content_hash, self.emulator.bin_ids, trigger)
        self.first = {m.name: None for m in self.mutants}
        self.sample = []
        self.boundary = []
        self.seen = 0
        self.seconds = Counter()

    def add(self, codes: np.ndarray) -> None:
        """Count the bins over a block of data events (input codes), in the order the events come."""
        started = time.perf_counter()
        covered = self.emulator.cover_codes(codes)
        self.report += covered.report
        self.seconds["coverage"] += time.perf_counter() - started
        started = time.perf_counter()
        reference = covered.outputs
        for m in self.mutants:
            if self.first[m.name] is None and not m.equivalent:
                hits = np.flatnonzero(distinguishing(self.manifest, m, codes, self.trigger, reference))
                self.first[m.name] = self.seen + int(hits[0]) if len(hits) else None
        self.seconds["mutants on data"] += time.perf_counter() - started
        if self.trigger is not None:
            scores = reference[self.trigger.output][:, 0]
            near = np.flatnonzero(np.abs(scores - self.trigger.code) <= self.trigger.k)
            self.boundary += [(self.seen + int(i), int(scores[i])) for i in near[:BOUNDARY_LIMIT - len(self.boundary)]]
        room = SEEDS - sum(len(s) for s in self.sample)
        if room > 0:
            self.sample.append(np.asarray(codes[:room]))
        self.seen += len(codes)

    def finish(self, log=lambda message: None) -> Result:
        """Targeted events for the empty bins, proofs for the unreachable ones, and the mutation scores; `log` hears
        of each stage as it starts."""
        empty = self.report.empty()
        log(f"coverage: targeted events and proofs for {len(empty)} empty bins")
        started = time.perf_counter()
        sample = np.concatenate(self.sample) if self.sample else None
        stimuli = targeted_stimuli(self.manifest, empty, sample, self.trigger, self.budget, self.seed,
                                   self.enclosure)
        self.seconds["targeted stimuli"] += time.perf_counter() - started
        log(f"coverage: mutants: proofs of equivalence (up to {self.budget.equivalence_seconds:g} s per program), "
            f"then events that tell the survivors apart")
        started = time.perf_counter()
        refined = Enclosure(self.manifest, refined=self.enclosure)  # the programs' bounds, carried downstream
        final = mutants(self.manifest, self.trigger, refined, stimuli.unreachable,
                        self.budget.equivalence_seconds, self.budget.solvers,
                        lambda message: log(f"coverage: mutants: {message}"))
        targeted = stimuli.events().reshape(-1, self.manifest.input.size)
        result = score(self.manifest, final, {"targeted": targeted}, self.trigger)
        result.first["data"] = {m.name: None if m.equivalent else self.first[m.name] for m in final}
        killers = {}
        parts = [part for part in (sample, targeted) if part is not None and len(part)]
        seeds = np.concatenate(parts) if parts else np.zeros((1, self.manifest.input.size), dtype=np.int64)
        for m in final:
            if m.equivalent or m.name in result.distinguished("data", "targeted"):
                continue
            event = kill(self.emulator, m, seeds, self.budget, self.seed)
            if event is not None:
                killers[m.name] = len(targeted)
                result.first["targeted"][m.name] = len(targeted)
                targeted = np.concatenate([targeted, event[None]])
        stimuli.credit(self.emulator, targeted[sorted(killers.values())])  # a mutant's event may reach missed bins
        self.seconds["mutation"] += time.perf_counter() - started
        return Result(self.report, stimuli, targeted, killers, result, self.boundary, dict(self.seconds))

    def profile(self):
        """The precision profile of the data seen so far."""
        return precision_profile(self.manifest, self.report)


def run(manifest: Manifest, codes: np.ndarray, trigger: Trigger | None = None, budget: SearchBudget = SearchBudget(),
        seed: int = 0, block: int = 1 << 16) -> Result:
    """A whole campaign over data events `codes` (input codes), in blocks."""
    campaign = Campaign(manifest, trigger, budget, seed)
    for start in range(0, len(codes), block):
        campaign.add(codes[start:start + block])
    return campaign.finish()


__all__ = ["BOUNDARY_LIMIT", "Campaign", "Result", "run"]
