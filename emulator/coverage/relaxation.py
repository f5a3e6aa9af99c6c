"""Linear-programming bounds: the model from the affine basis up to one layer as a linear program over real-valued
codes, every relation the affine refinement recorded (each candidate line of every element-local function and
cast, the exact sums of dense, convolution and pooling layers) as a constraint, every tensor within its enclosure.
Maximising or minimising one output code or pre-cast sum bounds it over the whole input range, more tightly than
the affine forms, which keep one line per element. The mixed-integer version adds, per element-local function
whose input range spans its split code (the kink of a ReLU, the knee of a saturation), a binary choosing the side,
with the lines of that side, keeps the codes of narrow variables integral (a cast's lines then pin its code, since
they carry only its rounding's error) and covers the cone of the one element bounded: on coarse grids it is then
exact. Behind a bottleneck (the latent code of an autoencoder), the program of what follows it alone, from its
enclosure, is looser but small enough to solve where the whole one is not. The mixed-integer program proves a bin
unreachable by having no solution at all where the bin is reached (the code target's span, or the pre-cast sums
past the edge the bin needs): the solver prunes every branch whose linear bound falls short of that, where
bounding the maximum would go on to prove how far short.

The programs are solved in floating point (HiGHS, within a time limit); a bound is widened, and a range asked about
is widened, by a margin before it proves anything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import coo_matrix, hstack, vstack

from emulator.manifest import Manifest
from emulator.plan import plan_layer

MARGIN = 2.0
"""Codes a bound is widened by, on top of a relative 1e-7, against the solver's tolerances."""
EXCLUDED = "excluded"
"""`LinearProgram.reach`'s answer for a box no solution of the mixed-integer program lies in."""
INTEGRAL_RANGE = 1024
"""Codes a variable may span and still be kept integral by the mixed-integer program: on a coarse grid (a 4-bit
activation) the code is what rounding decides; a wide one, nearly continuous, would only slow the solver down."""


@dataclass(frozen=True)
class Solution:
    """A solution of the mixed-integer program: the values of the variable asked about ({element: value}) and the
    basis codes it holds."""

    values: dict
    basis: np.ndarray


