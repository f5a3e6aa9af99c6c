"""A KL head whose result type is one bit narrower (a mutant) differs from the original only where its score leaves
the narrower range, and the score is a sum of squared latent means: it gets there only when every mean lies far
from zero. Interval analysis of the head alone, with one mean held near zero, says how far (`mean_floor`); the
mixed-integer relaxation of the model up to the means then proves, one sign pattern of the means at a time, that
no input puts them all that far out at once, and the mutant equivalent. Where the means are a saturating cast of
a layer's sums, a floor on a mean is a floor on its sum, which spares the solver the cast's binaries.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from emulator.fixed_type import FixedType
from emulator.manifest import Manifest

from .bins import SATURATING
from .intervals import Enclosure, in_range, layer_sites
from .relaxation import LinearProgram

PATTERN_LIMIT = 16
"""Sign patterns asked of the solver at most (a head of up to four means); a wider head is not attempted."""


@dataclass(frozen=True)
class KlOverflow:
    """The outcome of the attempt: `proof` says why no input leaves type `t`, or is None, and then `shortfall`
    says what was not settled."""

    proof: str | None
    shortfall: str | None = None


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


def kl_overflow_proof(manifest: Manifest, enclosure: Enclosure, layer, t: FixedType, seconds: float) -> KlOverflow:
    """Why no input puts the KL head's score outside type `t` (the mean floor, and for every sign pattern of the
    means the mixed-integer program, within `seconds` each, with no solution beyond it), or what was not settled."""
    c = mean_floor(manifest, enclosure, layer, t)
    if c is None:
        return KlOverflow(None, f"the score leaves {t} with a mean at zero (interval analysis of the head)")
    mean = layer.inputs[0]
    n = len(enclosure.outputs[mean][0])
    if 2 ** n > PATTERN_LIMIT:
        return KlOverflow(None, f"{2 ** n} sign patterns of {mean!r}, more than {PATTERN_LIMIT} are not attempted")
    program = LinearProgram(manifest, enclosure, mean)
    name, ranges = _floors(manifest, enclosure, program, mean, c)
    open_patterns = [signs for signs in itertools.product((1, -1), repeat=n)
                     if not program.excludes_all(name, {e: ranges[e][s > 0] for e, s in enumerate(signs)}, seconds)]
    needs = f"the score leaves {t} only where every element of {mean!r} lies {c} codes or more from zero"
    if open_patterns:
        shown = ", ".join("(" + ",".join("+" if s > 0 else "-" for s in signs) + ")" for signs in open_patterns)
        return KlOverflow(None, f"{needs}; the mixed-integer program excludes {2 ** n - len(open_patterns)} of "
                                f"{2 ** n} sign patterns within {seconds:g} s each, not {shown}")
    return KlOverflow(f"{needs} (interval analysis of the head with any one of them nearer), and the mixed-integer "
                      f"relaxation of the model up to {mean!r} has no input that puts them all there, in any of their "
                      f"{2 ** n} sign patterns")


def _floors(manifest: Manifest, enclosure: Enclosure, program: LinearProgram, mean: str, c: int) -> tuple:
    """(variable, {element: (range at or below -c, range at or above c)}) of `mean`'s codes, or of the sums its
    saturating cast takes them from: a code at or above c (any rounding) needs a sum above (c - 1) steps of the
    code's grid, and one at or below -c a sum below (1 - c) steps."""
    t = manifest.producer_type(mean)
    if f"{mean}:sum" in program.variable and t.overflow in SATURATING:
        hull = enclosure.sites[mean]["result"]
        step = 2.0 ** (hull.site.source_frac - t.fractional)
        name, lo, hi, below, above = f"{mean}:sum", hull.lo, hull.hi, (1 - c) * step, (c - 1) * step
    else:
        (lo, hi), name, below, above = enclosure.outputs[mean], mean, float(-c), float(c)
    return name, {e: ((float(lo[e]), below), (above, float(hi[e]))) for e in range(len(lo))}


__all__ = ["KlOverflow", "PATTERN_LIMIT", "kl_overflow_proof", "mean_floor"]
