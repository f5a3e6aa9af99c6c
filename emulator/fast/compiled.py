"""Compile a generated module with LLVM (llvmlite, which numba ships) for this machine, and keep the machine code
under build/fast-emulator/<key>.o, keyed by the IR text, the LLVM version and the CPU, so that later processes
skip the compilation."""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from pathlib import Path

BUILD_DIR = Path(__file__).resolve().parents[2] / "build" / "fast-emulator"
#: LLVM's optimisation level for the generated code.
OPT_LEVEL = 3

_EMULATE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                            ctypes.c_int64)
_lock = threading.Lock()


def _target_machine():
    """A new target machine for the host (an execution engine owns, and frees, the one it is given)."""
    import llvmlite.binding as llvm

    with _lock:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=OPT_LEVEL,
        codemodel="jitdefault")


def machine_key(ir: str) -> str:
    """SHA-256 prefix of the IR, the LLVM version, the host CPU and its features."""
    import llvmlite.binding as llvm

    parts = (ir, str(llvm.llvm_version_info), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten(),
             str(OPT_LEVEL))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


class Kernel:
    """A compiled `emulate(inputs, outputs, first_block, n_blocks, stride) -> bad blocks`, callable from any thread (the
    call releases the GIL). `compiled` says whether LLVM compiled it in this process (False: from the cache)."""

    def __init__(self, ir: str, build_dir: Path | None = None):
        import llvmlite.binding as llvm

        tm = _target_machine()
        path = Path(build_dir or BUILD_DIR) / f"{machine_key(ir)}.o"
        module = llvm.parse_assembly(ir)
        module.triple, module.data_layout = tm.triple, str(tm.target_data)
        cached = path.read_bytes() if path.exists() else None
        self.compiled = cached is None
        if self.compiled:
            module.verify()
            passes = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=OPT_LEVEL))
            passes.getModulePassManager().run(module, passes)
        self._engine = llvm.create_mcjit_compiler(module, tm)
        self._engine.set_object_cache(lambda _module, buffer: _save(path, buffer), lambda _module: cached)
        self._engine.finalize_object()
        self.emulate = _EMULATE(self._engine.get_function_address("emulate"))


def _save(path: Path, buffer: bytes):
    """Write the object file atomically (several processes may compile the same module)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_bytes(buffer)
    partial.replace(path)


__all__ = ["BUILD_DIR", "Kernel", "machine_key"]