class LinearProgram:
    """The relaxation of the layers between the basis and `last` (its ancestors), ready to bound any of their
    output codes or pre-cast sums; with `element`, only of the elements that element of `last` depends on (its
    cone: a smaller program, for the mixed-integer bound of one element). `basis` replaces the affine basis by a
    tensor every path to `last` passes through (a `bottleneck`), held within its enclosure: a looser but much smaller
    program, of what lies after it."""

    def __init__(self, manifest: Manifest, enclosure, last: str, element: int | None = None, basis: str | None = None):
        affine = enclosure.affine
        self.basis = basis or affine.basis
        wanted = _ancestors(manifest, last, self.basis)
        cone = _cone(manifest, affine, wanted, last, element, self.basis) if element is not None else {}
        self.variable, bounds = {}, []  # tensor (or "layer:sum") -> its variable per element, -1 outside the cone

        def add(name: str, lo, hi) -> None:
            whole = np.arange(len(lo))
            elements = cone.get(name.split(":")[0], whole[:0]) if cone else whole
            self.variable[name] = np.full(len(lo), -1)
            self.variable[name][elements] = len(bounds) + np.arange(len(elements))
            bounds.extend(zip(np.asarray(lo)[elements].tolist(), np.asarray(hi)[elements].tolist()))

        for name in [self.basis] + [layer.name for layer in manifest.layers if layer.name in wanted]:
            add(name, *enclosure.outputs[name])
            relation = affine.relations.get(name)
            if relation is not None and relation.weights is not None:
                hull = enclosure.sites[name]["result"]
                add(f"{name}:sum", hull.lo, hull.hi)
        self.bounds = bounds
        self.basis_box = enclosure.outputs[self.basis]
        rows, self.splits = _Rows(), []
        for name in wanted:
            relation = affine.relations.get(name)
            layer = manifest.layer(name)
            parent = layer.inputs[0]
            if relation is None or parent not in self.variable:
                continue  # the output is only held within its enclosure
            elements = np.flatnonzero(self.variable[name] >= 0)
            y = self.variable[name][elements]
            if relation.weights is None:
                live = relation.source[elements] >= 0
                e = elements[live]
                argument = self.variable[parent][relation.source[e]]
                _lines(rows, y[live], argument, relation.alpha[:, e], relation.low[:, e], relation.high[:, e])
                self._add_splits(rows, relation, y[live], argument, e)
            else:
                sums = self.variable[f"{name}:sum"][elements]
                r, c = np.nonzero(relation.weights[elements])
                x = self.variable[parent][c]
                slack = np.broadcast_to(relation.slack, relation.offset.shape)[elements]
                for sign in (1.0, -1.0):  # sign * (s - W x) <= sign * offset + slack
                    rows.add(np.r_[np.arange(len(sums)), r], np.r_[sums, x],
                             np.r_[np.full(len(sums), sign), -sign * relation.weights[elements[r], c]],
                             sign * relation.offset[elements] + slack)
                _lines(rows, y, sums, relation.alpha[:, elements], relation.low[:, elements],
                       relation.high[:, elements])
                self._add_splits(rows, relation, y, sums, elements)
        self.matrix, self.rhs = rows.build(len(bounds))
        self._integer = None
        self._building = threading.Lock()  # threads solving at once build the integer rows once

    def _add_splits(self, rows, relation, y, a, elements) -> None:
        """Keep, per element whose argument range a split code cuts, (y, a, cutting codes, slopes, offsets per
        piece between them) for the mixed-integer program; an element whose argument lies within one piece (its
        range tightened past the split codes) gets that piece's lines as rows of the linear program."""
        if relation.split is None:
            return
        for yi, ai, e in zip(y, a, elements):
            a_lo, a_hi = self.bounds[ai]
            cuts = [j for j, m in enumerate(relation.split[:, e]) if a_lo <= m < a_hi]
            if not cuts:
                piece = int(np.sum(relation.split[:, e] < a_lo))
                _lines(rows, np.array([yi]), np.array([ai]), relation.alpha[:, [e]],
                       relation.split_low[piece][:, [e]], relation.split_high[piece][:, [e]])
                continue
            groups = np.split(np.arange(relation.split.shape[0] + 1), [j + 1 for j in cuts])
            low = np.stack([relation.split_low[g, :, e].min(axis=0) for g in groups])
            high = np.stack([relation.split_high[g, :, e].max(axis=0) for g in groups])
            self.splits.append((int(yi), int(ai), [int(relation.split[j, e]) for j in cuts], relation.alpha[:, e],
                                low, high))

    def kinks(self, name: str) -> dict:
        """{element of tensor `name`: (its argument's variable, element, first cutting code)} for the elements the
        mixed-integer program splits (the output of an element-local function whose argument range spans a kink)."""
        owner = {int(column): (variable, element) for variable, columns in self.variable.items()
                 for element, column in enumerate(columns) if column >= 0}
        found = {}
        for y, a, cuts, *_ in self.splits:
            variable, element = owner[y]
            if variable == name:
                found[element] = (*owner[a], cuts[0])
        return found

    def bound(self, name: str, element: int, maximise: bool, seconds: float = 0.0) -> float | None:
        """The widened maximum (or minimum) of variable `name` (a tensor, or `layer:sum` for a layer's pre-cast
        sums) at `element`, of the linear program, or with `seconds` of the mixed-integer one; None without one."""
        return self.optimum(name, element, maximise, seconds)[0]

    def optimum(self, name: str, element: int, maximise: bool, seconds: float = 0.0) -> tuple:
        """(the widened bound or None, the basis codes of the best solution found or None); `seconds` > 0 solves
        the mixed-integer program within that time."""
        cost = np.zeros(len(self.bounds))
        cost[self.variable[name][element]] = -1.0 if maximise else 1.0
        if seconds > 0 and self.splits:
            value, x = self._integer_solve(cost, seconds)
        else:
            result = linprog(cost, A_ub=self.matrix, b_ub=self.rhs, bounds=self.bounds, method="highs")
            value, x = (result.fun, result.x) if result.status == 0 else (None, None)
        basis = None if x is None else self._basis_codes(x)
        if value is None:
            return None, basis
        value = -value if maximise else value
        margin = MARGIN + 1e-7 * abs(value)
        return (value + margin if maximise else value - margin), basis

    def _basis_codes(self, x) -> np.ndarray:
        """The basis codes of solution `x`; elements outside the cone at the code of their range nearest zero."""
        basis = np.clip(0.0, *(np.asarray(v, dtype=np.float64) for v in self.basis_box))
        inside = self.variable[self.basis] >= 0
        basis[inside] = x[self.variable[self.basis][inside]]
        return basis

    def _integer_solve(self, cost, seconds: float) -> tuple:
        """(the solver's dual bound on min cost . x of the mixed-integer program, its best solution), None where
        there is none."""
        result = self._integer_result(cost, seconds)
        bound = getattr(result, "mip_dual_bound", None)
        return (None if bound is None or not np.isfinite(bound) else float(bound)), result.x

    def excludes_all(self, name: str, ranges: dict, seconds: float, held: dict | None = None) -> bool:
        """Whether the mixed-integer program proves, within `seconds`, that no solution holds every element of
        variable `name` within its range of `ranges` ({element: (lo, hi)}, each widened by the margin) at once
        (and the variables of `held` within theirs, see `reach`)."""
        return self.reach(name, ranges, seconds, held) is EXCLUDED

    def reach(self, name: str, ranges: dict, seconds: float, held: dict | None = None):
        """What the mixed-integer program, within `seconds`, says of the box `ranges` ({element: (lo, hi)}, each
        widened by the margin) of variable `name`: EXCLUDED (no solution lies in it), a Solution found in it, or None
        (the time ran out first). Each element is pushed toward its range (maximised when it lies in the upper half
        of its bounds), which guides the solver's branching; `held` ({variable: {element: (lo, hi)}}) keeps other
        variables within ranges too (widened alike), without pushing them."""
        cost, narrowed = np.zeros(len(self.bounds)), {}
        for variable, box in {**(held or {}), name: ranges}.items():
            for element, (lo, hi) in box.items():
                v = self.variable[variable][element]
                b_lo, b_hi = self.bounds[v]
                narrowed[v] = (max(b_lo, lo - MARGIN), min(b_hi, hi + MARGIN))
                if variable == name:
                    cost[v] = -1.0 if lo + hi >= b_lo + b_hi else 1.0
        if any(a > b for a, b in narrowed.values()):
            return EXCLUDED
        result = self._integer_result(cost, seconds, narrowed)
        if result.status == 2:
            return EXCLUDED
        if result.x is None:
            return None
        return Solution({element: float(result.x[self.variable[name][element]]) for element in ranges},
                        self._basis_codes(result.x))

    def _integer_result(self, cost, seconds: float, narrowed: dict | None = None):
        """scipy's result for min cost . x over the mixed-integer program, with the bounds of `narrowed`
        ({column: (lo, hi)})."""
        matrix, rhs, n_binary = self._integer_program()
        lo, hi = np.array(self.bounds, dtype=np.float64).T
        integral = hi - lo <= INTEGRAL_RANGE
        for column, (a, b) in (narrowed or {}).items():
            lo[column], hi[column] = a, b
        with _quiet():
            return milp(np.r_[cost, np.zeros(n_binary)], integrality=np.r_[integral, np.ones(n_binary)],
                        bounds=Bounds(np.r_[lo, np.zeros(n_binary)], np.r_[hi, np.ones(n_binary)]),
                        constraints=LinearConstraint(matrix, -np.inf, rhs), options={"time_limit": seconds})

    def _integer_program(self):
        """(matrix, rhs, binaries) of the mixed-integer program, built on first use (once, whichever thread asks)."""
        with self._building:
            if self._integer is None:
                self._integer = self._integer_rows()
        return self._integer

    def _integer_rows(self):
        """The linear rows, plus per cutting code of an element a binary z (1: the argument lies above the code) and
        the lines of each piece, enforced on that piece only (big-M from the variables' bounds)."""
        rows, n = _Rows(), len(self.bounds)
        column = n
        for y, a, cuts, alpha, low, high in self.splits:
            (a_lo, a_hi), (y_lo, y_hi) = self.bounds[a], self.bounds[y]
            z = list(range(column, column + len(cuts)))
            column += len(cuts)
            for zj, m in zip(z, cuts):
                rows.add([0, 0], [a, zj], [1.0, -(a_hi - m)], [m])  # z = 0: a <= m
                rows.add([0, 0], [a, zj], [-1.0, m + 1 - a_lo], [-a_lo])  # z = 1: a >= m + 1
            for piece in range(len(cuts) + 1):
                below = z[piece - 1] if piece > 0 else None  # the piece needs this one 1 ...
                above = z[piece] if piece < len(cuts) else None  # ... and this one 0
                for k in range(len(alpha)):
                    for sign, offset in ((1.0, high[piece, k]), (-1.0, -low[piece, k])):
                        if not np.isfinite(offset):
                            continue
                        worst = max(sign * yv - sign * alpha[k] * av for yv in (y_lo, y_hi) for av in (a_lo, a_hi))
                        big_m = max(worst - offset, 0.0)
                        cols, values, rhs = [y, a], [sign, -sign * alpha[k]], offset
                        if below is not None:
                            cols, values, rhs = cols + [below], values + [big_m], rhs + big_m
                        if above is not None:
                            cols, values = cols + [above], values + [-big_m]
                        rows.add([0] * len(cols), cols, values, [rhs])
        n_binary = column - n
        extra, extra_rhs = rows.build(n + n_binary)
        base = hstack([self.matrix, coo_matrix((self.matrix.shape[0], n_binary))])
        return vstack([base, extra]).tocsr(), np.r_[self.rhs, extra_rhs], n_binary


