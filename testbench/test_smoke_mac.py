"""Smoke test of the co-simulation chain: a pipelined MAC passes its cocotb test on Verilator and Icarus,
and deliberately broken variants of it fail there."""

from pathlib import Path

import pytest

from testbench.simulators import SIMULATORS, SimulatorNotFound, get_simulator

REPO_ROOT = Path(__file__).resolve().parents[1]
MAC_SOURCE = Path(__file__).resolve().parent / "smoke" / "mac.v"
BUILD_ROOT = REPO_ROOT / "build" / "smoke_mac"
TEST_MODULE = "testbench.smoke.cocotb_mac"
# Product (8 + 6 bits) wider than the accumulator: exercises sign extension and wrap-around.
PARAMETERS = {"A_WIDTH": 8, "B_WIDTH": 6, "ACC_WIDTH": 12}
TEST_ENV = {"SMOKE_MAC_VECTORS": "2000", "SMOKE_MAC_SEED": "20240521"}

# name -> (correct text, broken text): each variant is mac.v with exactly one of these substitutions.
BROKEN_VARIANTS = {
    "unsigned_b": ("input  wire signed [B_WIDTH-1:0]   b,", "input  wire        [B_WIDTH-1:0]   b,"),
    "valid_one_cycle_early": ("out_valid    <= stage1_valid;", "out_valid    <= in_valid;"),
}


def run_mac(simulator_name, source, build_dir):
    """Build `source` with PARAMETERS and run the MAC cocotb test on it."""
    simulator = get_simulator(simulator_name)
    simulator.build([source], "mac", build_dir, PARAMETERS)
    return simulator.test(TEST_MODULE, "mac", build_dir, extra_env=TEST_ENV)


def broken_source(variant, directory):
    """Write mac.v with the variant's bug into `directory` and return its path."""
    correct, broken = BROKEN_VARIANTS[variant]
    text = MAC_SOURCE.read_text()
    assert text.count(correct) == 1, f"variant {variant}: {correct!r} must occur exactly once in {MAC_SOURCE}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mac.v"
    path.write_text(text.replace(correct, broken))
    return path


@pytest.mark.parametrize("simulator_name", sorted(SIMULATORS))
def test_mac_passes(simulator_name):
    result = run_mac(simulator_name, MAC_SOURCE, BUILD_ROOT / simulator_name / "correct")
    assert result.passed, f"{result}\n{result.log_tail()}"
    assert result.tests == 1


@pytest.mark.parametrize("variant", sorted(BROKEN_VARIANTS))
@pytest.mark.parametrize("simulator_name", sorted(SIMULATORS))
def test_broken_mac_fails(simulator_name, variant):
    build_dir = BUILD_ROOT / simulator_name / variant
    result = run_mac(simulator_name, broken_source(variant, build_dir / "src"), build_dir)
    assert not result.passed
    assert (result.tests, result.failures) == (1, 1), f"the test must run and fail, not crash: {result}"
    assert "AssertionError" in result.log_file.read_text()


def test_build_is_cached_until_inputs_change(tmp_path):
    icarus = get_simulator("icarus")
    build_dir = icarus.build([MAC_SOURCE], "mac", tmp_path, PARAMETERS)
    artefact = icarus.artefact(build_dir, "mac")
    first = artefact.stat().st_mtime_ns
    icarus.build([MAC_SOURCE], "mac", tmp_path, PARAMETERS)
    assert artefact.stat().st_mtime_ns == first
    icarus.build([MAC_SOURCE], "mac", tmp_path, {**PARAMETERS, "ACC_WIDTH": 16})
    assert artefact.stat().st_mtime_ns != first


def test_unknown_simulator_is_named():
    with pytest.raises(ValueError, match="'modelsim'.*verilator"):
        get_simulator("modelsim")


@pytest.mark.parametrize(("simulator_name", "message"), [
    ("icarus", "icarus needs the executable 'iverilog'.*apt-get install -y iverilog"),
    ("verilator", "verilator needs the executable 'perl'"),
])
def test_missing_tool_is_named_with_install_hint(monkeypatch, tmp_path, simulator_name, message):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SimulatorNotFound, match=message):
        get_simulator(simulator_name)
