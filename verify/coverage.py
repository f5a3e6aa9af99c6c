"""`verify --coverage`: what the events exercised, and the corners they missed.

The coverage campaign (emulator.coverage.campaign) runs over the same events as the certification, shard by shard;
its targeted events (for the empty bins, and for mutants the data did not distinguish) then go through every path
like the data events, are compared the same way, and are saved with the test vectors (vectors/targeted/). The
report gets a `coverage` section; coverage_bins.json lists every bin with its state (and proof, when
unreachable), precision_profile.png draws the precision profile.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulator.coverage import Trigger
from emulator.coverage.campaign import Campaign, Result
from emulator.coverage.profile import plot_profile, precision_profile
from emulator.coverage.search import SearchBudget

from .results import ShardResult
from .shard import input_codes, verify_shard
from .sources import Shard, split
from .vectors import write_vectors

BINS_FILE = "coverage_bins.json"
PROFILE_PLOT = "precision_profile.png"
TARGETED_VECTORS = "targeted"


@dataclass(frozen=True)
class CodesSource:
    """Events given as input codes of type `t` (the targeted events), read back as their exact values."""

    codes: np.ndarray
    lsb: float

    note = "targeted events: input codes generated to reach coverage bins and to distinguish mutants"

    def read(self, shard: Shard) -> np.ndarray:
        return self.codes[shard.start:shard.stop].astype(np.float64) * self.lsb


@dataclass
class Outcome:
    """The campaign's result, and the verification of its targeted events on every path."""

    result: Result
    targeted: ShardResult | None
    trigger: Trigger | None

    @property
    def agrees(self) -> bool:
        return self.targeted is None or self.targeted.agrees

    @property
    def missed(self) -> list:
        return self.result.stimuli.missed


def run_coverage(manifest, source, n_events: int, shard_size: int, backends: dict, second, settings,
                 threshold: int | None, score_output: str | None, budget: SearchBudget, seed: int = 0,
                 log=lambda message: None) -> Outcome:
    """The campaign over events [0, n_events) of `source`, then its targeted events through `backends`."""
    trigger = None if threshold is None or score_output is None else Trigger(score_output, threshold)
    campaign = Campaign(manifest, trigger, budget, seed)
    log("coverage: counting the bins over the events")
    for shard in split(n_events, shard_size):
        campaign.add(input_codes(source.read(shard), manifest, shard.start))
    result = campaign.finish(log)
    targeted = None
    if len(result.targeted):
        log(f"coverage: {len(result.targeted)} targeted events through every path")
        codes_source = CodesSource(result.targeted, manifest.input.type.lsb)
        targeted = verify_shard(Shard(0, len(result.targeted)), codes_source, manifest, backends, second,
                                dataclasses.replace(settings, n_vectors=len(result.targeted)))
    return Outcome(result, targeted, trigger)


def write_files(outcome: Outcome, out: Path, manifest, board: str, emp_links) -> dict:
    """coverage_bins.json, the profile plot and the targeted test vectors; {what: path relative to out}."""
    result = outcome.result
    states = result.bins
    proofs = result.stimuli.unreachable
    (out / BINS_FILE).write_text(json.dumps({
        "model": manifest.name, "manifest_hash": manifest.content_hash,
        "bins": {bin_id: {"state": states[bin_id], **({"proof": proofs[bin_id]} if bin_id in proofs else {})}
                 for bin_id in result.report.bin_ids},
    }) + "\n")
    files = {"bins": BINS_FILE}
    if result.report.events:
        plot_profile(precision_profile(manifest, result.report), out / PROFILE_PLOT)
        files["precision_profile_plot"] = PROFILE_PLOT
    if outcome.targeted is not None:
        folder = out / "vectors" / TARGETED_VECTORS
        write_vectors(folder, manifest, outcome.targeted.vector_inputs, outcome.targeted.vector_outputs, 0,
                      f"{CodesSource.note}; expected outputs from the {outcome.targeted.reference} path", board,
                      emp_links)
        files["targeted_vectors"] = f"vectors/{TARGETED_VECTORS}"
    return files


def coverage_section(outcome: Outcome, manifest, files: dict, path_entries, difference) -> dict:
    """report.json's `coverage`: bins per class, the boundary events, the mutation scores, the profile, and how the
    targeted events fared on every path (report.py's `path_entries(merged)` and `difference(first)` describe it)."""
    result = outcome.result
    section = {
        "events": {"data": result.report.events, "targeted": int(len(result.targeted))},
        "bins": result.counts(),
        "classes": result.classes(),
        "missed": result.stimuli.missed,
        "boundary_events": _boundary(outcome),
        "mutation": _mutation(result),
        "precision_profile": [_profile_row(r) for r in precision_profile(manifest, result.report)]
        if result.report.events else [],
        "targeted_agreement": None if outcome.targeted is None else path_entries(outcome.targeted),
        "targeted_first_mismatch": None if outcome.targeted is None or outcome.targeted.first is None
        else difference(outcome.targeted.first),
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "files": files,
        "summary": result.summary_line(),
    }
    return section


