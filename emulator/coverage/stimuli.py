"""Targeted stimuli: input events (codes within the deployed input type's range) that reach coverage bins a data set
left empty, each verified on the instrumented emulator of the whole model; bins proved unreachable are reported with
the proof, never as missed.

In order: interval analysis over the input range (intervals.py); bins of element-local layers become conditions on
one code of their anchor, tried exhaustively (preimages.py): built directly when the anchor is the input, proved
unreachable when no code reaches them; dense and convolution layers reading the input are linear in the input codes:
the ties of their sums are settled by the residues the sums can take (residues.py), those of their products solved
as congruences, and their other bins swept one input code at a time from constructed events (also behind an
element-by-element input layer, whose codes they are linear in);
what is left is searched from the data events (search.py), and for the trigger's bins from pairs of events either
side of the threshold one input code apart, guided by each event's distance from each bin; what
the search misses is tried once more for a proof with the linear relaxation of the model (relaxation.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from emulator.emulator import Emulator
from emulator.manifest import Manifest
from emulator.plan import plan_layer

from .bins import TRIGGER_SITE, Trigger, coverage_bins
from .instrumented import InstrumentedEmulator
from .intervals import Enclosure
from .preimages import translate
from .relaxation import basis_to_input, lp_proofs, witnesses
from .residues import settle_ties
from .search import SearchBudget, condition_key, guided_search, threshold_crossings

SWEEP = 1 << 15
"""Most codes one coordinate sweep tries: the whole input range when it has no more codes, else a contiguous window
around the base code plus an even spread over the range."""
LINEAR_FIRST = ("dense", "conv2d")
COPIES = ("reshape", "zeropad2d")
SEEDS = 2048
"""Data events the search starts from (a random sample when there are more)."""
WIDE_POOL = 64
"""Events kept per condition by the last search, for the conditions the hill climb (a pool of one) left."""


@dataclass
class Stimuli:
    """The outcome for the bins asked for: an event per bin found (verified), a proof per unreachable bin, and the
    bins missed (neither found nor proved unreachable)."""

    found: dict = field(default_factory=dict)
    unreachable: dict = field(default_factory=dict)
    missed: list = field(default_factory=list)

    def events(self) -> np.ndarray:
        """The distinct events found, (N, n_in) int64 input codes."""
        if not self.found:
            return np.empty((0, 0), dtype=np.int64)
        return np.unique(np.stack(list(self.found.values())), axis=0)

    def credit(self, oracle: InstrumentedEmulator, events: np.ndarray) -> None:
        """Move the missed bins that any of `events` reaches (on `oracle`) to found: an event found for one bin may
        reach others on its way."""
        if not self.missed or not len(events):
            return
        hits = oracle.bin_hits(events, self.missed)
        for column in np.flatnonzero(hits.any(axis=0)):
            self.found[self.missed[column]] = events[np.argmax(hits[:, column])].copy()
        self.missed = [b for b in self.missed if b not in self.found]


def targeted_stimuli(manifest: Manifest, bin_ids, data_codes=None, trigger: Trigger | None = None,
                     budget: SearchBudget = SearchBudget(), seed: int = 0,
                     enclosure: Enclosure | None = None) -> Stimuli:
    """Find input events for each bin of `bin_ids` (typically `CoverageReport.empty()`), or prove it unreachable;
    `enclosure` (of the manifest) gets the hulls the linear programs tighten."""
    out = Stimuli()
    enclosure = enclosure or Enclosure(manifest)
    wanted = set(bin_ids)
    out.unreachable.update(enclosure.unreachable([b for b in coverage_bins(manifest, trigger) if b.id in wanted],
                                                 trigger))
    todo = [b for b in bin_ids if b not in out.unreachable]
    targets, exhausted = translate(manifest, todo, enclosure)
    out.unreachable.update(exhausted)
    size = manifest.input.size
    for bin_id, target in targets.items():
        if target.layer == manifest.input.name:
            event = np.zeros(size, dtype=np.int64)
            event[target.element] = target.nearest(0)
            out.found[bin_id] = event
    todo = [b for b in todo if b not in out.found and b not in out.unreachable]
    for layer in manifest.layers:
        mine = [b for b in todo if (targets[b].layer if b in targets else b.split("/")[0]) == layer.name]
        chain = _input_chain(manifest, layer, enclosure.affine.basis) if mine and layer.op in LINEAR_FIRST else None
        if chain is not None:
            found, impossible = settle_ties(manifest, chain, mine, enclosure)
            out.found.update(found)
            out.unreachable.update(impossible)
            mine = [b for b in mine if b not in found and b not in impossible]
            found, impossible = first_layer_stimuli(manifest, chain, mine, targets)
            out.found.update(found)
            out.unreachable.update(impossible)
    todo = [b for b in todo if b not in out.found and b not in out.unreachable]
    oracle = InstrumentedEmulator(manifest, trigger)
    if todo:
        seeds = _seeds(manifest, data_codes, out.found, seed)
        if any(b.split("/")[1] == TRIGGER_SITE for b in todo):  # start from events either side of the threshold
            seeds = np.concatenate([seeds, threshold_crossings(oracle, seeds, seed=seed)])
        reached = guided_search(oracle, [targets.get(b, b) for b in todo], seeds, budget, seed)
        out.found.update({todo[k]: event for k, event in reached.items()})
        proofs, solutions = lp_proofs(manifest, enclosure, [b for b in todo if b not in out.found], targets,
                                      budget.prove_seconds)
        out.unreachable.update(proofs)
        todo = [b for b in todo if b not in out.found and b not in out.unreachable]
        starts = witnesses(manifest, enclosure, [b for b in todo if b not in solutions], targets, budget.prove_seconds)
        if solutions:  # the proofs' solutions that reach their bins (none of them proved)
            basis = np.array(list(solutions.values()))
            starts = np.concatenate([basis_to_input(manifest, enclosure.affine.basis, basis), starts])
        if todo and len(starts):  # search again from the relaxation's solutions and optima
            seeds = np.concatenate([starts, seeds])
            again = dataclasses.replace(budget, events=budget.events // 2)
            reached = guided_search(oracle, [targets.get(b, b) for b in todo], seeds, again, seed + 1)
            out.found.update({todo[k]: event for k, event in reached.items()})
        todo = [b for b in todo if b not in out.found]
        if todo:  # what the climb left, searched keeping a pool of routes per condition
            wide = dataclasses.replace(budget, pool=WIDE_POOL)
            reached = guided_search(oracle, [targets.get(b, b) for b in todo], seeds, wide, seed + 2)
            out.found.update({todo[k]: event for k, event in reached.items()})
        todo = [b for b in todo if b not in out.found]
        if todo and budget.focus:
            out.found.update(_focused_search(oracle, todo, targets, seeds, budget, seed + 3))
    _verify(oracle, out.found)
    out.missed = [b for b in bin_ids if b not in out.found and b not in out.unreachable]
    out.credit(oracle, out.events())
    return out


def _focused_search(oracle: InstrumentedEmulator, bin_ids: list, targets: dict, seeds: np.ndarray,
                    budget: SearchBudget, seed: int) -> dict:
    """{bin id: event} from a search of `budget.focus` events (pools of WIDE_POOL) on each condition of `bin_ids`
    alone, the copies of an element together."""
    conditions = {}
    for bin_id in bin_ids:
        conditions.setdefault(condition_key(targets.get(bin_id, bin_id)), []).append(bin_id)
    alone = dataclasses.replace(budget, events=budget.focus, pool=WIDE_POOL)
    found = {}
    for k, ids in enumerate(conditions.values()):
        reached = guided_search(oracle, [targets.get(b, b) for b in ids], seeds, alone, seed + k)
        found.update({ids[j]: event for j, event in reached.items()})
    return found


def _seeds(manifest: Manifest, data_codes, found: dict, seed: int) -> np.ndarray:
    """Where the search starts: a sample of the data events, the events already found, zero and the range ends."""
    t, size = manifest.input.type, manifest.input.size
    rows = [np.full((1, size), code, dtype=np.int64) for code in (0, t.min_code, t.max_code)]
    if data_codes is not None and len(data_codes):
        data = np.asarray(data_codes, dtype=np.int64)
        pick = np.random.default_rng(seed).choice(len(data), min(len(data), SEEDS), replace=False)
        rows.append(data[np.sort(pick)])
    if found:
        rows.append(np.stack(list(found.values())))
    return np.concatenate(rows)


def first_layer_stimuli(manifest: Manifest, chain: list, bin_ids, targets: dict | None = None) -> tuple:
    """({bin id: event} found, {bin id: proof of unreachability}) for bins of the dense or convolution layer that ends
    `chain` (from `_input_chain`: it reads the model input, or copies of it or of an element-by-element layer of it),
    and for bins with a code target (`targets`) on its output: ties of products of input codes solved as
    congruences, the rest swept one input code at a time (the inputs of odd weights first, which reach every residue
    of a tie; for a convolution, the inputs that move the element)."""
    targets = targets or {}
    layer = chain[-1]
    reads_input = len(chain) == 1
    sub = Manifest(f"{manifest.name}:{layer.name}", manifest.inputs, chain, [layer.name])
    oracle = InstrumentedEmulator(sub)
    t = manifest.input.type
    n_in = manifest.input.size
    found, todo = {}, list(bin_ids)

    def element(bin_id: str) -> int:
        return targets[bin_id].element if bin_id in targets else int(bin_id.split("/")[2])

    def probe(events):
        nonlocal todo
        hits = oracle.distances(events, [targets.get(b, b) for b in todo]) == 0
        for k in np.flatnonzero(hits.any(axis=0)):
            found[todo[k]] = events[np.argmax(hits[:, k])].copy()
        todo = [b for b in todo if b not in found]

    exhausted = {}
    if reads_input:
        constructed, impossible = _constructed_ties(manifest, layer, todo)
        exhausted.update(impossible)
        todo = [b for b in todo if b not in impossible]
        if constructed:
            probe(np.stack(constructed))
    probe(np.repeat(_sweep_codes(t, 0)[:, None], n_in, axis=1))  # every input at the same code
    weights = _input_weights(layer, n_in) if layer.op == "dense" else _sensitivity(sub, t)
    for wanted in sorted({element(b) for b in todo}):
        if not todo:
            break
        column = weights[:, wanted % weights.shape[1]]
        high = np.where(column >= 0, t.max_code, t.min_code)
        low = np.where(column >= 0, t.min_code, t.max_code)
        largest = np.argsort(-np.abs(column), kind="stable")[:4]
        odd = np.flatnonzero(column % 2)[:2]
        for base in (np.zeros(n_in, dtype=np.int64), high, low):
            probe(base[None, :])
            for i in dict.fromkeys([*largest, *odd]):
                if not any(element(b) == wanted for b in todo):
                    break
                sweep = _sweep_codes(t, base[i])
                events = np.repeat(base[None, :], len(sweep), axis=0)
                events[:, i] = sweep
                probe(events)
    return found, exhausted


def solve_tie(a: int, c: int, shift: int, lo: int, hi: int):
    """The least x in [lo, hi] for which a*x + c is an exact tie when `shift` bits are dropped (a*x + c = 2**(shift-1)
    mod 2**shift), or None when there is none."""
    step = 1 << shift
    r = ((1 << (shift - 1)) - c) % step
    if a == 0:
        return lo if r == 0 and lo <= hi else None
    zeros = min((a & -a).bit_length() - 1, shift)
    if r % (1 << zeros):
        return None
    modulus = 1 << (shift - zeros)
    x0 = (r >> zeros) * pow((a >> zeros) % modulus, -1, modulus) % modulus if modulus > 1 else 0
    x = lo + (x0 - lo) % modulus
    return x if x <= hi else None


def _constructed_ties(manifest: Manifest, layer, todo) -> tuple:
    """Ties of a first dense layer's products w*x, solved for the input code x: ([events that make the ties],
    {bin id: proof that no input code makes one})."""
    sites = {site.name: site for site in plan_layer(layer, manifest).sites}
    t, n_in = manifest.input.type, manifest.input.size
    events, impossible = [], {}
    for bin_id in todo:
        _, site_name, element, kind = bin_id.split("/")
        if kind != "tie" or (layer.op, site_name) != ("dense", "product"):
            continue
        site = sites[site_name]
        shift = site.source_frac - site.type.fractional
        weights = [int(w) for w in layer.tensors["weight"][:, int(element)]]
        for i, w in enumerate(weights):
            x = solve_tie(w, 0, shift, t.min_code, t.max_code)
            if x is not None:
                event = np.zeros(n_in, dtype=np.int64)
                event[i] = x
                events.append(event)
                break
        else:
            impossible[bin_id] = (f"no input code in [{t.min_code}, {t.max_code}] solves w*x = 2^{shift - 1} "
                                  f"mod 2^{shift} for any weight w of the element ({weights[:6]}...)")
    return events, impossible


def _sweep_codes(t, around: int) -> np.ndarray:
    """The codes of input type t a coordinate sweep tries (sorted, unique)."""
    if t.max_code - t.min_code + 1 <= SWEEP:
        return np.arange(t.min_code, t.max_code + 1, dtype=np.int64)
    window = np.arange(around - SWEEP // 4, around + SWEEP // 4, dtype=np.int64)
    spread = np.linspace(t.min_code, t.max_code, SWEEP // 2).astype(np.int64)
    return np.unique(np.clip(np.concatenate([window, spread]), t.min_code, t.max_code))


def _input_weights(layer, n_in: int) -> np.ndarray:
    """(n_in, elements): the weight each input has in each output of a first dense layer."""
    w = layer.tensors["weight"]
    return w.reshape(-1, w.shape[-1])[:n_in]


def _sensitivity(sub: Manifest, t) -> np.ndarray:
    """(n_in, elements): how far each output code of `sub` moves when one input goes from 0 to the end of its range
    (the larger move), the others at 0."""
    n_in = sub.input.size
    emulator = Emulator(sub)
    moved = []
    for end in (t.max_code, t.min_code):
        events = np.vstack([np.zeros((1, n_in), dtype=np.int64), end * np.eye(n_in, dtype=np.int64)])
        out = emulator.predict_codes(events).code.reshape(n_in + 1, -1)
        moved.append(out[1:] - out[0])
    return np.where(np.abs(moved[0]) >= np.abs(moved[1]), moved[0], moved[1])


def _input_chain(manifest: Manifest, layer, basis: str):
    """The layers from the input to `layer` when `layer` reads the input, or copies (reshape, padding) of it or of
    the element-by-element layer `basis` of it; None otherwise."""
    chain = [layer]
    while True:
        source = chain[0].inputs[0] if len(chain[0].inputs) == 1 else None
        if source == manifest.input.name:
            return chain
        if source is None:
            return None
        parent = manifest.layer(source)
        if source != basis and parent.op not in COPIES:
            return None
        chain.insert(0, parent)


def _verify(oracle: InstrumentedEmulator, found: dict) -> None:
    """Check every event on the instrumented emulator of the whole model; one that misses its bin is a bug."""
    if not found:
        return
    ids = list(found)
    hits = oracle.bin_hits(np.stack([found[b] for b in ids]), ids)
    for k, bin_id in enumerate(ids):
        if not hits[k, k]:
            raise RuntimeError(f"stimulus for {bin_id} does not reach it on the whole model")
