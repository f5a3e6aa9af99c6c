"""Coverage bins, derived from a manifest: one per layer, probe site, element and kind that the site's type allows.

A bin's id is `layer/site/element/kind`. Cast sites get sat_high/sat_low (saturating overflow modes) or wrap
(wrapping modes), tie (RND modes, when the cast drops bits), at_min and at_max; the KL head's table index gets
clamp_low and clamp_high; with a `Trigger`, the score output gets `trigger` bins: below (code within k LSB under the
threshold code), at (equal to it) and above (within k LSB over it).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.manifest import Manifest
from emulator.plan import Site, plan_layer

from .probe import KINDS

SATURATING = ("SAT", "SAT_ZERO", "SAT_SYM")
TRIGGER_KINDS = ("below", "at", "above")
TRIGGER_SITE = "trigger"


@dataclass(frozen=True)
class Trigger:
    """The trigger decision on output `output`: fires when the score code exceeds `code`; bins cover codes within
    `k` LSB of it."""

    output: str
    code: int
    k: int = 4

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"the trigger window must be at least 1 LSB, got k={self.k}")

    def window(self, kind: str) -> tuple:
        """The closed range of score codes of trigger bin `kind` (below, at, above)."""
        return {"below": (self.code - self.k, self.code - 1), "at": (self.code, self.code),
                "above": (self.code + 1, self.code + self.k)}[kind]


@dataclass(frozen=True)
class Bin:
    layer: str
    site: str
    element: int
    kind: str

    @property
    def id(self) -> str:
        return f"{self.layer}/{self.site}/{self.element}/{self.kind}"


def site_kinds(site: Site) -> tuple:
    """The kinds a site can count (a subset of probe.KINDS, in its order)."""
    if site.clamp is not None:
        return ("clamp_low", "clamp_high")
    t = site.type
    kinds = ["sat_high", "sat_low"] if t.overflow in SATURATING else ["wrap"]
    if t.rounding.startswith("RND") and site.source_frac > t.fractional:
        kinds.append("tie")
    kinds += ["at_min", "at_max"]
    return tuple(sorted(kinds, key=KINDS.index))


def layer_sites(manifest: Manifest) -> dict:
    """{layer name: the probe sites of its kernel, in site-id order}."""
    return {layer.name: plan_layer(layer, manifest).sites for layer in manifest.layers}


def coverage_bins(manifest: Manifest, trigger: Trigger | None = None) -> list:
    """Every bin of the model, layer by layer in manifest order, then the trigger bins."""
    bins = []
    for name, sites in layer_sites(manifest).items():
        for site in sites:
            kinds = site_kinds(site)
            bins += [Bin(name, site.name, e, kind) for e in range(site.elements) for kind in kinds]
    if trigger is not None:
        check_trigger(manifest, trigger)
        size = manifest.layer(trigger.output).size
        bins += [Bin(trigger.output, TRIGGER_SITE, e, kind) for e in range(size) for kind in TRIGGER_KINDS]
    return bins


def check_trigger(manifest: Manifest, trigger: Trigger) -> None:
    """Raise ValueError when the trigger names no output of the manifest or a code outside its type."""
    if trigger.output not in manifest.outputs:
        raise ValueError(f"trigger output {trigger.output!r} is not an output of model {manifest.name!r} "
                         f"(outputs: {', '.join(manifest.outputs)})")
    t = manifest.layer(trigger.output).result
    if not t.min_code <= trigger.code <= t.max_code:
        raise ValueError(f"threshold code {trigger.code} is outside the range [{t.min_code}, {t.max_code}] of {t}")