def _boundary(outcome: Outcome):
    if outcome.trigger is None:
        return None
    t, result = outcome.trigger, outcome.result
    windows = {}
    for kind in ("below", "at", "above"):
        bin_id = f"{t.output}/trigger/0/{kind}"
        windows[kind] = {"data_events": result.report.count(bin_id)[1],
                         "targeted_event": _row_of(result, bin_id)}
    return {"threshold_code": t.code, "k": t.k, "windows": windows,
            "data_events_near": [{"event": e, "score_code": s} for e, s in result.boundary]}


def _row_of(result: Result, bin_id: str):
    """The row of the targeted events that reaches `bin_id`, or None."""
    event = result.stimuli.found.get(bin_id)
    if event is None:
        return None
    return int(np.flatnonzero((result.targeted == event).all(axis=1))[0])


def _mutation(result: Result) -> dict:
    score = result.score
    rows = []
    for m in score.mutants:
        by_data, by_targeted = score.first["data"].get(m.name), score.first["targeted"].get(m.name)
        state = ("equivalent" if m.equivalent else "distinguished by data" if by_data is not None
                 else "distinguished by targeted events" if by_targeted is not None else "survived")
        rows.append({"name": m.name, "kind": m.kind, "layer": m.layer, "change": m.description, "state": state,
                     "data_event": by_data, "targeted_event": by_targeted, "equivalent": m.equivalent,
                     "undecided": m.undecided if state == "survived" else None})
    return {"data": score.summary("data"), "data_and_targeted": score.summary("data", "targeted"), "mutants": rows}


def _profile_row(r) -> dict:
    return {"layer": r.layer, "type": str(r.type), "type_codes": [r.type.min_code, r.type.max_code],
            "observed_codes": [r.observed_min, r.observed_max], "overflow_rate": r.overflow_rate,
            "overflow_casts": r.overflow_casts, "at_min_rate": r.at_min_rate, "at_max_rate": r.at_max_rate,
            "headroom_bits": r.headroom_bits}


# ---- report.md --------------------------------------------------------------------------------------------
def markdown_lines(section: dict) -> list:
    """The coverage part of report.md: summary, table per bin class, missed bins, mutants, profile, plot."""
    bins, mutation = section["bins"], section["mutation"]
    out = ["", "## Coverage", "", section["summary"], "",
           f"{section['events']['data']} data events and {section['events']['targeted']} targeted events; every bin "
           f"listed with its state and proof in `{section['files']['bins']}`.", "",
           "| bin class | hit | unreachable (proved) | missed |", "|---|---|---|---|"]
    out += [f"| {kind} | {row['hit']} | {row['unreachable']} | {row['missed']} |"
            for kind, row in section["classes"].items()]
    out.append(f"| **all** | **{bins['hit']}** ({bins['hit_by_targeted']} by targeted events) | "
               f"**{bins['unreachable']}** | **{bins['missed']}** |")
    if section["missed"]:
        shown = section["missed"][:20]
        out += ["", "Missed bins: " + ", ".join(f"`{b}`" for b in shown)
                + (f" and {len(section['missed']) - len(shown)} more" if len(section["missed"]) > len(shown) else "")]
    agreement = section["targeted_agreement"]
    if agreement:
        out += ["", "Targeted events on every path: " + ", ".join(
            f"{name} {entry['status']}" for name, entry in agreement.items()) + "."]
    boundary = section["boundary_events"]
    if boundary:
        out += ["", f"Events near the threshold code {boundary['threshold_code']} (within {boundary['k']} LSB): "
                + ", ".join(f"{kind} {w['data_events']} data events"
                            + ("" if w["targeted_event"] is None else f" + targeted event {w['targeted_event']}")
                            for kind, w in boundary["windows"].items()) + "."]
    data, both = mutation["data"], mutation["data_and_targeted"]
    out += ["", "### Mutation score", "",
            f"{both['distinguished']} of {both['distinguished'] + both['survived']} non-equivalent mutants "
            f"distinguished by data plus targeted events ({data['distinguished']} by the data alone); "
            f"{both['equivalent']} equivalent.", "",
            "| mutant | change | state |", "|---|---|---|"]
    out += [f"| {m['name']} | {m['change']} | {m['state']}"
            + "".join(f": {m[why]}" for why in ("equivalent", "undecided") if m[why]) + " |"
            for m in mutation["mutants"]]
    if section["precision_profile"]:
        out += ["", "### Precision profile", "",
                "| layer | type | type codes | observed codes | overflow ev. | at min ev. | at max ev. | headroom |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {r['layer']} | `{r['type']}` | {r['type_codes']} | {r['observed_codes']} | "
                f"{r['overflow_rate']:.3%} | {r['at_min_rate']:.3%} | {r['at_max_rate']:.3%} | "
                f"{r['headroom_bits']} bits |" for r in section["precision_profile"]]
        if "precision_profile_plot" in section["files"]:
            out += ["", f"![precision profile]({section['files']['precision_profile_plot']})"]
    return out
