"""Mutants of a model: manifests with one deliberate arithmetic fault each, read by the emulator and by the RTL
generator alike, and a threshold off by one. A set of test events is as good as the mutants it tells apart from the
original. A mutant that no input in range can tell apart is listed as equivalent, with the reason (from the
interval enclosure of the original), never counted as one the events missed.

Kinds, one mutant per layer where the layer has what they change:
  weight_lsb  the least significant bit of one weight flipped (the largest weight of the layer: the first one)
  rounding    the rounding mode of the layer's result type changed (RND_CONV <-> RND, TRN <-> RND, others -> TRN)
  overflow    the overflow mode of the layer's result type changed (SAT <-> WRAP, others -> SAT)
  narrower    the layer's result type one integer bit narrower (same grid, half the range)
  sum_order   the layer's sum accumulated in reverse order (param sum_order = reversed; dense, conv2d, heads)
  threshold   the trigger's threshold code one above and one below
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np

from emulator.fixed_type import FixedType
from emulator.manifest import Manifest
from emulator.plan import im2col_index

from .bins import SATURATING, Trigger
from .intervals import Enclosure, in_range, rounded_codes
from .kl_overflow import kl_overflow_proof

KINDS = ("weight_lsb", "rounding", "overflow", "narrower", "sum_order", "threshold")
SUMMED = ("dense", "conv2d", "kl_divergence", "mse")
_ROUNDING_SWAP = {"RND_CONV": "RND", "RND": "RND_CONV", "TRN": "RND"}
_OVERFLOW_SWAP = {"SAT": "WRAP", "WRAP": "SAT"}


@dataclass(frozen=True)
class Mutant:
    """One fault: `manifest` is the mutated model (the original for a threshold mutant, whose `threshold` is the
    mutated code); `equivalent` says why no input in range can tell it apart, or is None; `undecided` says what an
    attempt to prove it equivalent left unsettled, if one was made and fell short."""

    name: str
    kind: str
    layer: str
    description: str
    manifest: Manifest
    threshold: int | None = None
    equivalent: str | None = None
    undecided: str | None = None


def mutants(manifest: Manifest, trigger: Trigger | None = None, enclosure: Enclosure | None = None,
            proofs: dict | None = None, seconds: float = 0.0, solvers: int = 1, log=lambda message: None) -> list:
    """The mutants of `manifest` (and of the trigger's threshold), in manifest order, kind by kind; `proofs`
    ({bin id: proof}, e.g. from targeted_stimuli) adds to what the enclosure proves unreachable; `seconds` > 0
    lets a mixed-integer program take that long to prove a mutant equivalent, `solvers` programs at once; `log` hears
    how a long proof goes."""
    enclosure = enclosure or Enclosure(manifest)
    proofs = proofs or {}

    def proved(layer, sites, kinds) -> bool:
        """Every bin of `kinds` at every element of `sites` of `layer` is unreachable."""
        ids = (f"{layer.name}/{name}/{e}/{kind}" for name in sites
               for e in range(enclosure.sites[layer.name][name].site.elements) for kind in kinds)
        return all(bin_id in proofs or enclosure.proof(bin_id) is not None for bin_id in ids)

    out = []
    for layer in manifest.layers:
        sites = [name for name, h in enclosure.sites[layer.name].items() if h.site.type == layer.result]
        if "weight" in layer.tensors:
            out.append(_weight_lsb(manifest, layer, enclosure))
        for kind, swap in (("rounding", _ROUNDING_SWAP), ("overflow", _OVERFLOW_SWAP)):
            old = getattr(layer.result, kind)
            new = swap.get(old, "TRN" if kind == "rounding" else "SAT")
            reason = (_rounding_equivalence if kind == "rounding" else _overflow_equivalence)(
                enclosure, proved, layer, sites, old, new)
            out.append(_retyped(manifest, layer, kind, dataclasses.replace(layer.result, **{kind: new}),
                                f"result type {layer.result} -> {kind} {new}", reason))
        if layer.result.width > 1:
            t = layer.result
            narrow = dataclasses.replace(t, width=t.width - 1, integer=t.integer - 1)
            reason, undecided = _narrower_equivalence(manifest, enclosure, layer, sites, narrow, seconds, solvers,
                                                      log)
            out.append(_retyped(manifest, layer, "narrower", narrow, f"result type {t} -> {narrow}", reason,
                                undecided))
        if layer.op in SUMMED:
            out.append(_reversed(manifest, layer, enclosure))
    if trigger is not None:
        for delta, differs_at in ((+1, trigger.code + 1), (-1, trigger.code)):
            never = enclosure.never_holds(trigger.output, 0, differs_at)
            reason = None if never is None else f"the decisions differ only at score code {differs_at}: {never}"
            out.append(Mutant(f"threshold:{delta:+d}", "threshold", trigger.output,
                              f"threshold code {trigger.code} -> {trigger.code + delta}", manifest,
                              trigger.code + delta, reason))
    return out


def _copy_with(manifest: Manifest, name: str, change) -> Manifest:
    """A deep copy of `manifest` with `change(layer)` applied to layer `name`."""
    mutated = copy.deepcopy(manifest)
    change(mutated.layer(name))
    mutated.validate()
    return mutated


def _weight_lsb(manifest, layer, enclosure) -> Mutant:
    w = layer.tensors["weight"]
    flat = int(np.argmax(np.abs(w).ravel()))
    where = np.unravel_index(flat, w.shape)

    def flip(target):
        codes = target.tensors["weight"].copy()
        codes[where] ^= 1
        target.tensors["weight"] = codes

    reason = None
    if layer.op == "dense":
        x_lo, x_hi = enclosure.outputs[layer.inputs[0]]
        if x_lo[where[0]] == 0 == x_hi[where[0]]:
            reason = f"input element {where[0]} of the weight is always 0"
    old = int(w[where])
    return Mutant(f"weight_lsb:{layer.name}", "weight_lsb", layer.name,
                  f"weight{list(map(int, where))} code {old} -> {old ^ 1}", _copy_with(manifest, layer.name, flip),
                  equivalent=reason)


def _retyped(manifest, layer, kind: str, new: FixedType, description: str, reason, undecided=None) -> Mutant:
    def retype(target):
        target.result = new

    return Mutant(f"{kind}:{layer.name}", kind, layer.name, description, _copy_with(manifest, layer.name, retype),
                  equivalent=reason, undecided=undecided)


def _reversed(manifest, layer, enclosure) -> Mutant:
    def reverse(target):
        target.params = {**target.params, "sum_order": "reversed"}

    acc_t = layer.types["accum"]
    reason = None
    if acc_t.overflow == "WRAP":
        reason = f"the accumulator {acc_t} wraps: the sum is the same in any order"
    else:
        start, t_lo, t_hi = _terms(layer, manifest, enclosure)
        lo, hi = start + np.minimum(t_lo, 0).sum(axis=1), start + np.maximum(t_hi, 0).sum(axis=1)  # partial sums
        if lo.min() >= acc_t.min_code and hi.max() <= acc_t.max_code:
            reason = (f"no partial sum in any order leaves [{acc_t.min_code}, {acc_t.max_code}] of {acc_t} "
                      f"(sums of the negative and of the positive parts of the terms: [{lo.min()}, {hi.max()}])")
        elif acc_t.overflow in ("SAT", "SAT_SYM") and (((start >= 0) & (t_lo >= 0).all(axis=1))
                                                       | ((start <= 0) & (t_hi <= 0).all(axis=1))).all():
            reason = (f"the terms of each sum have one sign, and a sum of terms of one sign saturating in {acc_t} "
                      f"is the total clipped to its range, in any order")
    return Mutant(f"sum_order:{layer.name}", "sum_order", layer.name, "sum accumulated in reverse order",
                  _copy_with(manifest, layer.name, reverse), equivalent=reason)


def _terms(layer, manifest, enclosure) -> tuple:
    """(start, lo, hi): per output the code its sum starts from (the bias of a dense or convolution layer, else 0)
    and the range of each term added to it, (outputs, terms), in codes of the accumulator."""
    acc_t = layer.types["accum"]
    sites = enclosure.sites[layer.name]
    if layer.op in ("kl_divergence", "mse"):
        leaves = sites["minus_mean_sq" if layer.op == "kl_divergence" else "leaf"]
        lo, hi = (np.clip(rounded_codes(v, leaves.site.source_frac, acc_t), acc_t.min_code, acc_t.max_code)[None]
                  for v in (leaves.lo, leaves.hi))
        return np.zeros(1, dtype=np.int64), lo, hi
    index = (np.arange(layer.params["n_in"]).reshape(1, -1) if layer.op == "dense"
             else im2col_index(layer.params))
    w = layer.tensors["weight"].reshape(index.shape[1], -1)
    x_lo, x_hi = enclosure.outputs[layer.inputs[0]]
    product = sites["product"]
    a, b = x_lo[index][:, :, None] * w[None], x_hi[index][:, :, None] * w[None]  # (pixels, taps, outputs)
    lo, hi = (rounded_codes(v.ravel(), product.site.source_frac, acc_t).reshape(v.shape).transpose(0, 2, 1)
              .reshape(-1, index.shape[1]) for v in (np.minimum(a, b), np.maximum(a, b)))
    bias = sites["bias"]
    return rounded_codes(bias.lo, bias.site.source_frac, acc_t), lo, hi


def _rounding_equivalence(enclosure, proved, layer, sites, old: str, new: str):
    """Why changing the rounding of the casts into the result type changes nothing, or None."""
    hulls = [enclosure.sites[layer.name][name] for name in sites]
    if not any(h.site.source_frac > h.site.type.fractional and (h.lo <= h.hi).any() for h in hulls):
        return "no cast into the type drops fractional bits"
    if old.startswith("RND") and new.startswith("RND") and proved(layer, sites, ("tie",)):
        return f"{old} and {new} differ only at exact ties, and no cast into the type meets one (proved per element)"
    return None


def _overflow_equivalence(enclosure, proved, layer, sites, old: str, new: str):
    """Why changing the overflow mode of the casts into the result type changes nothing, or None (SAT_SYM also
    moves an in-range most negative code)."""
    kinds = ("sat_high", "sat_low") if old in SATURATING else ("wrap",)
    kinds += ("at_min",) if "SAT_SYM" in (old, new) else ()
    if proved(layer, sites, kinds):
        return "no cast into the type overflows (proved per element)"
    return None


def _narrower_equivalence(manifest, enclosure, layer, sites, narrow: FixedType, seconds: float, solvers: int,
                          log) -> tuple:
    """(why the narrower type changes nothing, or None; what an attempt left unsettled, or None): every cast already
    lands inside its range (interval enclosure); for a KL head, within `seconds` > 0, no input puts every latent mean
    far enough out (kl_overflow, `solvers` programs at once, telling `log` how it goes)."""
    hulls = enclosure.sites[layer.name]
    if all(in_range(hulls[name], t=narrow).all() for name in sites):
        floor = narrow.min_code + (narrow.overflow == "SAT_SYM")
        return (f"every cast into the type rounds into [{floor}, {narrow.max_code}] of {narrow} (interval enclosure)",
                None)
    if layer.op == "kl_divergence" and seconds > 0:
        attempt = kl_overflow_proof(manifest, enclosure, layer, narrow, seconds, solvers, log)
        return attempt.proof, attempt.shortfall
    return None, None
