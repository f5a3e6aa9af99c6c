"""Write hls4ml projects the way the firmware is built, and compile their C-simulation with g++ under a
content-hash cache.

`convert` fixes the implementation choices (io_parallel, Latency, reuse factor 1, 5 ns, VU9P) and turns on tracing
for every layer; `compile_library` builds a shared library from a written project plus extra C++ sources and reuses
it while the project's firmware sources (weights included), the extra sources and the compiler are unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from emulator.fixed_type import FixedType, UnsupportedType

from .files import file_lock, replace_text
from .hls4ml_extensions import register

PART = "xcvu9p-flgb2104-2-e"
CLOCK_PERIOD = 5
PROJECT_NAME = "myproject"
INTERFACE_FILE = "csim_interface.json"
CACHE_DIR = Path(__file__).resolve().parents[1] / "build" / "csim-cache"
CXX = "g++"
_RECIPE = "l1ad-csim-build-1"  # change when the build recipe below changes, to invalidate old cache entries
_SKIPPED_SUFFIXES = (".so", ".o")

#: hls4ml layer classes whose C-simulation keeps no state between events once their lookup tables are filled
#: (recurrent layers, for one, do): a project made only of these may run events on several threads.
STATELESS_LAYERS = frozenset({
    "Input", "Dense", "Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
    "BatchNormalization", "Activation", "QActivation", "LeakyReLU",
    "ParametrizedActivation", "PReLU", "Softmax", "Reshape", "Transpose", "ZeroPadding1D", "ZeroPadding2D",
    "Pooling1D", "Pooling2D", "GlobalPooling1D", "GlobalPooling2D", "Resize", "Merge", "Concatenate", "Dot",
    "KLDivergence", "MSEDistance",
})


class CSimError(RuntimeError):
    """The C-simulation cannot be built or run (no compiler, a compile error, an unsupported layer or type)."""


# ---- project writing ---------------------------------------------------------------------------------
def convert(keras_model, hls_config: dict, build_dir, backend: str = "Vivado"):
    """Convert a Keras model with hls4ml (io_parallel, Latency, reuse 1, 200 MHz, xcvu9p), trace every layer, write
    the project."""
    import hls4ml

    register()
    supported = set(hls4ml.converters.get_supported_keras_layers())
    for layer in keras_model.layers:
        if type(layer).__name__ not in supported:
            raise CSimError(f"layer {layer.name!r} of Keras class {type(layer).__name__} is not supported by hls4ml "
                            f"(or not registered: custom heads need firmware.hls4ml_extensions.register())")
    config = copy.deepcopy(hls_config)
    config.setdefault("Model", {}).update(Strategy="Latency", ReuseFactor=1)
    hls_model = hls4ml.converters.convert_from_keras_model(
        keras_model, hls_config=config, output_dir=str(build_dir), project_name=PROJECT_NAME, backend=backend,
        io_type="io_parallel", part=PART, clock_period=CLOCK_PERIOD,
    )
    for node in hls_model.get_layers():
        node.set_attr("trace", True)
    hls_model.config.trace_output = True
    write_project(hls_model)
    return hls_model


@dataclass(frozen=True)
class Port:
    """One array the C-simulation exchanges: a model input, output, or traced layer output."""

    name: str  # the hls4ml layer name (for inputs: the input layer)
    type_name: str  # the C++ typedef
    size: int
    type: FixedType


@dataclass(frozen=True)
class ProjectInterface:
    """What the generated C++ exposes: top function, its input and output arrays, and the traced layers."""

    project_dir: Path
    top_function: str
    namespace: str | None
    inputs: tuple
    outputs: tuple
    traced: tuple
    stateless: bool  # every layer is in STATELESS_LAYERS

    @classmethod
    def from_model(cls, hls_model) -> "ProjectInterface":
        io_type = hls_model.config.get_config_value("IOType")
        if io_type != "io_parallel":
            raise CSimError(f"IOType {io_type!r} is not supported by the batched C-simulation; use io_parallel")
        if any(var.storage.lower() == "bram" for var in hls_model.get_weight_variables()):
            raise CSimError("weights stored in BRAM become ports of the top function; the batched C-simulation "
                            "supports only weights inside the design")
        owner = {}
        for node in hls_model.get_layers():
            for var in node.get_variables():
                owner[var.name] = node.name
        inputs = tuple(_port(owner[v.name], v) for v in hls_model.get_input_variables())
        outputs = tuple(_port(owner[v.name], v) for v in hls_model.get_output_variables())
        traced = ()
        if hls_model.config.trace_output:
            traced = tuple(
                _port(node.name, node.get_output_variable(), traced=True)
                for node in hls_model.get_layers()
                if node.get_attr("function_cpp", None) and node.get_attr("trace", False)
                and len(node.get_variables()) == 1
            )
        return cls(
            project_dir=Path(hls_model.config.get_output_dir()).resolve(),
            top_function=hls_model.config.get_project_name(),
            namespace=hls_model.config.get_writer_config().get("Namespace", None),
            inputs=inputs, outputs=outputs, traced=traced,
            stateless=all(node.class_name in STATELESS_LAYERS for node in hls_model.get_layers()),
        )

    def save(self) -> Path:
        path = self.project_dir / INTERFACE_FILE
        body = {
            "top_function": self.top_function,
            "namespace": self.namespace,
            "stateless": self.stateless,
            **{group: [_port_to_dict(p) for p in getattr(self, group)] for group in ("inputs", "outputs", "traced")},
        }
        replace_text(path, json.dumps(body, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, project_dir) -> "ProjectInterface":
        project_dir = Path(project_dir).resolve()
        path = project_dir / INTERFACE_FILE
        if not path.is_file():
            raise CSimError(f"{project_dir} has no {INTERFACE_FILE}: write the project with "
                            f"firmware.hls_project.convert or pass the hls4ml model instead of its directory")
        try:
            body = json.loads(path.read_text())
            ports = {group: tuple(_port_from_dict(p) for p in body[group]) for group in ("inputs", "outputs", "traced")}
            return cls(project_dir, body["top_function"], body["namespace"], stateless=body["stateless"], **ports)
        except (KeyError, TypeError, ValueError) as exc:
            raise CSimError(f"{path} is malformed or from an older version ({exc!r}); "
                            f"convert the model again") from None


def write_project(hls_model) -> ProjectInterface:
    """Write (or rewrite) the hls4ml project and its interface description; the project is unchanged when the model is.
    hls4ml rewrites the folder in place, so this holds the project's lock, which readers share (`project_lock`)."""
    interface = ProjectInterface.from_model(hls_model)
    with project_lock(interface.project_dir):
        hls_model.write()
        interface.save()
    return interface


