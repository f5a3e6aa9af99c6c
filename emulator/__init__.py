"""Bit-exact numba emulation of Xilinx ap_fixed arithmetic and of hls4ml's io_parallel layers."""

from .arith import quantize, requantize, to_float
from .emulator import Emulator, InputError, Prediction
from .fixed_type import FixedType, UnsupportedType
from .manifest import Manifest, ManifestError

__all__ = ["Emulator", "FixedType", "InputError", "Manifest", "ManifestError", "Prediction", "UnsupportedType",
           "quantize", "requantize", "to_float"]

from . import layers  # noqa: E402,F401  (registers the layer families)
