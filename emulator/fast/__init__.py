"""A per-model specialised emulator: generated LLVM code with the weights as literals, casts proven no-ops by
interval analysis dropped, events on the SIMD axis in the narrowest exact integer lanes."""

from .codegen import Generated, generate
from .fast_emulator import FastEmulator
from .intervals import CastProof, Range, prove_cast

__all__ = ["CastProof", "FastEmulator", "Generated", "Range", "generate", "prove_cast"]
