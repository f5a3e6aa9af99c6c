"""The counting probe: the kernels' hooks (emulator.kernels.observe, observe_clamp) for a per-event hit array.

A probe is an int32 array (events, sites, elements, len(KINDS)); each reported cast adds 1 to every kind it falls in,
at [event, site, element]. Events are independent rows, so the parallel kernels never race on a counter.
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


def new_probe(n_events: int, n_sites: int, n_elements: int) -> np.ndarray:
    """A zeroed probe array for one layer and a block of events."""
    return np.zeros((n_events, n_sites, n_elements, len(KINDS)), dtype=np.int32)


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
    lo = -(np.int64(1) << (width - 1)) if signed else np.int64(0)
    hi = (np.int64(1) << (width - 1)) - 1 if signed else (np.int64(1) << width) - 1
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


@overload(observe)
def _observe_counting(probe, event, site, element, value, value_frac, spec, result):
    if isinstance(probe, types.Array) and probe.ndim == 4:
        def count(probe, event, site, element, value, value_frac, spec, result):
            _count_cast(probe, event, site, element, value, value_frac, spec, result)
        return count
    return None


@nb.njit(cache=True)
def _count_clamp(probe, event, site, element, value, lo, hi):
    if value < lo:
        probe[event, site, element, CLAMP_LOW] += 1
    elif value > hi:
        probe[event, site, element, CLAMP_HIGH] += 1


@overload(observe_clamp)
def _observe_clamp_counting(probe, event, site, element, value, lo, hi):
    if isinstance(probe, types.Array) and probe.ndim == 4:
        def count(probe, event, site, element, value, lo, hi):
            _count_clamp(probe, event, site, element, value, lo, hi)
        return count
    return None
