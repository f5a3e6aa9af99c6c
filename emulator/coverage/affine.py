"""Affine bounds, the relational refinement of the interval enclosure: every tensor element lies between two affine
functions of the basis codes, so the sums of a dense or convolution layer no longer add the extremes of correlated
inputs as if they were independent. The basis is the model input, or the output of the one layer reading it when
that layer is element by element (an input batchnorm): each basis element is a function of its own input element,
so the basis ranges over the product of their intervals.

Sums are exact affine maps of their inputs' bounds; an element-local layer, a function of one code, is bounded by
two lines valid at every code its input can hold (it is evaluated on all of them); a cast by two lines valid over
its pre-cast range (the clipped value, within one code of rounding). Bounds are computed in float64 and rounded
outward with a margin. A layer whose sums could saturate, or whose op has no affine transfer, keeps its interval
enclosure (its bounds become constant functions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.manifest import Manifest
from emulator.plan import gather_index, im2col_index, plan_layer, pool_windows, summation_order

SWEEP_LIMIT = 1 << 20
"""Most input codes an element-local layer is evaluated on; wider inputs keep the interval enclosure."""
ELEMENT_LOCAL = ("batchnorm", "relu", "leaky_relu", "linear", "reshape", "zeropad2d", "upsampling2d")
_CHUNK = 4096
_SATURATING = ("SAT", "SAT_SYM")


@dataclass
class Relation:
    """How a layer's output codes y relate to their arguments a, for every candidate line k:
    alpha[k] * a + low[k] <= y <= alpha[k] * a + high[k]. Element-local layers: a_e is element `source[e]` of the
    input (-1: y_e is 0). Sums: a = weights @ x + offset, within +-slack, x the input's codes."""

    alpha: np.ndarray
    low: np.ndarray
    high: np.ndarray
    source: np.ndarray | None = None
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    slack: float = 0.0


