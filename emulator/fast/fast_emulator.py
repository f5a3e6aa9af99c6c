"""`FastEmulator`: the manifest's generated kernels (emulator.fast.codegen) behind the Emulator API, bit for bit the
same outputs as the reference kernels, on all the threads numba is allowed (numba.get_num_threads())."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from emulator.arith import to_float
from emulator.emulator import DEFAULT_BLOCK, Emulator, InputError, Prediction, check_event_shape
from emulator.manifest import Manifest

from .codegen import Segment, generate
from .compiled import Kernel
from .stages import ReferenceStage, plan_stages

#: Parallel chunks per thread: more than one keeps both cores busy when the machine is shared.
CHUNKS_PER_THREAD = 4
#: At most this many events per call of a generated kernel (a few milliseconds of work).
MAX_CHUNK_EVENTS = 1 << 16

_kernels: dict = {}  # IR text -> Kernel, shared by every FastEmulator of the process
_kernels_lock = threading.Lock()
_pool = None


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _kernels_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS, thread_name_prefix="fast-emulator")
        return _pool


def kernel_of(ir: str) -> Kernel:
    """The compiled kernel of a module (compiled once per process; machine code cached on disk)."""
    with _kernels_lock:
        if ir not in _kernels:
            _kernels[ir] = Kernel(ir)
        return _kernels[ir]


def run_blocks(kernel: Kernel, arrays: list, outs: list, n_blocks: int, V: int) -> int:
    """Run blocks 0..n_blocks-1 of V events in chunks spread over numba.get_num_threads() threads; returns the
    number of blocks with an input code out of range. `arrays` are (N, n) inputs, `outs` (n, stride) outputs."""
    if n_blocks == 0:
        return 0
    ins_table = np.array([a.ctypes.data for a in arrays], dtype=np.int64)
    outs_table = np.array([o.ctypes.data for o in outs], dtype=np.int64)
    stride = outs[0].shape[1]
    threads = numba.get_num_threads()
    per_chunk = max(1, min(-(-n_blocks // (threads * CHUNKS_PER_THREAD)), MAX_CHUNK_EVENTS // V))
    starts = range(0, n_blocks, per_chunk)
    counter = itertools.count()

    def work() -> int:
        bad = 0
        while (i := next(counter)) < len(starts):
            first = starts[i]
            bad += kernel.emulate(ins_table.ctypes.data, outs_table.ctypes.data, first,
                                  min(per_chunk, n_blocks - first), stride)
        return bad

    if threads == 1 or len(starts) == 1:
        return work()
    return sum(f.result() for f in [_threads().submit(work) for _ in range(min(threads, len(starts)))])


class FastEmulator(Emulator):
    """An Emulator whose predict/predict_codes run generated kernels; trace stays on the reference kernels.

    Layers the fast path cannot generate run on their reference kernels between generated stages; `reference_layers`
    names them with the reason ({} when the whole model is generated)."""

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        self.stages, generated = plan_stages(manifest)
        self._generated = {(position, "int64"): g for position, g in generated.items()}
        self.reference_layers = {s.layer.name: s.reason for s in self.stages if isinstance(s, ReferenceStage)}

    @property
    def ranges(self) -> dict:
        """The proven range of every element of every tensor the generated stages compute, by tensor name."""
        return {name: r for (_, dtype), g in self._generated.items() if dtype == "int64"
                for name, r in g.ranges.items()}

    @property
    def casts(self) -> dict:
        """Per generated layer: (casts in its code, casts whose rounding or overflow handling is kept)."""
        return {name: c for (_, dtype), g in self._generated.items() if dtype == "int64" for name, c in g.casts.items()}

    def generated(self, position: int, dtype=np.int64):
        """The Generated module of the Segment at `position` in `stages`, for input codes of `dtype`."""
        key = (position, np.dtype(dtype).name)
        if key not in self._generated:
            self._generated[key] = generate(self.manifest, self.stages[position], dtype)
        return self._generated[key]

    # ---- running ---------------------------------------------------------------------------------------
    def predict_codes(self, codes, block: int = DEFAULT_BLOCK) -> Prediction:
        """Outputs for input codes (N, n_in) per input, int64 or (when the input type fits) int32. `block` is
        accepted for API compatibility."""
        tensors = {spec.name: self._fast_input_codes(c, spec) for spec, c in self._per_input(codes, "input codes")}
        for position, stage in enumerate(self.stages):
            if isinstance(stage, ReferenceStage):
                args = [self._reference_input(tensors[name], name) for name in stage.layer.inputs]
                tensors[stage.layer.name] = stage.step(args)
            else:
                tensors.update(self._run_segment(position, stage, tensors))
        out_codes = {name: tensors[name] for name in self.manifest.outputs}
        values = {name: to_float(c, self.manifest.producer_type(name)) for name, c in out_codes.items()}
        return Prediction(out_codes, values)

    def _fast_input_codes(self, codes, spec) -> np.ndarray:
        codes = np.asarray(codes)
        allowed = (np.int64, np.int32) if spec.type.width <= 32 else (np.int64,)
        if codes.dtype not in allowed:
            raise InputError(f"input codes{self._of(spec)} must be {' or '.join(np.dtype(d).name for d in allowed)} "
                             f"raw codes of {spec.type}, got dtype {codes.dtype}")
        return np.ascontiguousarray(check_event_shape(codes, spec, f"input codes{self._of(spec)}"))

    def _reference_input(self, codes: np.ndarray, name: str) -> np.ndarray:
        """A tensor for a reference kernel: int64, and checked against its type when it is a model input (the
        generated stages check the inputs they read themselves)."""
        specs = {spec.name: spec for spec in self.manifest.inputs}
        if name in specs:
            codes = self._checked_input_codes(codes.astype(np.int64, copy=False), specs[name])
        return codes.astype(np.int64, copy=False)

    def _run_segment(self, position: int, segment: Segment, tensors: dict) -> dict:
        arrays = [tensors[name] for name, _, _ in segment.inputs]
        dtype = np.int32 if all(a.dtype == np.int32 for a in arrays) else np.int64
        arrays = [np.ascontiguousarray(a, dtype=dtype) for a in arrays]
        generated = self.generated(position, dtype)
        kernel = kernel_of(generated.ir)
        n_events, V = len(arrays[0]), generated.vector
        outs = [np.empty((self.manifest.layer(name).size, n_events), dtype=np.int64) for name in segment.outputs]
        full = n_events // V * V
        bad = run_blocks(kernel, arrays, outs, full // V, V)
        if full < n_events:
            bad += self._run_tail(kernel, arrays, outs, full, V)
        if bad:
            self._refuse_out_of_range(segment, arrays)
        return {name: np.ascontiguousarray(o.T) for name, o in zip(segment.outputs, outs)}

    def _run_tail(self, kernel: Kernel, arrays: list, outs: list, first: int, V: int) -> int:
        """The last events (fewer than V) through one zero-padded block."""
        padded = [np.zeros((V, a.shape[1]), dtype=a.dtype) for a in arrays]
        for p, a in zip(padded, arrays):
            p[:len(a) - first] = a[first:]
        tails = [np.empty((o.shape[0], V), dtype=np.int64) for o in outs]
        bad = run_blocks(kernel, padded, tails, 1, V)
        for o, t in zip(outs, tails):
            o[:, first:] = t[:, :o.shape[1] - first]
        return bad

    def _refuse_out_of_range(self, segment: Segment, arrays: list):
        specs = {spec.name: spec for spec in self.manifest.inputs}
        for (name, t, _), codes in zip(segment.inputs, arrays):
            outside = (codes < t.min_code) | (codes > t.max_code)
            if outside.any():
                events = np.flatnonzero(outside.any(axis=1))
                of = self._of(specs[name]) if name in specs else f" of tensor {name!r}"
                raise InputError(f"input codes{of} outside the range of {t} in events {events[:10].tolist()}")
