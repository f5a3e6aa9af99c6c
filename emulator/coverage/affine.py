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

import numba as nb
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
    slack: float | np.ndarray = 0.0  # per output, or one for all
    split: np.ndarray | None = None  # (P, n) sorted codes cutting each argument range into P + 1 pieces,
    split_low: np.ndarray | None = None  # and the lines' offsets on each piece, (P + 1, K, n) (inf: no codes)
    split_high: np.ndarray | None = None


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
            lines.sample(codes, run(codes))
        for _ in range(lines.LEVELS):
            lines.start_cutting()
            for codes in chunks:
                lines.cut(codes, run(codes))
            lines.finish_cutting()
        for codes in chunks:
            lines.fit_pieces(codes, run(codes))
        lines.fix_slopes()
        for codes in chunks:
            lines.offsets(codes, run(codes))
        alpha, low, high = lines.candidates()
        split, split_low, split_high = lines.split_candidates()
        self.relations[layer.name] = Relation(alpha, low, high, source=np.where(inside, source, -1), split=split,
                                              split_low=split_low, split_high=split_high)
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
        alpha, low, high, split, split_low, split_high = lines
        self.relations[layer.name] = Relation(alpha, low, high, weights=weights, offset=offset, slack=slack,
                                              split=split, split_low=split_low, split_high=split_high)
        return _compose(lower, upper, *_least_area(alpha, low, high, result.lo.astype(np.float64),
                                                   result.hi.astype(np.float64)))

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
        fits = lambda lo, hi: lo.min() >= acc_t.min_code and hi.max() <= acc_t.max_code  # noqa: E731
        if not (fits(accum.lo, accum.hi) or fits(partial_lo, partial_hi)):  # a window sum may saturate
            return None
        _tighten(accum, partial_lo, partial_hi)
        offset, slack = _division(accum.lo, accum.hi, count)
        lower, upper = lower / count[:, None], upper / count[:, None]
        lower[:, -1] += offset - slack
        upper[:, -1] += offset + slack
        q_lo, q_hi = self.bounds(lower, upper)
        _tighten(result, q_lo, q_hi)
        weights = np.zeros((len(window), len(x_lower)))
        for column in window.T:
            rows = np.flatnonzero(column >= 0)
            weights[rows, column[rows]] += one[0] / count[rows]
        return self._cast(layer, lower, upper, result, weights, offset, slack)


def _division(lo, hi, count) -> tuple:
    """(offset, slack) per output: the C quotient of a sum in [lo, hi] by `count` lies within sum / count + offset
    +- slack (it truncates toward zero: down for a sum that is never negative, up for one never positive)."""
    half = (count - 1) / (2.0 * count)
    offset = np.where(lo >= 0, -half, np.where(hi <= 0, half, 0.0))
    return offset, np.where((lo >= 0) | (hi <= 0), half, 2 * half)


