"""Linear-programming bounds: the model from the affine basis up to one layer as a linear program over real-valued
codes, every relation the affine refinement recorded (each candidate line of every element-local function and
cast, the exact sums of dense, convolution and pooling layers) as a constraint, every tensor within its enclosure.
Maximising or minimising one output code or pre-cast sum bounds it over the whole input range, more tightly than
the affine forms, which keep one line per element.

The program is solved in floating point (HiGHS); a bound is widened by a margin before it proves anything.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from emulator.manifest import Manifest

MARGIN = 2.0
"""Codes a bound is widened by, on top of a relative 1e-7, against the solver's tolerances."""


class LinearProgram:
    """The relaxation of the layers between the basis and `last` (its ancestors), ready to bound any of their
    output codes or pre-cast sums."""

    def __init__(self, manifest: Manifest, enclosure, last: str):
        affine = enclosure.affine
        wanted = _ancestors(manifest, last, affine.basis)
        self.index, bounds = {}, []
        for name in [affine.basis] + [layer.name for layer in manifest.layers if layer.name in wanted]:
            lo, hi = enclosure.outputs[name]
            self.index[name] = len(bounds)
            bounds += list(zip(lo.tolist(), hi.tolist()))
            relation = affine.relations.get(name)
            if relation is not None and relation.weights is not None:
                hull = enclosure.sites[name]["result"]
                self.index[f"{name}:sum"] = len(bounds)
                bounds += list(zip(hull.lo.tolist(), hull.hi.tolist()))
        self.bounds = bounds
        rows, self.upper = _Rows(), []
        for name in wanted:
            relation = affine.relations.get(name)
            layer = manifest.layer(name)
            parent = layer.inputs[0]
            if relation is None or parent not in self.index:
                continue  # the output is only held within its enclosure
            y = self.index[name] + np.arange(layer.size)
            if relation.weights is None:
                live = relation.source >= 0
                argument = self.index[parent] + relation.source
                _lines(rows, y[live], argument[live], relation.alpha[:, live], relation.low[:, live],
                       relation.high[:, live])
            else:
                s = self.index[f"{name}:sum"] + np.arange(len(relation.offset))
                x = self.index[parent]
                r, c = np.nonzero(relation.weights)
                for sign in (1.0, -1.0):  # sign * (s - W x) <= sign * offset + slack
                    rows.add(np.r_[np.arange(len(s)), r], np.r_[s, x + c],
                             np.r_[np.full(len(s), sign), -sign * relation.weights[r, c]],
                             sign * relation.offset + relation.slack)
                _lines(rows, y, s, relation.alpha, relation.low, relation.high)
        self.matrix, self.rhs = rows.build(len(bounds))

    def bound(self, name: str, element: int, maximise: bool) -> float | None:
        """The widened maximum (or minimum) of variable `name` (a tensor, or `layer:sum` for a layer's pre-cast
        sums) at `element`; None when the solver gives no optimum."""
        cost = np.zeros(len(self.bounds))
        cost[self.index[name] + element] = -1.0 if maximise else 1.0
        result = linprog(cost, A_ub=self.matrix, b_ub=self.rhs, bounds=self.bounds, method="highs")
        if result.status != 0:
            return None
        value = -result.fun if maximise else result.fun
        margin = MARGIN + 1e-7 * abs(value)
        return value + margin if maximise else value - margin


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
        if not self.count:
            return None, None
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


def lp_proofs(manifest: Manifest, enclosure, bin_ids, targets: dict) -> dict:
    """{bin id: proof} for bins the linear program proves unreachable: bins of a dense, convolution or pooling
    layer's result cast (its sum bounded), and bins translated into code targets (their anchor's code bounded)."""
    programs, proofs = {}, {}
    for bin_id in bin_ids:
        layer, site, element, kind = bin_id.split("/")
        element = int(element)
        target = targets.get(bin_id)
        name = target.layer if target is not None else layer
        relation = enclosure.affine.relations.get(name)
        if relation is None or (target is None and (site != "result" or relation.weights is None)):
            continue
        if name not in programs:
            programs[name] = LinearProgram(manifest, enclosure, name)
        program = programs[name]
        if target is not None:
            e = target.element
            lo, hi = program.bound(name, e, False), program.bound(name, e, True)
            if lo is not None and hi is not None and not _meets(target, np.ceil(lo), np.floor(hi)):
                proofs[bin_id] = (f"linear relaxation: {name!r} element {e} holds codes in [{np.ceil(lo):.0f}, "
                                  f"{np.floor(hi):.0f}], none of which reaches it (exhaustive over the chain)")
            continue
        hull = enclosure.sites[name]["result"]
        maximise = kind in ("sat_high", "at_max", "wrap")
        sides = (True, False) if kind == "wrap" else (maximise,)
        for side in sides:
            value = program.bound(f"{name}:sum", element, side)
            if value is None:
                break
            if side:
                hull.hi[element] = min(hull.hi[element], int(np.floor(value)))
            else:
                hull.lo[element] = max(hull.lo[element], int(np.ceil(value)))
        proof = enclosure.proof(bin_id)
        if proof is not None:
            proofs[bin_id] = f"linear relaxation: {proof}"
    return proofs


def _meets(target, lo: float, hi: float) -> bool:
    """Whether any code of the target lies in [lo, hi]."""
    return bool(((target.starts <= hi) & (target.ends >= lo)).any())