def project_lock(project_dir: Path, shared: bool = False):
    """The lock of a project folder (a file beside it): exclusive while it is written, shared while it is read."""
    project_dir = Path(project_dir)
    return file_lock(project_dir.parent / f".{project_dir.name}.lock", shared)


def _port(layer_name: str, var, traced: bool = False) -> Port:
    """The port of an hls4ml variable; its type must fit int64 codes (traced: hls4ml's double trace buffers,
    exactly)."""
    try:
        fixed = FixedType.from_hls4ml(var.type.precision)
    except UnsupportedType as exc:
        raise CSimError(f"layer {layer_name!r}: output type {var.type.precision} is not supported: {exc}") from None
    if traced and fixed.width > 53:
        raise CSimError(f"layer {layer_name!r}: type {fixed} is too wide to trace exactly through hls4ml's double "
                        f"trace buffers (at most 53 bits)")
    if fixed.width > (64 if fixed.signed else 63):
        raise CSimError(f"layer {layer_name!r}: type {fixed} is too wide for int64 codes")
    return Port(layer_name, var.type.name, int(var.size()), fixed)


def _port_to_dict(port: Port) -> dict:
    return {"name": port.name, "type_name": port.type_name, "size": port.size, "type": str(port.type)}


def _port_from_dict(d: dict) -> Port:
    return Port(d["name"], d["type_name"], int(d["size"]), FixedType.parse(d["type"]))


# ---- compilation with a cache --------------------------------------------------------------------------
@dataclass(frozen=True)
class CompiledLibrary:
    """A shared library in the cache; `compiled` says whether this call built it (False: reused)."""

    path: Path
    key: str
    compiled: bool


