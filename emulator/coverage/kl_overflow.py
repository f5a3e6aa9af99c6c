"""A KL head whose result type is one bit narrower (a mutant) differs from the original only where its score leaves
the narrower range, and the score is a sum of squared latent means (beside a function of the log-variances): it
gets there only when every mean lies far from zero. Interval analysis of the head alone, with one mean held near
zero and the log-variances within a box, says how far (`mean_floor`); the mixed-integer relaxation of the model up
to the head then proves, one region at a time (a sign pattern of the means and a box of the log-variances), that no
input puts the log-variances in the box and every mean that far out, and the mutant equivalent. A region the solver
does not settle in time is split in two on a log-variance (at zero, then at the middle of its magnitudes): a
narrower box raises the floor (interval analysis takes a log-variance and its exponential apart) and holds the
layers the means share with the log-variances nearer to where the solver can rule them out. Where the means are a
saturating cast of a layer's sums, a floor on a mean is a floor on its sum, which spares the solver the cast's
binaries.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from emulator.fixed_type import FixedType
from emulator.manifest import Manifest

from .bins import SATURATING
from .intervals import Enclosure, in_range, layer_sites
from .relaxation import LinearProgram

PATTERN_LIMIT = 16
"""Sign patterns asked of the solver at most (a head of up to four means); a wider head is not attempted."""
REGION_LIMIT = 20
"""Regions examined at most, splits included: each may take the time limit of one program."""


@dataclass(frozen=True)
class KlOverflow:
    """The outcome of the attempt: `proof` says why no input leaves type `t`, or is None, and then `shortfall`
    says what was not settled."""

    proof: str | None
    shortfall: str | None = None


@dataclass(frozen=True)
class Region:
    """Where the proof looks for inputs: the means' signs (+1, -1 per element) and a box of log-variance codes."""

    signs: tuple
    lo: tuple
    hi: tuple

    def halves(self) -> tuple | None:
        """The region split on its widest log-variance element, at zero where the box spans it (zero below), else
        at the power of two midway between the bit lengths of its magnitudes; None where every element is fixed."""
        e = max(range(len(self.lo)), key=lambda i: self.hi[i] - self.lo[i])
        lo, hi = self.lo[e], self.hi[e]
        if lo == hi:
            return None
        if lo < 0 < hi:
            cut = 0
        else:
            near, far = sorted((abs(lo), abs(hi)))
            middle = 1 << ((near.bit_length() + far.bit_length()) // 2)
            cut = min(max(middle, near), far - 1) if lo >= 0 else -min(max(middle + 1, near + 1), far)
        below = Region(self.signs, self.lo, self.hi[:e] + (cut,) + self.hi[e + 1:])
        return below, Region(self.signs, self.lo[:e] + (cut + 1,) + self.lo[e + 1:], self.hi)

    def describe(self, whole: "Region", logvar: str) -> str:
        """The sign pattern, and the log-variance box where it is narrower than `whole`'s."""
        signs = "(" + ",".join("+" if s > 0 else "-" for s in self.signs) + ")"
        narrowed = [f"{e}: [{lo}, {hi}]" for e, (lo, hi) in enumerate(zip(self.lo, self.hi))
                    if (lo, hi) != (whole.lo[e], whole.hi[e])]
        return signs + (f" with {logvar!r} codes {{{', '.join(narrowed)}}}" if narrowed else "")


def mean_floor(manifest: Manifest, enclosure: Enclosure, layer, t: FixedType, logvar_box: tuple | None = None
               ) -> int | None:
    """The largest c such that every cast of the KL head into its result type rounds within type `t` whenever any
    one element of the mean lies within (-c, c) (the log-variance within `logvar_box` (lo, hi), by default its
    enclosure, the other means within theirs); None if none does."""
    mean, logvar = layer.inputs
    m_lo, m_hi = enclosure.outputs[mean]
    logvar_box = enclosure.outputs[logvar] if logvar_box is None else logvar_box

    def holds(c: int) -> bool:
        for e in range(len(m_lo)):
            lo, hi = m_lo.copy(), m_hi.copy()
            lo[e], hi[e] = max(lo[e], 1 - c), min(hi[e], c - 1)
            if lo[e] > hi[e]:  # this element is never that near zero
                continue
            sites = layer_sites(layer, manifest, [(lo, hi), logvar_box])
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
    """Why no input puts the KL head's score outside type `t` (per region, the mean floor and the mixed-integer
    program, within `seconds`, with no solution beyond it), or what was not settled."""
    mean, logvar = layer.inputs
    m_lo, m_hi = enclosure.outputs[mean]
    n = len(m_lo)
    if 2 ** n > PATTERN_LIMIT:
        return KlOverflow(None, f"{2 ** n} sign patterns of {mean!r}, more than {PATTERN_LIMIT} are not attempted")
    whole = Region((), *(tuple(int(v) for v in bound) for bound in enclosure.outputs[logvar]))
    program = LinearProgram(manifest, enclosure, layer.name)

    def excluded(region: Region) -> int | None:
        """The region's mean floor where no input lies in it (the means' enclosure or the program says so)."""
        c = mean_floor(manifest, enclosure, layer, t, (np.array(region.lo), np.array(region.hi)))
        if c is None or any((m_hi[e] < c) if s > 0 else (m_lo[e] > -c) for e, s in enumerate(region.signs)):
            return c
        name, ranges = _floors(manifest, enclosure, program, mean, c)
        box = {logvar: dict(enumerate(zip(region.lo, region.hi)))}
        return c if program.excludes_all(name, {e: ranges[e][s > 0] for e, s in enumerate(region.signs)}, seconds,
                                         box) else None

    queue = [Region(signs, whole.lo, whole.hi) for signs in itertools.product((1, -1), repeat=n)]
    floors, unsettled, examined = [], [], 0
    while queue:
        region = queue.pop(0)
        examined += 1
        c = excluded(region)
        if c is not None:
            floors.append(c)
            continue
        halves = region.halves()
        if halves is None or examined + len(queue) + 2 > REGION_LIMIT:
            unsettled.append(region)
        else:
            queue.extend(halves)
    regions = f"{len(floors) + len(unsettled)} regions (sign pattern of {mean!r}, box of {logvar!r})"
    if unsettled:
        shown = ", ".join(region.describe(whole, logvar) for region in unsettled)
        return KlOverflow(None, f"the mixed-integer program excludes {len(floors)} of {regions} within {seconds:g} s "
                                f"each, not {shown}")
    far = f"{min(floors)}" if min(floors) == max(floors) else f"{min(floors)} to {max(floors)} (by region)"
    return KlOverflow(f"the score leaves {t} only where every element of {mean!r} lies {far} codes or more from zero "
                      f"(interval analysis of the head with any one of them nearer), and no input puts them all there "
                      f"in any of {regions}: the means' enclosure or the mixed-integer relaxation of the model up to "
                      f"the head rules each one out")


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


__all__ = ["KlOverflow", "PATTERN_LIMIT", "REGION_LIMIT", "Region", "kl_overflow_proof", "mean_floor"]
