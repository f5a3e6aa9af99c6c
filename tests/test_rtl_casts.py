"""The Verilog cast of firmware.rtl.casts equals emulator.arith.requantize, code for code, in every rounding and
overflow mode, signed and unsigned, for grids finer, equal, coarser and far coarser than the source (Verilator)."""

from pathlib import Path

import numpy as np
import pytest

from emulator.arith import requantize
from emulator.fixed_type import OVERFLOW_MODES, ROUNDING_MODES, FixedType
from firmware.rtl.casts import CastLibrary, cast_value
from firmware.rtl.lint import lint
from firmware.rtl.verilog import FILE_HEADER, Body, Value
from testbench.simulators import get_simulator

BUILD = Path(__file__).resolve().parents[1] / "build" / "rtl_casts"
INPUT_BITS = 10
# Both sources have 5 fractional bits; every input pattern of x is applied (x[8:0] for the unsigned one).
SOURCES = (FixedType(INPUT_BITS, 5, True), FixedType(INPUT_BITS - 1, 4, False))
# (destination width, fractional bits): rounding (frac 2), plain (5), left shift (7), all bits dropped (-6);
# widths 1 and 2 reach SAT_SYM's and WRAP_SM's corner cases, width 7 makes overflow rare.
SHAPES = ((4, 2), (1, 2), (2, 2), (7, 2), (4, 5), (4, 7), (5, -6))
# One C++ file (the wheel's precompiled-header rule breaks split builds) compiled without optimisation: the bank
# runs only 2**INPUT_BITS evaluations, so build time is what counts.
BUILD_ARGS = ("--output-split", "0", "-CFLAGS", "-O0")


def destinations():
    for width, frac in SHAPES:
        for signed in (True, False):
            for rounding in ROUNDING_MODES:
                for overflow in OVERFLOW_MODES:
                    if overflow == "WRAP_SM" and not signed:
                        continue
                    yield FixedType(width, width - frac, signed, rounding, overflow)


CASES = [(src, dst) for src in SOURCES for dst in destinations()]


def bank_verilog() -> str:
    """A module `cast_bank`: x -> y = {every case's cast of x, the first case in the low bits}."""
    body, library = Body(), CastLibrary()
    sources = {}
    for src in SOURCES:
        name = body.wire("src", src.width, f"x[{src.width - 1}:0]")
        sources[src] = Value(name, src.width, src.fractional, src.signed, src.min_code, src.max_code)
    outputs = [cast_value(body, library, sources[src], dst).expr for src, dst in CASES]
    total = sum(dst.width for _, dst in CASES)
    return "\n".join([
        FILE_HEADER,
        "// A cast reads only some bits of its locals (which ones depends on the modes).",
        "/* verilator lint_off UNUSEDSIGNAL */",
        "module cast_bank (",
        f"  input  wire [{INPUT_BITS - 1}:0] x,",
        f"  output wire [{total - 1}:0] y",
        ");",
        library.text(),
        body.text(),
        f"  assign y = {{{', '.join(reversed(outputs))}}};",
        "endmodule",
        "/* verilator lint_on UNUSEDSIGNAL */",
        "",
    ])


def expected_codes(src: FixedType, dst: FixedType) -> np.ndarray:
    patterns = np.arange(1 << INPUT_BITS, dtype=np.int64) & ((1 << src.width) - 1)
    codes = patterns - ((patterns >> (src.width - 1)) << src.width) if src.signed else patterns
    return requantize(codes, src, dst)


def observed_codes(rows: np.ndarray) -> list:
    bits = np.unpackbits(rows, axis=1, bitorder="little").astype(np.int64)
    out, offset = [], 0
    for _, dst in CASES:
        field = bits[:, offset:offset + dst.width]
        codes = field @ (1 << np.arange(dst.width, dtype=np.int64))
        if dst.signed:
            codes -= field[:, -1] << dst.width
        out.append(codes)
        offset += dst.width
    return out


@pytest.fixture(scope="module")
def bank_source():
    BUILD.mkdir(parents=True, exist_ok=True)
    path = BUILD / "cast_bank.v"
    text = bank_verilog()
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def test_cast_bank_is_lint_clean(bank_source):
    lint([bank_source], "cast_bank")


def test_every_cast_matches_the_emulator(bank_source):
    verilator = get_simulator("verilator")
    build_dir = verilator.build([bank_source], "cast_bank", BUILD / "verilator", build_args=BUILD_ARGS)
    out = BUILD / "observed.npy"
    out.unlink(missing_ok=True)
    result = verilator.test("testbench.tb_casts", "cast_bank", build_dir, extra_env={"CAST_BANK_OUT": str(out)})
    assert result.passed, f"{result}\n{result.log_tail()}"
    observed = observed_codes(np.load(out))
    failures = []
    for (src, dst), got in zip(CASES, observed):
        want = expected_codes(src, dst)
        bad = np.flatnonzero(got != want)
        if bad.size:
            i = bad[0]
            failures.append(f"{src} -> {dst}: input pattern {i:#x}: emulator {want[i]}, Verilog {got[i]} "
                            f"({bad.size} of {want.size} differ)")
    assert not failures, f"{len(failures)} of {len(CASES)} casts differ:\n" + "\n".join(failures[:20])
