"""The three paths a model is certified on, behind one interface: `Backend`, one subclass each, picked by name.

    emulator  the numba emulator of the manifest (emulator.Emulator)
    csim      hls4ml's C-simulation compiled with g++ (firmware.csim.CSim)
    rtl       RTL co-simulation in Verilator or Icarus (testbench.cosim.cosimulate), generated or external

`check()` is quick (are the tools there?), `prepare()` compiles or builds (cached), `run(codes)` returns the output
codes of every output; `trace(codes)` the output codes of every layer where the path can give them (else None).
Each back end runs one batch at a time (a lock), so shards verified in threads overlap different back ends.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from .faults import apply_faults
from .model_ref import Model

_NUMBA_LOCK = threading.Lock()  # numba's default threading layer must not be entered from two threads at once


class BackendError(RuntimeError):
    """A path cannot run here (missing tool, failed build); the message says how to fix it."""


class PathUnavailable(RuntimeError):
    """A path that cannot compute this model by design (the RTL generator has no RTL for one of its ops or
    options): the certification goes on without it, reporting it as skipped with the message as the reason."""


@dataclass
class PathRun:
    """Output codes {output name: (n, size) int64} of one batch, the wall time, and RTL timing in clock cycles."""

    codes: dict
    seconds: float
    latency_cycles: int | None = None
    ii_cycles: int | None = None


@dataclass(frozen=True)
class BackendOptions:
    """Settings shared by the back ends: build folder, simulator, external RTL, injected faults."""

    build_dir: Path
    simulator: str = "verilator"
    rtl_dir: Path | None = None
    faults: tuple = ()


class Backend(ABC):
    """One way of computing the model's outputs from input codes."""

    name: ClassVar[str]
    has_trace: ClassVar[bool] = False

    def __init__(self, model: Model, options: BackendOptions):
        self.model = model
        self.options = options
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise BackendError unless the tools this path needs are installed (fast; nothing is built)."""

    def prepare(self) -> None:
        """Compile or build what `run` needs (cached between runs); BackendError if that fails."""

    @abstractmethod
    def _run(self, codes: np.ndarray) -> PathRun:
        """Outputs of (n, n_in) input codes."""

    def run(self, codes: np.ndarray) -> PathRun:
        with self._lock:
            return self._run(codes)

    def trace(self, codes: np.ndarray) -> dict | None:
        """{layer name: output codes (n, size)} of every layer this path exposes, or None (no per-layer trace)."""
        return None

    def versions(self) -> dict:
        """Versions of the tools this path uses."""
        return {}

    def _faulty_manifest(self, *targets: str):
        faults = [f for f in self.options.faults if f.target in targets]
        return apply_faults(self.model.manifest, faults) if faults else self.model.manifest


class EmulatorBackend(Backend):
    """The numba emulator, with a block size and a numba thread count (the determinism check runs two settings)."""

    name = "emulator"
    has_trace = True

    def __init__(self, model: Model, options: BackendOptions, block: int = 65536, threads: int | None = None,
                 fault_targets: tuple = ("emulator",)):
        super().__init__(model, options)
        from emulator import Emulator

        self.block = block
        self.threads = threads
        self.emulator = Emulator(self._faulty_manifest(*fault_targets))

    def prepare(self) -> None:
        """Compile the numba kernels (one event), so that the timed runs measure only the emulation."""
        self._run(np.zeros((1, self.emulator.manifest.input.size), dtype=np.int64))

    def _run(self, codes: np.ndarray) -> PathRun:
        import numba

        with _NUMBA_LOCK:
            numba.set_num_threads(self.threads or numba.config.NUMBA_NUM_THREADS)
            started = time.perf_counter()
            prediction = self.emulator.predict_codes(codes, self.block)
            return PathRun(prediction.codes, time.perf_counter() - started)

    def trace(self, codes: np.ndarray) -> dict:
        with _NUMBA_LOCK:
            return self.emulator.trace_codes(codes, self.block)

    def versions(self) -> dict:
        import numba

        return {"numba": numba.__version__}


class CSimBackend(Backend):
    """hls4ml's C-simulation of the converted model, compiled with g++ (cached by content under build/csim-cache)."""

    name = "csim"
    has_trace = True

    def __init__(self, model: Model, options: BackendOptions):
        super().__init__(model, options)
        self.csim = None

    def check(self) -> None:
        from firmware.hls_project import CXX

        if shutil.which(CXX) is None:
            raise BackendError(f"the C-simulation needs the C++ compiler {CXX}, which is not on PATH; install it "
                               f"(Debian: apt-get install g++) or skip this path with --skip-csim")

    def prepare(self) -> None:
        from firmware.csim import CSim
        from firmware.hls_project import CSimError

        try:
            self.csim = CSim(self.model.hls_model())
        except CSimError as exc:
            raise BackendError(f"the C-simulation cannot be built: {exc}") from None

    def _run(self, codes: np.ndarray) -> PathRun:
        started = time.perf_counter()
        out = self.csim.run(codes)
        seconds = time.perf_counter() - started
        return PathRun(self._by_name(out), seconds)

    def trace(self, codes: np.ndarray) -> dict:
        with self._lock:
            return self.csim.trace(codes)

    def _by_name(self, out) -> dict:
        if isinstance(out, dict):
            return out
        return {self.model.manifest.outputs[0]: out}

    def versions(self) -> dict:
        import hls4ml

        from firmware.hls_project import CXX

        compiler = subprocess.run([CXX, "--version"], capture_output=True, text=True).stdout.splitlines()
        return {"hls4ml": hls4ml.__version__, "g++": compiler[0] if compiler else "unknown"}


