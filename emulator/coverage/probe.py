"""The kernels' hooks (emulator.kernels.observe, observe_clamp) for two probes, both arrays (events, sites, elements,
len(KINDS)) told apart by dtype; events are independent rows, so the parallel kernels never race on a cell.

counting probe (int32): each reported cast adds 1 to every kind it falls in, at [event, site, element].
distance probe (int64): each cell keeps the least distance of any cast from falling in the kind (0: it fell in it),
in codes of the destination type (of the source grid for ties, of the index for clamps); untouched cells keep
FAR. A search minimises these distances to reach the bins the data leaves empty.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.core import types
from numba.extending import overload

from emulator.arith import O_SAT, O_WRAP, O_WRAP_SM, Q_RND, cast_raw
from emulator.kernels import observe, observe_clamp

KINDS = ("sat_high", "sat_low", "wrap", "tie", "at_min", "at_max", "clamp_low", "clamp_high")
"""What a counter counts: casts whose rounded value lay above the type's maximum (sat_high, or wrap under a WRAP
mode) or below its minimum (sat_low / wrap); casts of an exact rounding tie under a RND mode (where the tie rule
decides the result); casts whose result is the type's minimum or maximum code; indices clamped at either end."""
SAT_HIGH, SAT_LOW, WRAP, TIE, AT_MIN, AT_MAX, CLAMP_LOW, CLAMP_HIGH = range(len(KINDS))
_REFERENCE_WIDTH = 63  # wider than any emulated type (<= 62 bits): rounds without ever losing an overflow
_INT64_MIN = -(1 << 63)
FAR = np.iinfo(np.int64).max
"""The distance of a kind no cast came near (never reported at that site and element)."""


def new_probe(n_events: int, n_sites: int, n_elements: int) -> np.ndarray:
    """A zeroed counting probe for one layer and a block of events."""
    return np.zeros((n_events, n_sites, n_elements, len(KINDS)), dtype=np.int32)


def new_distance_probe(n_events: int, n_sites: int, n_elements: int) -> np.ndarray:
    """A distance probe for one layer and a block of events, every cell FAR."""
    return np.full((n_events, n_sites, n_elements, len(KINDS)), FAR, dtype=np.int64)


def _is_probe(probe, dtype) -> bool:
    return isinstance(probe, types.Array) and probe.ndim == 4 and probe.dtype == dtype


@nb.njit(inline="always", cache=True)
def _code_range(width, signed):
    """(min code, max code) of a type."""
    if signed:
        return -(np.int64(1) << (width - 1)), (np.int64(1) << (width - 1)) - 1
    return np.int64(0), (np.int64(1) << width) - 1


@nb.njit(inline="always", cache=True)
def _is_tie(value, shift):
    """The dropped part of value (its low `shift` bits) is exactly one half."""
    if shift <= 0:
        return False
    if shift >= 64:
        return shift == 64 and value == _INT64_MIN
    return (value & ((np.int64(1) << shift) - 1)) == (np.int64(1) << (shift - 1))


@nb.njit(cache=True)
def _count_cast(probe, event, site, element, value, value_frac, spec, result):
    width, frac, signed, rounding, overflow = spec
    lo, hi = _code_range(width, signed)
    counters = probe[event, site, element]
    shift = value_frac - frac
    # rounding moves the truncated value up by at most one code: most casts are cleared without rounding again
    if shift < 0 or shift > 62 or (value >> shift) < lo or (value >> shift) + 1 > hi:
        rounded = cast_raw(value, value_frac, _REFERENCE_WIDTH, frac, 1, rounding, O_SAT)
        wraps = overflow == O_WRAP or overflow == O_WRAP_SM
        if rounded > hi:
            counters[WRAP if wraps else SAT_HIGH] += 1
        elif rounded < lo:
            counters[WRAP if wraps else SAT_LOW] += 1
    if rounding >= Q_RND and _is_tie(value, value_frac - frac):
        counters[TIE] += 1
    if result == lo:
        counters[AT_MIN] += 1
    if result == hi:
        counters[AT_MAX] += 1


@nb.njit(cache=True)
def _count_clamp(probe, event, site, element, value, lo, hi):
    if value < lo:
        probe[event, site, element, CLAMP_LOW] += 1
    elif value > hi:
        probe[event, site, element, CLAMP_HIGH] += 1


# ---- the distance probe ----------------------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def _keep_least(cells, kind, distance):
    if distance < cells[kind]:
        cells[kind] = distance


@nb.njit(cache=True)
def _cast_distances(probe, event, site, element, value, value_frac, spec, result):
    width, frac, signed, rounding, overflow = spec
    lo, hi = _code_range(width, signed)
    cells = probe[event, site, element]
    rounded = cast_raw(value, value_frac, _REFERENCE_WIDTH, frac, 1, rounding, O_SAT)
    over = max(hi + 1 - rounded, 0)
    under = max(rounded - (lo - 1), 0)
    _keep_least(cells, SAT_HIGH, over)
    _keep_least(cells, SAT_LOW, under)
    _keep_least(cells, WRAP, min(over, under))
    shift = value_frac - frac
    if 0 < shift < 63:
        step = np.int64(1) << shift
        off = (value - (np.int64(1) << (shift - 1))) & (step - 1)
        _keep_least(cells, TIE, min(off, step - off))
    _keep_least(cells, AT_MIN, abs(result - lo))
    _keep_least(cells, AT_MAX, abs(hi - result))


@nb.njit(cache=True)
def _clamp_distances(probe, event, site, element, value, lo, hi):
    cells = probe[event, site, element]
    _keep_least(cells, CLAMP_LOW, max(value - lo + 1, 0))
    _keep_least(cells, CLAMP_HIGH, max(hi + 1 - value, 0))


def _implement_hooks(dtype, on_cast, on_clamp) -> None:
    """Implement the kernels' hooks, for probes of `dtype`, with the jitted functions given."""

    @overload(observe)
    def _cast_hook(probe, event, site, element, value, value_frac, spec, result):
        if _is_probe(probe, dtype):
            def hook(probe, event, site, element, value, value_frac, spec, result):
                on_cast(probe, event, site, element, value, value_frac, spec, result)
            return hook
        return None

    @overload(observe_clamp)
    def _clamp_hook(probe, event, site, element, value, lo, hi):
        if _is_probe(probe, dtype):
            def hook(probe, event, site, element, value, lo, hi):
                on_clamp(probe, event, site, element, value, lo, hi)
            return hook
        return None


_implement_hooks(types.int32, _count_cast, _count_clamp)
_implement_hooks(types.int64, _cast_distances, _clamp_distances)
