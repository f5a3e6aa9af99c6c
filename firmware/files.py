"""Build folders that several processes share (pytest workers, Dask workers, two verify runs): a file lock, and
files replaced whole so that no reader ever sees half of one."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path, shared: bool = False):
    """Hold a lock on the file `path` (created if missing) for the duration of the block: exclusive for a writer,
    `shared` for readers, who may hold it together."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def replace_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file renamed over it (atomic: readers see the old or the new)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_text(text)
    partial.replace(path)


__all__ = ["file_lock", "replace_text"]
