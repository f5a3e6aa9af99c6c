"""`FastEmulator`: the manifest's specialised kernel (emulator.fast.codegen) behind the Emulator API, bit for bit
the same outputs as the reference kernels."""

from __future__ import annotations

import numba
import numpy as np

from emulator.arith import to_float
from emulator.emulator import DEFAULT_BLOCK, Emulator, InputError, Prediction
from emulator.manifest import Manifest

from . import compiled

#: Parallel chunks per thread: more than one keeps both cores busy when the machine is shared.
CHUNKS_PER_THREAD = 4


class FastEmulator(Emulator):
    """An Emulator whose predict/predict_codes run the generated kernel; trace stays on the reference kernels."""

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        self.kernel, self.generated = compiled.load(manifest)

    @property
    def block(self) -> int:
        """Events per block of the generated kernel."""
        return self.kernel.B

    def predict_codes(self, codes, block: int = DEFAULT_BLOCK) -> Prediction:
        """Outputs for input codes (N, n_in), int64 or (when the input type fits) int32. `block` is accepted for
        API compatibility; the kernel's own block size (`self.block`) is fixed when it is generated."""
        spec = self.manifest.input
        codes = np.asarray(codes)
        allowed = (np.int64, np.int32) if spec.type.width <= 32 else (np.int64,)
        if codes.dtype not in allowed:
            raise InputError(f"input codes must be {' or '.join(np.dtype(d).name for d in allowed)} raw codes of "
                             f"{spec.type}, got dtype {codes.dtype}")
        codes = np.ascontiguousarray(self._check_shape(codes, spec, "input codes"))
        outs = [np.empty((len(codes), self.manifest.layer(name).size), dtype=np.int64) for name in self.manifest.outputs]
        chunks = max(1, min(numba.get_num_threads() * CHUNKS_PER_THREAD, -(-len(codes) // self.block)))
        if self.kernel.run(codes, chunks, *outs):
            outside = (codes < spec.type.min_code) | (codes > spec.type.max_code)
            events = np.flatnonzero(outside.any(axis=1))
            raise InputError(f"input codes outside the range of {spec.type} in events {events[:10].tolist()}")
        out_codes = dict(zip(self.manifest.outputs, outs))
        values = {name: to_float(c, self.manifest.producer_type(name)) for name, c in out_codes.items()}
        return Prediction(out_codes, values)