class AffineBounds:
    """Lower and upper affine forms, (elements, basis size + 1) float64 (the last column the constant), per tensor."""

    def __init__(self, manifest: Manifest, box_lo, box_hi):
        readers = [layer for layer in manifest.layers if manifest.input.name in layer.inputs]
        first = readers[0] if len(readers) == 1 else None
        elementwise = first is not None and first.op in ("batchnorm", "relu", "leaky_relu", "linear")
        self.basis = first.name if elementwise else manifest.input.name
        self.forms = {}
        self.relations = {}  # layer name -> Relation (for the linear program of relaxation.py)
        self.box_lo = self.box_hi = np.zeros(manifest.input.size)  # the basis's box, once it is known
        self._set_basis(manifest.input.name, box_lo, box_hi)

    def _set_basis(self, name: str, lo, hi) -> None:
        """Where `name` is the basis: identity forms over the box [lo, hi]; another tensor: constant forms."""
        if name == self.basis:
            self.box_lo, self.box_hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
            identity = np.hstack([np.eye(len(lo)), np.zeros((len(lo), 1))])
            self.forms[name] = (identity, identity.copy())
        else:
            self.forms[name] = _constant(np.asarray(lo), np.asarray(hi), None, self.box_lo.size)

    def bounds(self, lower, upper) -> tuple:
        """Integer (lo, hi) enclosing the forms over the input box, rounded outward."""
        lo = lower[:, -1] + np.minimum(lower[:, :-1] * self.box_lo, lower[:, :-1] * self.box_hi).sum(axis=1)
        hi = upper[:, -1] + np.maximum(upper[:, :-1] * self.box_lo, upper[:, :-1] * self.box_hi).sum(axis=1)
        scale = np.abs(lower[:, :-1]) @ np.maximum(np.abs(self.box_lo), np.abs(self.box_hi)) + np.abs(lower[:, -1])
        scale = np.maximum(scale, np.abs(upper[:, :-1]) @ np.maximum(np.abs(self.box_lo), np.abs(self.box_hi))
                           + np.abs(upper[:, -1]))
        margin = 1e-9 * scale + 1e-6
        limit = 2.0 ** 62
        return (np.floor(np.clip(lo - margin, -limit, limit)).astype(np.int64),
                np.ceil(np.clip(hi + margin, -limit, limit)).astype(np.int64))

    def refine(self, layer, manifest: Manifest, inputs: list, hulls: list, out: tuple) -> tuple:
        """Record the forms of `layer`'s output; tighten its site hulls; return its output enclosure (tightened)."""
        if layer.name == self.basis or (self.basis != manifest.input.name and manifest.input.name in layer.inputs):
            self._set_basis(layer.name, *out)
            return out
        if layer.op in ELEMENT_LOCAL:
            forms = self._element_local(layer, manifest, inputs[0])
        elif layer.op in ("dense", "conv2d"):
            forms = self._matmul(layer, manifest, hulls)
        elif layer.op == "avgpool2d":
            forms = self._average(layer, manifest, hulls)
        else:
            forms = None
        lo, hi = out
        self.forms[layer.name] = _constant(lo, hi, forms, self.box_lo.size)
        f_lo, f_hi = self.bounds(*self.forms[layer.name])
        return np.maximum(lo, f_lo), np.minimum(hi, f_hi)

    def _running_sums(self, start, terms) -> tuple:
        """Forms of start + sum of weighted terms, and the enclosure of every partial sum: `terms` are (lower forms,
        upper forms) of (rows, inputs + 1) with weights (outputs,), giving sums of (rows * outputs) elements."""
        lower, upper = start.copy(), start.copy()
        partial_lo = np.full(len(start), np.iinfo(np.int64).max)
        partial_hi = np.full(len(start), np.iinfo(np.int64).min)
        for xl, xu, weight in terms:
            wt = weight[None, :, None]
            lower += np.where(wt >= 0, wt * xl[:, None], wt * xu[:, None]).reshape(len(start), -1)
            upper += np.where(wt >= 0, wt * xu[:, None], wt * xl[:, None]).reshape(len(start), -1)
            p_lo, p_hi = self.bounds(lower, upper)
            partial_lo, partial_hi = np.minimum(partial_lo, p_lo), np.maximum(partial_hi, p_hi)
        return lower, upper, partial_lo, partial_hi

    # ---- transfers ---------------------------------------------------------------------------------------
    def _element_local(self, layer, manifest, interval):
        """y_e = f_e(x_src): two lines per element from f evaluated on every code of x_src's range."""
        step = plan_layer(layer, manifest)
        x_lo, x_hi = interval
        first, last = int(x_lo.min()), int(x_hi.max())
        if last - first + 1 > SWEEP_LIMIT:
            return None
        source = element_source(layer)
        inside = source >= 0
        src = np.where(inside, source, 0)
        lines = _Lines(x_lo[src], x_hi[src])
        chunks = [np.arange(begin, min(begin + _CHUNK, last + 1), dtype=np.int64)
                  for begin in range(first, last + 1, _CHUNK)]
        run = lambda codes: step([np.repeat(codes[:, None], x_lo.size, axis=1)])  # noqa: E731
        for codes in chunks:
            lines.fit(codes, run(codes))
        lines.fix_slopes()
        for codes in chunks:
            lines.offsets(codes, run(codes))
        alpha, low, high = lines.candidates()
        self.relations[layer.name] = Relation(alpha, low, high, source=np.where(inside, source, -1))
        lower, upper = self.forms[layer.inputs[0]]
        out = _compose(lower[src], upper[src], *_least_area(alpha, low, high, lines.l, lines.u))
        return tuple(np.where(inside[:, None], f, 0.0) for f in out)

    def _matmul(self, layer, manifest, hulls):
        """Partial sums bias + sum w*x as forms; the result cast by two lines."""
        bias, product, accum, result = hulls
        acc_t = accum.site.type
        up = acc_t.fractional - product.site.source_frac
        b = layer.tensors["bias"].ravel() << max(acc_t.fractional - bias.site.source_frac, 0)
        if up < 0 or bias.site.source_frac > acc_t.fractional or b.min() < acc_t.min_code or b.max() > acc_t.max_code:
            return None
        index = (np.arange(layer.params["n_in"]).reshape(1, -1) if layer.op == "dense"
                 else im2col_index(layer.params))
        n_pix, taps = index.shape
        w = layer.tensors["weight"].reshape(taps, -1).astype(np.float64) * 2.0 ** up
        n_out = w.shape[1]
        x_lower, x_upper = self.forms[layer.inputs[0]]
        start = np.zeros((n_pix * n_out, x_lower.shape[1]))
        start[:, -1] = np.tile(b.astype(np.float64), n_pix)
        lower, upper, partial_lo, partial_hi = self._running_sums(
            start, [(x_lower[index[:, t]], x_upper[index[:, t]], w[t]) for t in summation_order(layer, taps)])
        s_lo, s_hi = self.bounds(lower, upper)
        fits = lambda lo, hi: lo.min() >= acc_t.min_code and hi.max() <= acc_t.max_code  # noqa: E731
        if fits(accum.lo, accum.hi) or fits(partial_lo, partial_hi):  # no cast overflows: the sums are exact
            _tighten(accum, partial_lo, partial_hi)
        elif acc_t.overflow != "WRAP" or not fits(s_lo, s_hi):
            return None  # a wrapping sum is exact when its total fits: partial sums may wrap and come back
        _tighten(result, s_lo, s_hi)
        weights = np.zeros((n_pix, n_out, len(x_lower)))
        for t in range(taps):
            weights[np.arange(n_pix), :, index[:, t]] += w[t]
        return self._cast(layer, lower, upper, result, weights.reshape(n_pix * n_out, -1), start[:, -1], 0.0)

    def _cast(self, layer, lower, upper, result, weights, offset, slack):
        """Forms of the result codes cast from sums with the given forms (recording the relation)."""
        lines = _cast_lines(result.lo, result.hi, result.site)
        if lines is None:
            return None
        self.relations[layer.name] = Relation(*lines, weights=weights, offset=offset, slack=slack)
        return _compose(lower, upper, *_least_area(*lines, result.lo.astype(np.float64), result.hi.astype(np.float64)))

    def _average(self, layer, manifest, hulls):
        """Window sums as forms, the C division by the count within one code, the result cast by two lines."""
        accum, result = hulls
        x_frac, acc_t = manifest.producer_type(layer.inputs[0]).fractional, accum.site.type
        if x_frac > acc_t.fractional:
            return None
        window, count = pool_windows(layer.params)
        x_lower, x_upper = self.forms[layer.inputs[0]]
        one = np.full(1, 2.0 ** (acc_t.fractional - x_frac))
        cells = [(np.where(column[:, None] >= 0, x_lower[np.maximum(column, 0)], 0.0),
                  np.where(column[:, None] >= 0, x_upper[np.maximum(column, 0)], 0.0), one) for column in window.T]
        lower, upper, partial_lo, partial_hi = self._running_sums(np.zeros((len(window), x_lower.shape[1])), cells)
        if partial_lo.min() < acc_t.min_code or partial_hi.max() > acc_t.max_code:
            return None
        _tighten(accum, partial_lo, partial_hi)
        lower, upper = lower / count[:, None], upper / count[:, None]
        lower[:, -1] -= 1
        upper[:, -1] += 1
        q_lo, q_hi = self.bounds(lower, upper)
        _tighten(result, q_lo, q_hi)
        weights = np.zeros((len(window), len(x_lower)))
        for column in window.T:
            rows = np.flatnonzero(column >= 0)
            weights[rows, column[rows]] += one[0] / count[rows]
        return self._cast(layer, lower, upper, result, weights, np.zeros(len(window)), 1.0)