# ---- lines for one-code functions ------------------------------------------------------------------------------
class _Lines:
    """For per-element functions f_e of an integer code q in [l_e, u_e]: candidate slopes (flat, least squares, the
    chord, and the secants between SAMPLES evenly spaced codes), then for each the offsets making it a lower and an
    upper bound at every code. And cut codes, for a linear program that may choose the piece (relaxation.py): the
    code where f strays furthest from its chord, then in each piece the code where f strays furthest from the
    piece's chord (LEVELS times), with the offsets again on every piece between them (the chords and the least
    squares lines of the pieces join the candidate slopes: on a piece where f is a cast onto a coarser grid, the
    least squares slope is the ratio of the grids, and its offsets are the rounding's error alone).

    Each pass (sample, cut per level, fit per piece, offsets) sees every code once, in chunks."""

    SAMPLES = 5
    LEVELS = 2
    STRAY = 1.5  # codes: a piece closer than this to its chord is not cut

    def __init__(self, l, u):
        self.l, self.u = l.astype(np.float64), u.astype(np.float64)
        self.points = np.round(l + (u - l) * np.linspace(0, 1, self.SAMPLES)[:, None]).astype(np.int64)
        self.at_points = np.zeros(self.points.shape)
        self.cuts = np.zeros((0, len(l)), dtype=np.int64)  # sorted per element; l - 1 marks no cut
        self.cut_values = np.zeros((0, len(l)))

    def sample(self, codes, f):
        """f at the SAMPLES evenly spaced codes (the ends of the first chord)."""
        f = f.astype(np.float64)
        for k, point in enumerate(self.points):
            self.at_points[k] += np.where(codes[:, None] == point, f, 0.0).sum(0)

    def fit_pieces(self, codes, f):
        """After the cuts: the sums (count, sum q, sum q^2, sum f, sum q f) of the least squares line of every
        piece."""
        _piece_sums(codes, f.astype(np.float64), self.l, self.u, self.cuts, self.piece_sums)

    def fix_slopes(self):
        """After `sample`, the cuts and `fit_pieces`: the candidate slopes, (candidates, elements), the chord and the
        least squares slope of every piece among them (and of the whole range: the pieces' sums together)."""
        fit = _least_squares(self.piece_sums.sum(axis=0))
        fits = [_least_squares(sums) for sums in self.piece_sums]
        secants = [_slope(self.points[i], self.at_points[i], self.points[j], self.at_points[j])
                   for i, j in [(0, self.SAMPLES - 1)] + [(k, k + 1) for k in range(self.SAMPLES - 1)]]
        ends, values = self._ends()
        chords = [_slope(ends[k], values[k], ends[k + 1], values[k + 1]) for k in range(len(ends) - 1)]
        self.alpha = np.stack([np.zeros_like(fit), fit, *secants, *chords, *fits])
        self.low = np.full(self.alpha.shape, np.inf)
        self.high = np.full(self.alpha.shape, -np.inf)
        self.piece_low = np.full((len(self.cuts) + 1, *self.alpha.shape), np.inf)
        self.piece_high = np.full((len(self.cuts) + 1, *self.alpha.shape), -np.inf)

    def _ends(self):
        """The ends of the pieces (l, the cuts, u) and f there, (P + 2, elements)."""
        return (np.concatenate([self.l[None], self.cuts.astype(np.float64), self.u[None]]),
                np.concatenate([self.at_points[:1], self.cut_values, self.at_points[-1:]]))

    def offsets(self, codes, f):
        """After `fix_slopes`: the offsets of every candidate over the whole range and on every piece."""
        _gap_extremes(codes, f.astype(np.float64), self.alpha, self.l, self.u, self.cuts, self.low, self.high,
                      self.piece_low, self.piece_high)

    def start_cutting(self):
        n_pieces = len(self.cuts) + 1
        self._stray = np.full((n_pieces, len(self.l)), -1.0)
        self._stray_code = np.zeros((n_pieces, len(self.l)), dtype=np.int64)
        self._stray_value = np.zeros((n_pieces, len(self.l)))

    def cut(self, codes, f):
        """One pass finding, per piece, the code straying furthest from the piece's chord."""
        ends, values = self._ends()
        _strays(codes, f.astype(np.float64), self.l, self.u, self.cuts, ends, values, self._stray, self._stray_code,
                self._stray_value)

    def finish_cutting(self):
        keep = self._stray > self.STRAY
        cuts = np.concatenate([self.cuts, np.where(keep, self._stray_code, self.l.astype(np.int64) - 1)])
        values = np.concatenate([self.cut_values, self._stray_value])
        order = np.argsort(cuts, axis=0, kind="stable")
        self.cuts, self.cut_values = np.take_along_axis(cuts, order, 0), np.take_along_axis(values, order, 0)
        self.piece_sums = np.zeros((len(self.cuts) + 1, 5, len(self.l)))

    def split_candidates(self):
        """(cut codes (P, elements), low, high (P + 1, candidates, elements)); a piece without codes has infinite
        offsets."""
        margin = 1e-9 * (np.abs(self.alpha) * np.maximum(np.abs(self.l), np.abs(self.u)) + 1)
        return self.cuts, self.piece_low - margin, self.piece_high + margin

    def candidates(self):
        """(alpha, low, high), (candidates, elements), with a margin for the float arithmetic."""
        margin = 1e-9 * (np.abs(self.alpha) * np.maximum(np.abs(self.l), np.abs(self.u)) + 1)
        return self.alpha, self.low - margin, self.high + margin


@nb.njit(inline="always", cache=True)
def _piece_of(q, cuts, e):
    """The piece code q of element e falls in: how many of its cuts lie below q."""
    piece = 0
    for j in range(cuts.shape[0]):
        piece += q > cuts[j, e]
    return piece


@nb.njit(cache=True)
def _piece_sums(codes, f, l, u, cuts, sums):
    """sums[piece, :, e] += (count, sum q, sum q^2, sum f, sum q f) over the codes q in [l, u] of each piece of
    element e, in code order."""
    for e in range(f.shape[1]):
        for i in range(len(codes)):
            q = codes[i]
            if q < l[e] or q > u[e]:
                continue
            piece, x, y = _piece_of(q, cuts, e), float(q), f[i, e]
            sums[piece, 0, e] += 1.0
            sums[piece, 1, e] += x
            sums[piece, 2, e] += x * x
            sums[piece, 3, e] += y
            sums[piece, 4, e] += x * y