class _Rows:
    """Sparse inequality rows A x <= b, added in blocks."""

    def __init__(self):
        self.r, self.c, self.v, self.b = [], [], [], []
        self.count = 0

    def add(self, local_rows, cols, values, rhs):
        """Rows numbered 0..len(rhs)-1 within the block, entries at (local row, col)."""
        self.r.append(np.asarray(local_rows) + self.count)
        self.c.append(np.asarray(cols))
        self.v.append(np.asarray(values, dtype=np.float64))
        self.b.append(np.asarray(rhs, dtype=np.float64))
        self.count += len(rhs)

    def build(self, n_columns: int):
        """(A as a sparse matrix of `n_columns` columns, b); no rows: an empty A."""
        if not self.count:
            return coo_matrix((0, n_columns)).tocsr(), np.zeros(0)
        matrix = coo_matrix((np.concatenate(self.v), (np.concatenate(self.r), np.concatenate(self.c))),
                            shape=(self.count, n_columns)).tocsr()
        return matrix, np.concatenate(self.b)


def _lines(rows: _Rows, y, a, alpha, low, high) -> None:
    """alpha[k] a + low[k] <= y <= alpha[k] a + high[k] for every candidate k (skipping infinite offsets)."""
    for k in range(alpha.shape[0]):
        for sign, offset in ((1.0, high[k]), (-1.0, -low[k])):  # sign * (y - alpha a) <= offset
            ok = np.isfinite(offset)
            local = np.arange(int(ok.sum()))
            rows.add(np.r_[local, local], np.r_[y[ok], a[ok]], np.r_[np.full(len(local), sign), -sign * alpha[k][ok]],
                     offset[ok])