def compile_library(interface: ProjectInterface, extra_sources: dict, cache_dir=None, env=None) -> CompiledLibrary:
    """Compile the project's top function with `extra_sources` ({file name: C++ text}) into one shared library,
    cached under cache_dir/<content hash>/. `env` replaces os.environ for finding and running g++."""
    firmware = interface.project_dir / "firmware"
    top_source = firmware / f"{interface.top_function}.cpp"
    if not top_source.is_file():
        raise CSimError(f"{top_source} does not exist: write the hls4ml project first")
    env = dict(os.environ if env is None else env)
    cxx = shutil.which(CXX, path=env.get("PATH", ""))
    if cxx is None:
        raise CSimError(f"the C++ compiler {CXX} was not found on PATH ({env.get('PATH', '')!r}); "
                        f"install it (Debian: apt-get install g++)")
    flags = _compile_flags(cxx)
    with project_lock(interface.project_dir, shared=True):  # no rewrite while it is hashed and compiled
        key = _cache_key(firmware, extra_sources, cxx, flags)
        entry = Path(cache_dir or CACHE_DIR).resolve() / key
        compiled = not (entry / "csim.so").is_file()
        if compiled:
            _build(firmware, top_source, extra_sources, [cxx, *flags], entry, env)
    return CompiledLibrary(entry / "csim.so", key, compiled)


def _build(firmware: Path, top_source: Path, extra_sources: dict, compiler: list, entry: Path, env: dict) -> None:
    """Compile and link in a temporary folder beside `entry`, then rename it to `entry` (a concurrent build of the
    same key may win the race)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{entry.name}.", dir=entry.parent))
    try:
        shutil.copytree(firmware / "weights", work / "weights")
        sources = [top_source]
        for name, text in extra_sources.items():
            (work / name).write_text(text)
            sources.append(work / name)
        base = [*compiler, f"-I{firmware}", f"-I{firmware / 'ap_types'}", f'-DWEIGHTS_DIR="{entry / "weights"}"']
        jobs = [(src, subprocess.Popen([*base, "-c", str(src), "-o", str(work / f"{src.stem}.o")], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
                for src in sources]
        results = [(src, job.communicate()[0], job.returncode) for src, job in jobs]
        for src, output, returncode in results:
            _check(output, returncode, f"compiling {src}")
        link = subprocess.run([*compiler, "-shared", "-Wl,-Bsymbolic", *(str(work / f"{s.stem}.o") for s in sources),
                               "-o", str(work / "csim.so")], env=env, capture_output=True, text=True)
        _check(link.stdout + link.stderr, link.returncode, "linking the C-simulation library")
        for src in sources:
            (work / f"{src.stem}.o").unlink()
        try:
            work.rename(entry)
        except OSError:
            if not (entry / "csim.so").is_file():  # not a concurrent build of the same key that won the race
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check(output: str, returncode: int, what: str) -> None:
    if returncode != 0:
        lines = output.strip().splitlines()
        raise CSimError(f"{CXX} failed {what} (exit status {returncode}):\n" + "\n".join(lines[-40:]))


@lru_cache(maxsize=None)
def _compile_flags(cxx: str) -> tuple:
    """The flags of hls4ml's build_lib.sh (newest C++ standard it would pick, no GNU-unique symbols), fatal first
    error."""
    def accepts(flag):
        probe = subprocess.run([cxx, "-Werror", "-fsyntax-only", flag, "-xc++", "-", "-o", os.devnull],
                               input="", capture_output=True, text=True)
        return probe.returncode == 0

    flags = ["-O3", "-fPIC", "-std=c++23" if accepts("-std=c++23") else "-std=c++11"]
    if accepts("-fno-gnu-unique"):
        flags.append("-fno-gnu-unique")
    return (*flags, "-Wfatal-errors")


@lru_cache(maxsize=None)
def _compiler_identity(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout


def _cache_key(firmware: Path, extra_sources: dict, cxx: str, flags: tuple) -> str:
    digest = hashlib.sha256()

    def add(label: str, data: bytes):
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("recipe", _RECIPE.encode())
    add("compiler", _compiler_identity(cxx).encode())
    add("flags", "\0".join(flags).encode())
    for path in sorted(p for p in firmware.rglob("*") if p.is_file() and p.suffix not in _SKIPPED_SUFFIXES):
        add(f"firmware/{path.relative_to(firmware).as_posix()}", path.read_bytes())
    for name in sorted(extra_sources):
        add(f"extra/{name}", extra_sources[name].encode())
    return digest.hexdigest()[:32]
