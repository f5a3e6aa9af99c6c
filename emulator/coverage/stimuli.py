"""Targeted stimuli: input events (codes within the deployed input type's range) that reach coverage bins a data set
left empty, found with the instrumented emulator as the oracle and verified by it on the whole model.

First layers (those reading the model input) are linear in the input codes. A tie of a cast that sees a*x + c of one
input code x (batchnorm results, dense products) is solved as a congruence (or proved impossible); otherwise the
searcher sweeps one input code over its whole range (or a dense sample of it) from constructed base events: all
zeros, and per output element the event that maximises / minimises it (every input at the end of its range that the
sign of its weight or scale favours).
Deeper bins are searched from data events by random coordinate mutation. Bins that interval analysis proves
unreachable are reported with their proof, never as missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emulator.manifest import Manifest
from emulator.plan import plan_layer, scale_channel

from .bins import Trigger
from .instrumented import InstrumentedEmulator
from .intervals import unreachable_bins

SWEEP = 1 << 15
"""Most codes one coordinate sweep tries: the whole input range when it has no more codes, else a contiguous window
around the base code plus an even spread over the range."""
ELEMENTWISE = ("batchnorm", "relu", "leaky_relu", "linear")


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


def targeted_stimuli(manifest: Manifest, bin_ids, data_codes=None, trigger: Trigger | None = None,
                     search_events: int = 1 << 16, seed: int = 0) -> Stimuli:
    """Search input events for each bin of `bin_ids` (typically `CoverageReport.empty()`)."""
    out = Stimuli()
    proofs = unreachable_bins(manifest, trigger)
    todo = []
    for bin_id in bin_ids:
        if bin_id in proofs:
            out.unreachable[bin_id] = proofs[bin_id]
        else:
            todo.append(bin_id)
    first = {layer.name for layer in manifest.layers if layer.inputs == [manifest.input.name]}
    for name in sorted(first):
        wanted = [b for b in todo if b.split("/")[0] == name]
        if wanted:
            found, exhausted = first_layer_stimuli(manifest, name, wanted)
            out.found.update(found)
            out.unreachable.update(exhausted)
    todo = [b for b in todo if b not in out.found and b not in out.unreachable]
    if todo and data_codes is not None and len(data_codes):
        out.found.update(mutation_search(manifest, todo, data_codes, trigger, search_events, seed))
    _verify(manifest, out.found, trigger)
    out.missed = [b for b in bin_ids if b not in out.found and b not in out.unreachable]
    return out


def first_layer_stimuli(manifest: Manifest, layer_name: str, bin_ids) -> tuple:
    """({bin id: event} found for bins of a layer that reads the model input, {bin id: proof} for bins an exhaustive
    sweep shows unreachable (elementwise layers over an input type of at most SWEEP codes))."""
    layer = manifest.layer(layer_name)
    oracle = InstrumentedEmulator(Manifest(f"{manifest.name}:{layer_name}", manifest.inputs, [layer], [layer_name]))
    t = manifest.input.type
    n_in = manifest.input.size
    found, todo = {}, list(bin_ids)

    def probe(events):
        nonlocal todo
        hits = oracle.bin_hits(events, todo)
        for k in np.flatnonzero(hits.any(axis=0)):
            found[todo[k]] = events[np.argmax(hits[:, k])].copy()
        todo = [b for b in todo if b not in found]

    exhausted = {}
    constructed, impossible = _constructed_ties(manifest, layer, todo)
    exhausted.update(impossible)
    todo = [b for b in todo if b not in impossible]
    if constructed:
        probe(np.stack(constructed))
    codes = _sweep_codes(t, 0)
    probe(np.repeat(codes[:, None], n_in, axis=1))  # every input at the same code: each element-local cast sees all
    if layer.op in ELEMENTWISE and codes.size == t.max_code - t.min_code + 1:
        exhausted = {b: f"exhaustive: no input code of {t} reaches it" for b in todo}
        return found, exhausted
    weights = _input_weights(layer, n_in)
    for element in sorted({int(b.split("/")[2]) for b in todo}):
        if not todo:
            break
        column = weights[:, element % weights.shape[1]]
        high = np.where(column >= 0, t.max_code, t.min_code)
        low = np.where(column >= 0, t.min_code, t.max_code)
        order = np.argsort(-np.abs(column), kind="stable")
        for base in (np.zeros(n_in, dtype=np.int64), high, low):
            probe(base[None, :])
            for i in order[:4]:
                if not any(int(b.split("/")[2]) == element for b in todo):
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
    """Tie bins whose cast sees an affine function a*x + c of a single input code x (batchnorm results, dense
    products): ([events that make the ties], {bin id: proof that no input code makes one})."""
    sites = {site.name: site for site in plan_layer(layer, manifest).sites}
    t, n_in = manifest.input.type, manifest.input.size
    x_frac = t.fractional
    events, impossible = [], {}
    for bin_id in todo:
        _, site_name, element, kind = bin_id.split("/")
        if kind != "tie" or (layer.op, site_name) not in (("batchnorm", "result"), ("dense", "product")):
            continue
        element, site = int(element), sites[site_name]
        shift = site.source_frac - site.type.fractional
        if layer.op == "batchnorm":
            k = scale_channel(layer)[element]
            scale, bias = int(layer.tensors["scale"].ravel()[k]), int(layer.tensors["bias"].ravel()[k])
            affine = [(element, scale << (site.source_frac - x_frac - layer.types["scale"].fractional),
                       bias << (site.source_frac - layer.types["bias"].fractional))]
        else:
            affine = [(i, int(w), 0) for i, w in enumerate(layer.tensors["weight"][:, element])]
        for i, a, c in affine:
            x = solve_tie(a, c, shift, t.min_code, t.max_code)
            if x is not None:
                event = np.zeros(n_in, dtype=np.int64)
                event[i] = x
                events.append(event)
                break
        else:
            impossible[bin_id] = (f"no input code in [{t.min_code}, {t.max_code}] solves a*x + c = 2^{shift - 1} "
                                  f"mod 2^{shift} for (a, c) in {[(a, c) for _, a, c in affine][:4]}")
    return events, impossible


def mutation_search(manifest: Manifest, bin_ids, data_codes, trigger, search_events: int, seed: int) -> dict:
    """Random coordinate mutations of data events (a few inputs set to random codes or range ends), whole model."""
    oracle = InstrumentedEmulator(manifest, trigger)
    t = manifest.input.type
    rng = np.random.default_rng(seed)
    data = np.asarray(data_codes, dtype=np.int64)
    found, todo = {}, list(bin_ids)
    batch = 4096
    for _ in range(max(1, search_events // batch)):
        if not todo:
            break
        events = data[rng.integers(0, len(data), batch)].copy()
        for _ in range(rng.integers(1, 4)):
            rows, cols = np.arange(batch), rng.integers(0, events.shape[1], batch)
            ends = rng.choice([t.min_code, t.max_code], batch)
            events[rows, cols] = np.where(rng.random(batch) < 0.3, ends, rng.integers(t.min_code, t.max_code + 1, batch))
        hits = oracle.bin_hits(events, todo)
        for k in np.flatnonzero(hits.any(axis=0)):
            found[todo[k]] = events[np.argmax(hits[:, k])].copy()
        todo = [b for b in todo if b not in found]
    return found


def _sweep_codes(t, around: int) -> np.ndarray:
    """The codes of input type t a coordinate sweep tries (sorted, unique)."""
    if t.max_code - t.min_code + 1 <= SWEEP:
        return np.arange(t.min_code, t.max_code + 1, dtype=np.int64)
    window = np.arange(around - SWEEP // 4, around + SWEEP // 4, dtype=np.int64)
    spread = np.linspace(t.min_code, t.max_code, SWEEP // 2).astype(np.int64)
    return np.unique(np.clip(np.concatenate([window, spread]), t.min_code, t.max_code))


def _input_weights(layer, n_in: int) -> np.ndarray:
    """(n_in, elements or filters): the weight or scale each input has in each output of a first layer."""
    if layer.op in ("dense", "conv2d"):
        w = layer.tensors["weight"]
        return w.reshape(-1, w.shape[-1])[:n_in] if layer.op == "dense" else np.ones((n_in, 1), dtype=np.int64)
    if layer.op == "batchnorm":
        return np.diag(layer.tensors["scale"].ravel()[scale_channel(layer)])
    return np.eye(n_in, dtype=np.int64) * (layer.params.get("alpha", 1) if layer.op == "leaky_relu" else 1)


def _verify(manifest, found: dict, trigger) -> None:
    """Check every event on the instrumented emulator of the whole model; one that misses its bin is a bug."""
    if not found:
        return
    ids = list(found)
    hits = InstrumentedEmulator(manifest, trigger).bin_hits(np.stack([found[b] for b in ids]), ids)
    for k, bin_id in enumerate(ids):
        if not hits[k, k]:
            raise RuntimeError(f"stimulus for {bin_id} does not reach it on the whole model")