# ---- lines for one-code functions ------------------------------------------------------------------------------
class _Lines:
    """For per-element functions f_e of an integer code q in [l_e, u_e]: candidate slopes (flat, least squares, the
    chord, and the secants between SAMPLES evenly spaced codes), then for each the offsets making it a lower and an
    upper bound at every code."""

    SAMPLES = 5

    def __init__(self, l, u):
        self.l, self.u = l.astype(np.float64), u.astype(np.float64)
        self.points = np.round(l + (u - l) * np.linspace(0, 1, self.SAMPLES)[:, None]).astype(np.int64)
        self.sums = np.zeros((5, len(l)))  # count, sum q, sum q^2, sum f, sum q f
        self.at_points = np.zeros(self.points.shape)

    def _mask(self, codes):
        return (codes[:, None] >= self.l) & (codes[:, None] <= self.u)

    def fit(self, codes, f):
        f = f.astype(np.float64)
        inside = self._mask(codes)
        q = np.where(inside, codes[:, None].astype(np.float64), 0.0)
        fq = np.where(inside, f, 0.0)
        self.sums += np.stack([inside.sum(0), q.sum(0), (q * q).sum(0), fq.sum(0), (q * fq).sum(0)])
        for k, point in enumerate(self.points):
            self.at_points[k] += np.where(codes[:, None] == point, f, 0.0).sum(0)

    def fix_slopes(self):
        """After every code went through `fit`: the candidate slopes, (candidates, elements)."""
        n, sq, sqq, sf, sqf = self.sums
        var = sqq - sq * sq / np.maximum(n, 1)
        fit = np.where(var > 0, (sqf - sq * sf / np.maximum(n, 1)) / np.where(var > 0, var, 1), 0.0)
        secants = [_slope(self.points[i], self.at_points[i], self.points[j], self.at_points[j])
                   for i, j in [(0, self.SAMPLES - 1)] + [(k, k + 1) for k in range(self.SAMPLES - 1)]]
        self.alpha = np.stack([np.zeros_like(fit), fit, *secants])
        self.low = np.full(self.alpha.shape, np.inf)
        self.high = np.full(self.alpha.shape, -np.inf)

    def offsets(self, codes, f):
        inside = self._mask(codes)
        gap = f.astype(np.float64)[None] - self.alpha[:, None] * codes[None, :, None]  # (candidates, codes, elements)
        self.low = np.minimum(self.low, np.where(inside[None], gap, np.inf).min(axis=1))
        self.high = np.maximum(self.high, np.where(inside[None], gap, -np.inf).max(axis=1))

    def candidates(self):
        """(alpha, low, high), (candidates, elements), with a margin for the float arithmetic."""
        margin = 1e-9 * (np.abs(self.alpha) * np.maximum(np.abs(self.l), np.abs(self.u)) + 1)
        return self.alpha, self.low - margin, self.high + margin


