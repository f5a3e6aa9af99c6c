"""A KL head whose result type is one bit narrower (a mutant) differs from the original only where its score leaves
the narrower range, and the score is a sum of squared latent means (beside a function of the log-variances): it
gets there only when every mean lies far from zero. Interval analysis of the head alone, with one mean held near
zero and the log-variances within a box, says how far (`mean_floor`); the mixed-integer relaxation of the model up
to the head then proves, one region at a time (a sign pattern of the means and a box of the log-variances), that no
input puts the log-variances in the box and every mean that far out, and the mutant equivalent. A region the solver
does not settle in time is split: in two on a log-variance at zero (a narrower box raises the floor: interval
analysis takes a log-variance and its exponential apart), then in eight on the sides of the kinks of three elements
of the means' parent (neurons' phases, the most influential first: the solver, started again with them fixed, rules
out in seconds what it did not in minutes), then in two on a log-variance at the middle of its magnitudes. Where the
means are a saturating cast of a layer's sums, a floor on a mean is a floor on its sum, which spares the solver the
cast's binaries.
"""

from __future__ import annotations

import dataclasses
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from emulator.fixed_type import FixedType
from emulator.manifest import Manifest

from .bins import SATURATING
from .intervals import Enclosure, in_range, layer_sites
from .relaxation import LinearProgram

PATTERN_LIMIT = 16
"""Sign patterns asked of the solver at most (a head of up to four means); a wider head is not attempted."""
REGION_LIMIT = 256
"""Regions examined at most, splits included: each may take the time limit of one program."""
PHASES_AT_ONCE = 3
"""Kinks a region is split on at once (into 2**3 parts)."""


@dataclass(frozen=True)
class KlOverflow:
    """The outcome of the attempt: `proof` says why no input leaves type `t`, or is None, and then `shortfall`
    says what was not settled."""

    proof: str | None
    shortfall: str | None = None