@nb.njit(cache=True)
def _strays(codes, f, l, u, cuts, ends, values, stray, stray_code, stray_value):
    """Per piece of element e (between the cuts, its chord from ends to values), the first code in [l, u] straying
    furthest from the chord, if further than `stray` already holds: its distance, code and f (in place)."""
    last = cuts.shape[0]
    for e in range(f.shape[1]):
        for i in range(len(codes)):
            q = codes[i]
            if q < l[e] or q > u[e]:
                continue
            piece = min(_piece_of(q, cuts, e), last)
            x0, x1, y0, y1 = ends[piece, e], ends[piece + 1, e], values[piece, e], values[piece + 1, e]
            slope = (y1 - y0) / (x1 - x0) if x1 - x0 > 0 else 0.0
            distance = abs(f[i, e] - (y0 + slope * (q - x0)))
            if distance > stray[piece, e]:
                stray[piece, e], stray_code[piece, e], stray_value[piece, e] = distance, q, f[i, e]


@nb.njit(cache=True)
def _gap_extremes(codes, f, alpha, l, u, cuts, low, high, piece_low, piece_high):
    """Per candidate k and element e, the least and greatest f - alpha[k, e] * code over the codes in [l, u], into
    low and high, and over those of each piece between the cuts, into piece_low and piece_high (in place)."""
    for e in range(f.shape[1]):
        for i in range(len(codes)):
            q = codes[i]
            if q < l[e] or q > u[e]:
                continue
            piece = _piece_of(q, cuts, e)
            for k in range(alpha.shape[0]):
                gap = f[i, e] - alpha[k, e] * q
                low[k, e] = min(low[k, e], gap)
                high[k, e] = max(high[k, e], gap)
                piece_low[piece, k, e] = min(piece_low[piece, k, e], gap)
                piece_high[piece, k, e] = max(piece_high[piece, k, e], gap)


def _least_squares(sums) -> np.ndarray:
    """The slope of the least squares line from its sums (count, sum q, sum q^2, sum f, sum q f); 0 for one code."""
    n, sq, sqq, sf, sqf = sums
    var = sqq - sq * sq / np.maximum(n, 1)
    return np.where(var > 0, (sqf - sq * sf / np.maximum(n, 1)) / np.where(var > 0, var, 1), 0.0)


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
    2^-source_frac grid) in [v_lo, v_hi]: clip(v * 2^-shift) within its rounding, exact at its breakpoints; then the
    codes just below its two knees as splits, and the lines' offsets on each of the three pieces; None for a
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
    error = _rounding_error(t, site.source_frac - t.fractional)
    tolerance = 1e-9 * (np.abs(alpha) * np.maximum(np.abs(l), np.abs(u)) + 1)
    margin = (error[0] - tolerance, error[1] + tolerance)
    low, high = _offsets(alpha, points, values, margin)
    split = np.stack([np.floor(np.full_like(l, t.min_code / scale)), np.floor(np.full_like(l, t.max_code / scale))])
    ends = [(l, np.minimum(split[0], u)), (np.maximum(split[0] + 1, l), np.minimum(split[1], u)),
            (np.maximum(split[1] + 1, l), u)]
    pieces = [_offsets(alpha, np.stack([a, b]), np.clip(np.stack([a, b]) * scale, t.min_code, t.max_code), margin,
                       empty=a > b) for a, b in ends]
    return (alpha, low, high, split.astype(np.int64), np.stack([p[0] for p in pieces]),
            np.stack([p[1] for p in pieces]))


def _rounding_error(t, shift: int) -> tuple:
    """(low, high): how far a code of type t cast from a value dropping `shift` fractional bits lies from the value
    scaled exactly (0 when none are dropped); SAT_SYM's most negative code may move up one."""
    if shift <= 0:
        low, high = 0.0, 0.0
    elif t.rounding == "TRN":
        low, high = -(1 - 2.0 ** -shift), 0.0
    elif t.rounding == "TRN_ZERO":
        low, high = -(1 - 2.0 ** -shift), 1 - 2.0 ** -shift
    else:  # the RND modes round to the nearest code
        low, high = -0.5, 0.5
    return low, high + (1.0 if t.overflow == "SAT_SYM" else 0.0)


def _offsets(alpha, points, values, margin, empty=None) -> tuple:
    """(low, high): the offsets making each candidate line a lower and an upper bound of a piecewise linear
    function known at its breakpoints `points` (points, elements), widened by `margin` (low, high: what the cast's
    rounding adds to the function); infinite where `empty`."""
    gap = values[None] - alpha[:, None] * points[None]  # (candidates, points, elements)
    low, high = gap.min(axis=1) + margin[0], gap.max(axis=1) + margin[1]
    if empty is not None:
        low, high = np.where(empty, np.inf, low), np.where(empty, -np.inf, high)
    return low, high


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