def _cone(manifest: Manifest, affine, wanted: list, last: str, element: int, basis: str) -> dict:
    """{tensor: the sorted elements that element `element` of `last` depends on through the relations}, for `last`,
    its ancestors `wanted` and the basis."""
    needed = {last: {element}}
    for name in reversed(wanted):
        relation = affine.relations.get(name)
        parent = manifest.layer(name).inputs[0]
        rows = np.array(sorted(needed.get(name, ())), dtype=np.int64)
        if relation is None or parent not in wanted + [basis] or not len(rows):
            continue
        if relation.weights is None:
            sources = relation.source[rows]
            parents = sources[sources >= 0]
        else:
            parents = np.flatnonzero(relation.weights[rows].any(axis=0))
        needed.setdefault(parent, set()).update(parents.tolist())
    return {name: np.array(sorted(elements), dtype=np.int64) for name, elements in needed.items()}


def bottleneck(manifest: Manifest, basis: str, last: str) -> str | None:
    """The narrowest tensor, fewer elements than `basis`, on the chain of single-input layers from `last` back to
    `basis` (every path to `last` passes through it: the latent code of an autoencoder), or None."""
    best, name = None, manifest.layer(last).inputs
    narrowest = int(np.prod(manifest.producer_shape(basis)))
    while len(name) == 1 and name[0] not in (basis, manifest.input.name):
        layer = manifest.layer(name[0])
        if layer.size < narrowest:
            best, narrowest = layer, layer.size
        name = layer.inputs
    return None if best is None or name != [basis] else best.name


