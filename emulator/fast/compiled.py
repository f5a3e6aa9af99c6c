"""Write the generated module of a manifest under build/fast-emulator/<key>/ once and import it (numba caches its
machine code next to it), keyed by the manifest's content hash and the source of the generator."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from emulator.manifest import Manifest

from .codegen import Generated, generate

BUILD_DIR = Path(__file__).resolve().parents[2] / "build" / "fast-emulator"
#: Files whose source determines the generated code or the code it calls (numba's cache does not track them).
_GENERATOR_FILES = ("codegen.py", "intervals.py", "../arith.py", "../plan.py", "../fixed_type.py")


def generator_digest() -> str:
    """SHA-256 of the generator's own source files."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _GENERATOR_FILES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def module_key(manifest: Manifest) -> str:
    return hashlib.sha256((manifest.content_hash + generator_digest()).encode()).hexdigest()[:24]


def load(manifest: Manifest, build_dir: Path | None = None):
    """(module, Generated) for `manifest`: the module has `run(x, chunks, *outs)` and the block size `B`."""
    generated = generate(manifest)
    key = module_key(manifest)
    folder = Path(build_dir or BUILD_DIR) / key
    path = folder / f"kernel_{key}.py"
    if not path.exists() or path.read_text() != generated.source:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".kernel_{key}.{os.getpid()}.tmp"
        partial.write_text(generated.source)
        partial.replace(path)
    name = f"emulator_fast_kernel_{key}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name], generated


__all__ = ["BUILD_DIR", "Generated", "generator_digest", "load", "module_key"]