def _slope(x0, y0, x1, y1):
    width = (x1 - x0).astype(np.float64)
    return np.where(width > 0, (y1 - y0) / np.where(width > 0, width, 1), 0.0)


def _least_area(alpha, low, high, l, u) -> tuple:
    """Per element, the lower line of greatest and the upper line of least area over [l, u]:
    (lower slope, lower offset, upper slope, upper offset)."""
    middle = (l + u) / 2
    cols = np.arange(alpha.shape[1])
    pick_low, pick_high = np.argmax(alpha * middle + low, axis=0), np.argmin(alpha * middle + high, axis=0)
    return alpha[pick_low, cols], low[pick_low, cols], alpha[pick_high, cols], high[pick_high, cols]


def _compose(x_lower, x_upper, a_low, b_low, a_high, b_high) -> tuple:
    """Forms of y from those of x and a_low*x + b_low <= y <= a_high*x + b_high."""
    lower = np.where(a_low[:, None] >= 0, a_low[:, None] * x_lower, a_low[:, None] * x_upper)
    upper = np.where(a_high[:, None] >= 0, a_high[:, None] * x_upper, a_high[:, None] * x_lower)
    lower[:, -1] += b_low
    upper[:, -1] += b_high
    return lower, upper


def _cast_lines(v_lo, v_hi, site):
    """Candidate lines (alpha, low, high) bounding the codes of site.type cast from values v (codes on the
    2^-source_frac grid) in [v_lo, v_hi]: clip(v * 2^-shift) within one code, exact at its breakpoints; None for a
    wrapping or zeroing type that could overflow."""
    t = site.type
    scale = 2.0 ** (t.fractional - site.source_frac)
    l, u = v_lo.astype(np.float64), v_hi.astype(np.float64)
    if t.overflow not in _SATURATING and (np.any(np.floor(l * scale) < t.min_code) or
                                          np.any(np.ceil(u * scale) > t.max_code)):
        return None
    points = np.stack([l, u, np.clip(t.min_code / scale, l, u), np.clip(t.max_code / scale, l, u)])
    values = np.clip(points * scale, t.min_code, t.max_code)
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    alpha = np.stack([np.zeros_like(l), np.full_like(l, scale)]
                     + [_slope(points[i], values[i], points[j], values[j]) for i, j in pairs])
    gap = values[None] - alpha[:, None] * points[None]  # (candidates, points, elements)
    margin = 1 + 1e-9 * (np.abs(alpha) * np.maximum(np.abs(l), np.abs(u)) + 1)
    return alpha, gap.min(axis=1) - margin, gap.max(axis=1) + margin


def _constant(lo, hi, forms, n_inputs: int) -> tuple:
    """`forms` (copies), or constant forms lo <= y <= hi when there are none."""
    if forms is not None:
        return forms[0].copy(), forms[1].copy()
    lower, upper = np.zeros((len(lo), n_inputs + 1)), np.zeros((len(lo), n_inputs + 1))
    lower[:, -1], upper[:, -1] = lo, hi
    return lower, upper


def _tighten(hull, lo, hi) -> None:
    hull.lo = np.maximum(hull.lo, lo)
    hull.hi = np.minimum(hull.hi, hi)


def element_source(layer) -> np.ndarray:
    """Per output element of an element-local layer, the input element it is a function of (-1: a constant 0)."""
    return gather_index(layer) if layer.op in ("zeropad2d", "upsampling2d") else np.arange(layer.size)