def _ancestors(manifest: Manifest, last: str, basis: str) -> list:
    """Layer names from after the basis up to `last` that `last` depends on, in manifest order."""
    needed, stack = set(), [last]
    while stack:
        name = stack.pop()
        if name in needed or name == basis or name == manifest.input.name:
            continue
        needed.add(name)
        stack += manifest.layer(name).inputs
    return [layer.name for layer in manifest.layers if layer.name in needed]


def lp_proofs(manifest: Manifest, enclosure, bin_ids, targets: dict, seconds: float = 30.0) -> tuple:
    """({bin id: proof} for bins the linear program (its bounds), else, within `seconds` > 0 each, the mixed-integer
    program after the bin's bottleneck, then the whole one (no solution reaching the bin), proves unreachable: bins of
    a dense, convolution or pooling layer's result cast (its sums), and bins translated into code targets (their
    anchor's code); {bin id: basis codes of a solution of the whole program that reaches the bin}, starts for a
    search)."""
    programs, proofs, reached, same = {}, {}, {}, {}
    for bin_id in bin_ids:
        target = targets.get(bin_id)
        if target is not None:  # copies of an element (upsampling, padding) share one target: prove it once
            if target.key in same:
                if same[target.key] is not None:
                    proofs[bin_id] = same[target.key]
                continue
        attempts = [(0.0, False)] + ([(seconds, True), (seconds, False)] if seconds else [])
        for limit, after in attempts:  # the linear program, the mixed-integer one after a bottleneck, the whole one
            program = _program(manifest, enclosure, programs, bin_id, target, cone=limit > 0, after=after)
            proof, solution = (None, None) if program is None else _prove(program, enclosure, bin_id, target, limit)
            if solution is not None and not after:
                reached[bin_id] = solution.basis
            if proof is not None:
                how = "mixed-integer relaxation" if limit else "linear relaxation"
                start = f" from {program.basis!r} within its enclosure" if after else ""
                proofs[bin_id] = f"{how}{start}: {proof}"
                break
        if target is not None:
            same[target.key] = proofs.get(bin_id)
    return proofs, reached


def _program(manifest: Manifest, enclosure, programs: dict, bin_id: str, target, cone: bool = False,
             after: bool = False):
    """The program (kept in `programs` by last layer, element for a `cone` and basis) that bounds what `bin_id`
    depends on: its code target's anchor, or its layer's pre-cast sums; `after` a bottleneck, from there; None for a
    bin no program bounds (or with no bottleneck before it)."""
    layer, site, element = bin_id.split("/")[:3]
    name, element = (target.layer, target.element) if target is not None else (layer, int(element))
    relation = enclosure.affine.relations.get(name)
    if relation is None or (target is None and (site != "result" or relation.weights is None)):
        return None
    basis = bottleneck(manifest, enclosure.affine.basis, name) if after else enclosure.affine.basis
    if basis is None:
        return None
    key = (name, element if cone else None, basis)
    if key not in programs:
        programs[key] = LinearProgram(manifest, enclosure, *key)
    return programs[key]


