"""A KL head whose result type is one bit narrower (a mutant) differs from the original only where its score leaves
the narrower range, and the score is a sum of squared latent means: it gets there only when every mean lies far
from zero. Interval analysis of the head alone, with one mean held near zero, says how far (`mean_floor`); the
mixed-integer relaxation of the model up to the means then proves that no input puts them all that far out at once
(each element's sign a binary of the solver), and the mutant equivalent.
"""

from __future__ import annotations

from emulator.fixed_type import FixedType
from emulator.manifest import Manifest

from .intervals import Enclosure, in_range, layer_sites
from .relaxation import LinearProgram


def mean_floor(manifest: Manifest, enclosure: Enclosure, layer, t: FixedType) -> int | None:
    """The largest c such that every cast of the KL head into its result type rounds within type `t` whenever any
    one element of the mean lies within (-c, c) (the other inputs within their enclosures); None if none does."""
    mean, logvar = layer.inputs
    m_lo, m_hi = enclosure.outputs[mean]

    def holds(c: int) -> bool:
        for e in range(len(m_lo)):
            lo, hi = m_lo.copy(), m_hi.copy()
            lo[e], hi[e] = max(lo[e], 1 - c), min(hi[e], c - 1)
            if lo[e] > hi[e]:  # this element is never that near zero
                continue
            sites = layer_sites(layer, manifest, [(lo, hi), enclosure.outputs[logvar]])
            if not all(in_range(h, t=t).all() for h in sites.values() if h.site.type == layer.result):
                return False
        return True

    if not holds(1):
        return None
    good, bad = 1, int(max(-m_lo.min(), m_hi.max())) + 2
    while bad - good > 1:
        c = (good + bad) // 2
        good, bad = (c, bad) if holds(c) else (good, c)
    return good


def kl_overflow_proof(manifest: Manifest, enclosure: Enclosure, layer, t: FixedType, seconds: float) -> str | None:
    """Why no input puts the KL head's score outside type `t`, or None: the mean floor, and the mixed-integer
    program (within `seconds`) with no solution beyond it in every element at once."""
    c = mean_floor(manifest, enclosure, layer, t)
    if c is None:
        return None
    mean = layer.inputs[0]
    if not LinearProgram(manifest, enclosure, mean).apart_from_zero(mean, c, seconds):
        return None
    return (f"the score leaves {t} only where every element of {mean!r} lies {c} codes or more from zero (interval "
            f"analysis of the head with any one of them nearer), and the mixed-integer relaxation of the model up to "
            f"{mean!r} has no input that puts them all there")


__all__ = ["kl_overflow_proof", "mean_floor"]