@dataclass(frozen=True)
class Region:
    """Where the proof looks for inputs: the means' signs (+1, -1 per element), a box of log-variance codes, and for
    some elements of the means' parent the side of its kink (`phases`: (element, above) pairs)."""

    signs: tuple
    lo: tuple
    hi: tuple
    phases: tuple = ()

    def parts(self, order: tuple = ()) -> tuple | None:
        """The region split: in two at zero on the widest log-variance element whose box spans it (zero below); else
        in 2**k on the sides of the kinks of the first k = PHASES_AT_ONCE elements of `order` (the means' parent's,
        most influential first) not yet fixed (one phase fixed alone seldom settles anything); else in two on the
        widest log-variance element at the power of two midway between the bit lengths of its magnitudes; None where
        nothing is left to split."""
        spanning = [i for i in range(len(self.lo)) if self.lo[i] < 0 < self.hi[i]]
        if spanning:
            return self._cut(max(spanning, key=lambda i: self.hi[i] - self.lo[i]), 0)
        fixed = {element for element, _ in self.phases}
        free = [element for element in order if element not in fixed][:PHASES_AT_ONCE]
        if free:
            return tuple(dataclasses.replace(self, phases=self.phases + tuple(zip(free, sides)))
                         for sides in itertools.product((False, True), repeat=len(free)))
        e = max(range(len(self.lo)), key=lambda i: self.hi[i] - self.lo[i])
        lo, hi = self.lo[e], self.hi[e]
        if lo == hi:
            return None
        near, far = sorted((abs(lo), abs(hi)))
        middle = 1 << ((near.bit_length() + far.bit_length()) // 2)
        return self._cut(e, min(max(middle, near), far - 1) if lo >= 0 else -min(max(middle + 1, near + 1), far))

    def _cut(self, e: int, cut: int) -> tuple:
        """The halves of log-variance element `e`'s box at or below `cut` and above it."""
        below = dataclasses.replace(self, hi=self.hi[:e] + (cut,) + self.hi[e + 1:])
        return below, dataclasses.replace(self, lo=self.lo[:e] + (cut + 1,) + self.lo[e + 1:])

    def held(self, logvar: str, kinks: dict) -> dict:
        """The ranges the region holds the program's variables within: the log-variance box, and each fixed
        element's argument on its side of the kink (`kinks` from `LinearProgram.kinks`)."""
        box = {logvar: dict(enumerate(zip(self.lo, self.hi)))}
        for element, above in self.phases:
            variable, e, cut = kinks[element]
            box.setdefault(variable, {})[e] = (cut + 1, np.inf) if above else (-np.inf, cut)
        return box

    def describe(self, whole: "Region", logvar: str, parent: str) -> str:
        """The sign pattern, the log-variance box where it is narrower than `whole`'s, and the phases fixed."""
        signs = "(" + ",".join("+" if s > 0 else "-" for s in self.signs) + ")"
        narrowed = [f"{e}: [{lo}, {hi}]" for e, (lo, hi) in enumerate(zip(self.lo, self.hi))
                    if (lo, hi) != (whole.lo[e], whole.hi[e])]
        text = signs + (f" with {logvar!r} codes {{{', '.join(narrowed)}}}" if narrowed else "")
        if self.phases:
            sides = ", ".join(f"{e} {'above' if above else 'at or below'}" for e, above in self.phases)
            text += f" and {parent!r} {sides} its kink"
        return text


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


def kl_overflow_proof(manifest: Manifest, enclosure: Enclosure, layer, t: FixedType, seconds: float,
                      solvers: int = 1, log=lambda message: None) -> KlOverflow:
    """Why no input puts the KL head's score outside type `t` (per region, the mean floor and the mixed-integer
    program, within `seconds`, with no solution beyond it), or what was not settled; `solvers` regions are examined
    at once (threads: the solver leaves Python while it works); `log` hears how far it got after each level of
    splits."""
    mean, logvar = layer.inputs
    m_lo, m_hi = enclosure.outputs[mean]
    n = len(m_lo)
    if 2 ** n > PATTERN_LIMIT:
        return KlOverflow(None, f"{2 ** n} sign patterns of {mean!r}, more than {PATTERN_LIMIT} are not attempted")
    whole = Region((), *(tuple(int(v) for v in bound) for bound in enclosure.outputs[logvar]))
    program = LinearProgram(manifest, enclosure, layer.name)
    parent = manifest.layer(mean).inputs[0]
    kinks = program.kinks(parent)
    order = _by_influence(enclosure, mean, parent, kinks)

    def excluded(region: Region) -> int | None:
        """The region's mean floor where no input lies in it (the means' enclosure or the program says so)."""
        c = mean_floor(manifest, enclosure, layer, t, (np.array(region.lo), np.array(region.hi)))
        if c is None or any((m_hi[e] < c) if s > 0 else (m_lo[e] > -c) for e, s in enumerate(region.signs)):
            return c
        name, ranges = _floors(manifest, enclosure, program, mean, c)
        return c if program.excludes_all(name, {e: ranges[e][s > 0] for e, s in enumerate(region.signs)}, seconds,
                                         region.held(logvar, kinks)) else None

    queue = [Region(signs, whole.lo, whole.hi) for signs in itertools.product((1, -1), repeat=n)]
    floors, unsettled, examined, solvers = [], [], 0, max(1, solvers)
    with ThreadPoolExecutor(max_workers=solvers) as pool:
        while queue:  # one level of splits at a time, its regions `solvers` at once
            level, queue = queue, []
            examined += len(level)
            for region, c in zip(level, pool.map(excluded, level)):
                if c is not None:
                    floors.append(c)
                    continue
                parts = region.parts(order)
                if parts is None or examined + len(queue) + len(parts) > REGION_LIMIT:
                    unsettled.append(region)
                else:
                    queue.extend(parts)
            split = examined - len(floors) - len(unsettled)
            log(f"narrower {layer.name!r} ({t}): of {examined} regions examined, {len(floors)} excluded, {split} "
                f"split, {len(unsettled)} left open; {len(queue)} parts next ({seconds:g} s per program, "
                f"{solvers} at once)")
    regions = f"{len(floors) + len(unsettled)} regions (sign pattern of {mean!r}, box of {logvar!r})"
    if unsettled:
        shown = ", ".join(region.describe(whole, logvar, parent) for region in unsettled)
        return KlOverflow(None, f"the mixed-integer program excludes {len(floors)} of {regions} within {seconds:g} s "
                                f"each, not {shown}")
    far = f"{min(floors)}" if min(floors) == max(floors) else f"{min(floors)} to {max(floors)} (by region)"
    return KlOverflow(f"the score leaves {t} only where every element of {mean!r} lies {far} codes or more from zero "
                      f"(interval analysis of the head with any one of them nearer), and no input puts them all there "
                      f"in any of {regions}: the means' enclosure or the mixed-integer relaxation of the model up to "
                      f"the head rules each one out")


def _by_influence(enclosure: Enclosure, mean: str, parent: str, kinks: dict) -> tuple:
    """The kinked elements of the means' parent, the most influential first: by the sum of the magnitudes of their
    weights into the means times the width of their range; none where the means are not a weighted sum of it."""
    relation = enclosure.affine.relations.get(mean)
    if relation is None or relation.weights is None:
        return ()
    lo, hi = enclosure.outputs[parent]
    influence = np.abs(relation.weights).sum(axis=0) * (np.asarray(hi, np.float64) - lo)
    return tuple(sorted(kinks, key=lambda e: -influence[e]))


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


__all__ = ["KlOverflow", "PATTERN_LIMIT", "PHASES_AT_ONCE", "REGION_LIMIT", "Region", "kl_overflow_proof", "mean_floor"]