def _prove(program: LinearProgram, enclosure, bin_id: str, target, seconds: float) -> tuple:
    """(a proof from the program that the bin is unreachable, or None; a solution found that reaches it, or None):
    with `seconds` > 0, first that the mixed-integer program has no solution that reaches it (`_excluded`), then from
    its bounds, each within `seconds` (the solver settles some bins one way, some the other; not where the first
    found a solution that reaches the bin, which bounds only confirm); from the linear program's bounds otherwise."""
    layer, site, element, kind = bin_id.split("/")
    if target is not None:
        lo, hi = _anchor_range(enclosure, target)
        if not _meets(target, lo, hi):
            return _beyond(target, lo, hi), None
    if seconds > 0:
        proof, solution = _excluded(program, enclosure, bin_id, target, seconds)
        if proof is not None or solution is not None:
            return proof, solution
    if target is not None:
        for maximise in ruling_sides(target, lo, hi):
            value = program.bound(target.layer, target.element, maximise, seconds)
            if value is not None:
                lo, hi = (lo, min(hi, value)) if maximise else (max(lo, value), hi)
            if not _meets(target, np.ceil(lo), np.floor(hi)):
                return _beyond(target, np.ceil(lo), np.floor(hi)), None
        return None, None
    element = int(element)
    hull = enclosure.sites[layer]["result"]
    maximise = kind in ("sat_high", "at_max", "wrap")
    for side in ((True, False) if kind == "wrap" else (maximise,)):
        value = program.bound(f"{layer}:sum", element, side, seconds)
        if value is None:
            return None, None
        if side:
            hull.hi[element] = min(hull.hi[element], int(np.floor(value)))
        else:
            hull.lo[element] = max(hull.lo[element], int(np.ceil(value)))
    return enclosure.proof(bin_id), None


def _excluded(program: LinearProgram, enclosure, bin_id: str, target, seconds: float) -> tuple:
    """(a proof that the mixed-integer program, within `seconds`, has no solution where the bin's anchor holds a code
    of its target (all of them between the first and the last in range, which holds one), or where the layer's
    pre-cast sum lies past the edge that reaching the bin needs, or None; a solution it found that reaches the bin,
    or None)."""
    layer, site, element, kind = bin_id.split("/")
    if target is not None:
        name, e = target.layer, target.element
        lo, hi = _anchor_range(enclosure, target)
        inside = (target.starts <= hi) & (target.ends >= lo)
        first, last = max(lo, int(target.starts[inside].min())), min(hi, int(target.ends[inside].max()))
        answer = program.reach(name, {e: (first, last)}, seconds)
        if answer is not EXCLUDED:
            code = None if answer is None else round(answer.values[e])
            return None, answer if code is not None and _meets(target, code, code) else None
        return (f"{name!r} element {e} never holds a code in [{first}, {last}] (the program has no solution there), "
                f"and only codes there reach it (exhaustive over the chain)"), None
    if kind == "wrap":
        return None, None
    element = int(element)
    hull = enclosure.sites[layer]["result"]
    maximise = kind in ("sat_high", "at_max")
    edge = _edge(enclosure, hull, element, bin_id, maximise)
    if edge is None:
        return None, None
    lo, hi = (edge, int(hull.hi[element])) if maximise else (int(hull.lo[element]), edge)
    answer = program.reach(f"{layer}:sum", {element: (lo, hi)}, seconds)
    if answer is not EXCLUDED:
        return None, answer
    if maximise:
        hull.hi[element] = edge - 1
    else:
        hull.lo[element] = edge + 1
    return enclosure.proof(bin_id), None


def _edge(enclosure, hull, element: int, bin_id: str, maximise: bool) -> int | None:
    """The least pre-cast value (the greatest, not `maximise`) of the enclosure that the bin needs: cut the
    enclosure short of it and the bin is proved unreachable; None where no cut proves it."""
    lo, hi = int(hull.lo[element]), int(hull.hi[element])

    def proves(end: int) -> bool:
        if maximise:
            hull.hi[element] = end
        else:
            hull.lo[element] = end
        try:
            return enclosure.proof(bin_id) is not None
        finally:
            hull.lo[element], hull.hi[element] = lo, hi

    if lo > hi or not proves(lo if maximise else hi):
        return None
    good, bad = (lo, hi + 1) if maximise else (hi, lo - 1)  # proves(good); the edge lies between them
    while abs(bad - good) > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if proves(middle) else (good, middle)
    return bad