class RtlBackend(Backend):
    """RTL co-simulation (one event per clock) of the generated design, or of external RTL with the HLS ports."""

    name = "rtl"

    def __init__(self, model: Model, options: BackendOptions):
        super().__init__(model, options)
        self.manifest = self._faulty_manifest("rtl")
        self.simulator = None

    def check(self) -> None:
        from testbench.simulators import SimulatorNotFound, get_simulator

        try:
            self.simulator = get_simulator(self.options.simulator)
        except SimulatorNotFound as exc:
            raise BackendError(f"{exc} (or skip the RTL with --skip-rtl)") from None
        if self.options.rtl_dir is not None and not sorted(Path(self.options.rtl_dir).glob("*.v")):
            raise BackendError(f"--rtl {self.options.rtl_dir}: no Verilog sources (*.v) there")

    def prepare(self) -> None:
        """Generate and build the RTL (an empty run); PathUnavailable when the generator refuses the model."""
        from emulator.fixed_type import UnsupportedType

        try:
            self._run(np.zeros((0, self.manifest.input.size), dtype=np.int64))
        except UnsupportedType as exc:
            if self.options.rtl_dir is not None:
                raise
            raise PathUnavailable(f"the RTL generator cannot build this model: {exc}") from None

    def _run(self, codes: np.ndarray) -> PathRun:
        from testbench.cosim import CosimError, cosimulate
        from testbench.simulators import BuildFailed, SimulatorNotFound

        started = time.perf_counter()
        try:
            result = cosimulate(self.manifest, codes, simulator=self.options.simulator,
                                build_dir=Path(self.options.build_dir) / "cosim", rtl_dir=self.options.rtl_dir)
        except (BuildFailed, CosimError, SimulatorNotFound, FileNotFoundError) as exc:
            raise BackendError(f"RTL co-simulation ({self.options.simulator}) failed: {exc}") from None
        seconds = time.perf_counter() - started
        return PathRun(dict(result.codes), seconds, result.latency_cycles, result.ii_cycles)

    def versions(self) -> dict:
        from testbench.simulators import get_simulator

        import cocotb

        simulator = self.simulator or get_simulator(self.options.simulator)
        return {"cocotb": cocotb.__version__, self.options.simulator: simulator.version()}


BACKENDS = {cls.name: cls for cls in (EmulatorBackend, CSimBackend, RtlBackend)}
PATH_NAMES = tuple(BACKENDS)


def get_backend(name: str, model: Model, options: BackendOptions) -> Backend:
    """The back end called `name` ("emulator", "csim" or "rtl") for `model`."""
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown path {name!r}; choose one of {', '.join(BACKENDS)}") from None
    return cls(model, options)


__all__ = ["BACKENDS", "PATH_NAMES", "Backend", "BackendError", "BackendOptions", "CSimBackend", "EmulatorBackend",
           "PathRun", "PathUnavailable", "RtlBackend", "get_backend"]
