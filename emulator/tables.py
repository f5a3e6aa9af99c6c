"""The lookup tables of hls4ml's templates, filled exactly as its compiled C-simulation fills them.

nnet_activation.h (and the KL head) compute each entry in float and double with the system libm, then cast it to the
table type: this module repeats those steps (the same libm, through ctypes; numpy float32/float64 operations for
the C++ ones) and returns integer codes, so a manifest carries the tables and nothing downstream needs hls4ml.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

import numpy as np

from .arith import cast_raw, quantize, type_spec
from .fixed_type import FixedType

F32, F64 = np.float32, np.float64
_INFINITY_MANTISSA, _INFINITY_FRAC = 1 << 52, 1075 - 2047  # how ap_fixed(double) reads +-inf: 2**52 * 2**972


# ---- libm and the ap_fixed conversion ---------------------------------------------------------------------
@lru_cache(maxsize=None)
def _libm_function(name: str):
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    fn = getattr(libm, name)
    c_type = ctypes.c_float if name.endswith("f") else ctypes.c_double
    fn.restype, fn.argtypes = c_type, [c_type]
    return fn


def libm(name: str, x) -> np.ndarray:
    """libm's `name` (e.g. expf, float; log, double) applied to each element of x, in that function's precision."""
    dtype = F32 if name.endswith("f") else F64
    fn = _libm_function(name)
    return np.array([fn(float(v)) for v in np.asarray(x, dtype=dtype).ravel()], dtype=dtype)


def fixed_codes(values, t: FixedType) -> np.ndarray:
    """Codes of `t y = v;` for float or double values, infinities included (ap_fixed reads them as 2**1024)."""
    values = np.asarray(values, dtype=F64)
    finite = np.isfinite(values)
    codes = quantize(np.where(finite, values, 0.0), t)
    for i in np.flatnonzero(~finite):
        codes.flat[i] = cast_raw(int(np.sign(values.flat[i])) * _INFINITY_MANTISSA, _INFINITY_FRAC, *type_spec(t))
    return codes


# ---- table inputs: the x of each index --------------------------------------------------------------------
def symmetric_inputs(n: int, half_range: float) -> np.ndarray:
    """float in_val = 2 * half_range * (ii - float(N) / 2.0) / float(N): [-half_range, half_range) in n steps."""
    index = np.arange(n, dtype=F64)
    return ((2 * half_range * (index - F64(F32(n)) / 2.0)) / F64(F32(n))).astype(F32)


def negative_inputs(n: int) -> np.ndarray:
    """float in_val = -8.0 * ii / float(N): (-8, 0] in n steps (ELU and SELU)."""
    return ((-8.0 * np.arange(n, dtype=F64)) / F64(F32(n))).astype(F32)


def top_bits_inputs(n: int, t: FixedType) -> np.ndarray:
    """softmax_real_val_from_idx: (float) of the t whose top ceil(log2(n)) bits are the index, the rest zero."""
    bits = address_bits(n)
    codes = np.arange(n, dtype=np.int64) << (t.width - bits)
    if t.signed:
        codes = np.where(codes >= 1 << (t.width - 1), codes - (1 << t.width), codes)
    return np.ldexp(codes.astype(F64), -t.fractional).astype(F32)


def address_bits(n: int) -> int:
    """ceillog2(n) of nnet_common.h: the bits of a table index."""
    return int(n - 1).bit_length()


# ---- the tables -------------------------------------------------------------------------------------------
def _sigmoid(x):
    return (1.0 / (F32(1) + libm("expf", -x)).astype(F64)).astype(F32)


def _softplus(x):
    return libm("log", libm("expf", x).astype(F64) + 1.0).astype(F32)


def _softsign(x):
    return (x.astype(F64) / (np.abs(x).astype(F64) + 1.0)).astype(F32)


def _elu(x):
    return (libm("expf", x).astype(F64) - 1.0).astype(F32)


def _selu(x):
    return (1.0507009873554804934193349852946 * (1.6732632423543772848170429916717
                                                 * (libm("expf", x).astype(F64) - 1.0))).astype(F32)


#: The activations with a table, as nnet_activation.h fills it: (inputs of a table of n entries, float function).
ACTIVATION_TABLES = {
    "sigmoid": (lambda n: symmetric_inputs(n, 8.0), _sigmoid),
    "tanh": (lambda n: symmetric_inputs(n, 4.0), lambda x: libm("tanhf", x)),
    "softplus": (lambda n: symmetric_inputs(n, 8.0), _softplus),
    "softsign": (lambda n: symmetric_inputs(n, 8.0), _softsign),
    "elu": (negative_inputs, _elu),
    "selu": (negative_inputs, _selu),
}


def activation_table(kind: str, n: int, t: FixedType) -> np.ndarray:
    """The codes of init_<kind>_table<CONFIG_T, n> with table_t = t."""
    inputs, function = ACTIVATION_TABLES[kind]
    return fixed_codes(function(inputs(n)), t)


def softmax_exp_table(n: int, address: FixedType, scale: float, t: FixedType, negative: bool) -> np.ndarray:
    """init_exp_table<address, CONFIG_T>(table, negative): expf of each index's top-bits value times exp_scale."""
    x = top_bits_inputs(n, address) * F32(scale)
    return fixed_codes(libm("expf", -x if negative else x), t)


def softmax_invert_table(n: int, address: FixedType, t: FixedType) -> np.ndarray:
    """init_invert_table<address, CONFIG_T>: 1 / x in float of each index's top-bits value (1/0 is +inf)."""
    with np.errstate(divide="ignore"):
        return fixed_codes(F32(1) / top_bits_inputs(n, address), t)


def legacy_exp_table(n: int, t: FixedType) -> np.ndarray:
    """init_exp_table_legacy: expf over [-8, 8)."""
    return fixed_codes(libm("expf", symmetric_inputs(n, 8.0)), t)


def legacy_invert_table(n: int, t: FixedType) -> np.ndarray:
    """init_invert_table_legacy: 1.0 / in_val in double for in_val = float(64.0 * ii / N) > 0, else 0."""
    x = ((64.0 * np.arange(n, dtype=F64)) / F64(F32(n))).astype(F32).astype(F64)
    with np.errstate(divide="ignore"):
        return fixed_codes(np.where(x > 0, 1.0 / x, 0.0), t)


def kl_exp_table(n: int, exp_range: int, t: FixedType) -> np.ndarray:
    """The KL head's exp table: x in float from the index, expf from libm, cast to the table type."""
    index = np.arange(n, dtype=F64)
    x = (2.0 * F32(exp_range) * (index - n / 2.0) / F32(n)).astype(F32)
    return fixed_codes(libm("expf", x), t)