def witnesses(manifest: Manifest, enclosure, bin_ids, targets: dict, seconds: float, limit: int = 32) -> np.ndarray:
    """Input events from the best solutions, within `seconds` each, of the mixed-integer program over the bin's cone
    (the linear one for 0) pushing toward the bins (at most `limit` conditions): the relaxation's optimum, mapped back
    to input codes, lies near events that reach them (or reaches them); starts for a search."""
    programs, basis, done = {}, [], set()
    for bin_id in bin_ids:
        layer, site, element, kind = bin_id.split("/")
        target = targets.get(bin_id)
        if target is not None and target.key in done:  # copies of an element share one target
            continue
        if len(done) == limit:
            break
        done.add(bin_id if target is None else target.key)
        program = _program(manifest, enclosure, programs, bin_id, target, cone=seconds > 0)
        if program is None:
            continue
        if target is not None:
            lo, hi = _anchor_range(enclosure, target)
            sides = [(target.layer, target.element, maximise) for maximise in ruling_sides(target, lo, hi)]
        else:
            sides = [(f"{layer}:sum", int(element), kind in ("sat_high", "at_max", "wrap"))]
        for variable, e, maximise in sides:
            x = program.optimum(variable, e, maximise, seconds)[1]
            if x is not None:
                basis.append(x)
    if not basis:
        return np.zeros((0, manifest.input.size), dtype=np.int64)
    return basis_to_input(manifest, enclosure.affine.basis, np.array(basis))


def basis_to_input(manifest: Manifest, basis: str, values: np.ndarray) -> np.ndarray:
    """(N, n_in) input codes whose basis codes lie nearest to `values` (N, n_in): the basis is the input, or an
    element-by-element layer of it (evaluated on every input code)."""
    t = manifest.input.type
    if basis == manifest.input.name:
        return np.clip(np.round(values), t.min_code, t.max_code).astype(np.int64)
    step = plan_layer(manifest.layer(basis), manifest)
    best = np.full(values.shape, np.inf)
    chosen = np.zeros(values.shape, dtype=np.int64)
    for begin in range(t.min_code, t.max_code + 1, 4096):
        codes = np.arange(begin, min(begin + 4096, t.max_code + 1), dtype=np.int64)
        out = step([np.repeat(codes[:, None], values.shape[1], axis=1)]).astype(np.float64)  # (codes, n_in)
        gap = np.abs(out[None] - values[:, None])  # (N, codes, n_in)
        row = np.argmin(gap, axis=1)
        nearest = np.take_along_axis(gap, row[:, None], axis=1)[:, 0]
        better = nearest < best
        best = np.where(better, nearest, best)
        chosen = np.where(better, codes[row], chosen)
    return chosen


def _beyond(target, lo, hi) -> str:
    """The proof of a target whose anchor holds only codes in [lo, hi], none of them the target's."""
    return (f"{target.layer!r} element {target.element} holds codes in [{lo:.0f}, {hi:.0f}], none of which reaches it "
            f"(exhaustive over the chain)")


def _anchor_range(enclosure, target) -> tuple:
    """(lo, hi): the codes the target's anchor element can hold, by the enclosure."""
    return tuple(int(v[target.element]) for v in enclosure.outputs[target.layer])


def ruling_sides(target, lo: float, hi: float) -> tuple:
    """Which bounds of the target's anchor, held in [lo, hi], can prove it missed: its maximum (True) unless the
    target holds the code lo, its minimum (False) unless it holds hi."""
    lo, hi = np.ceil(lo), np.floor(hi)
    return tuple(side for side, end in ((True, lo), (False, hi)) if not _meets(target, end, end))


def _meets(target, lo: float, hi: float) -> bool:
    """Whether any code of the target lies in [lo, hi]."""
    return bool(((target.starts <= hi) & (target.ends >= lo)).any())


class _Silence:
    """Silences what the solver's C++ prints on the process's stdout and stderr while any solve runs: solves running
    at once (in threads) share one redirection, which the last to finish undoes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._solving = 0
        self._saved = ()

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if not self._solving:
                sys.stdout.flush()
                sys.stderr.flush()
                self._saved = (os.dup(1), os.dup(2))
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                os.close(null)
            self._solving += 1
        try:
            yield
        finally:
            with self._lock:
                self._solving -= 1
                if not self._solving:
                    for fd, saved in zip((1, 2), self._saved):
                        os.dup2(saved, fd)
                        os.close(saved)


_quiet = _Silence()
