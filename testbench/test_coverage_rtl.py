"""Mutants are read by the RTL generator as by the emulator: on Verilator, the RTL generated from a mutant's
manifest equals the mutant's emulator bit for bit, and so differs from the original model exactly where the
emulator says the mutant is distinguished (a sample of mutants, one per kind, and a reversed saturating sum)."""

from pathlib import Path

import numpy as np
import pytest

from emulator import Emulator
from emulator.coverage.mutants import mutants
from emulator.coverage.mutation import distinguishing
from testbench.cosim import cosimulate, first_mismatch

from tests.test_coverage_manifests import chain_with_heads, random_codes, saturating_sum

BUILD = Path(__file__).resolve().parents[1] / "build" / "test_coverage_rtl"
SAMPLE = ("weight_lsb", "rounding", "overflow", "narrower")


def sample():
    """(model, mutant, events) for the first mutant of each kind that random events distinguish."""
    manifest = chain_with_heads()
    codes = random_codes(manifest, 400, seed=41)
    picked = []
    for kind in SAMPLE:
        for m in mutants(manifest):
            if m.kind == kind and not m.equivalent and distinguishing(manifest, m, codes, None).any():
                picked.append(pytest.param(manifest, m, codes, id=m.name))
                break
    adder = saturating_sum()
    events = np.array([[100, 50, -100], [-100, -50, 100], [1, 2, 3], [127, 127, -128]], dtype=np.int64)
    reversed_ = next(m for m in mutants(adder) if m.kind == "sum_order")
    return picked + [pytest.param(adder, reversed_, events, id=reversed_.name)]


@pytest.mark.parametrize("manifest, mutant, codes", sample())
def test_mutant_rtl_follows_the_mutant_manifest(manifest, mutant, codes):
    differ = distinguishing(manifest, mutant, codes, None)
    assert differ.any()
    result = cosimulate(mutant.manifest, codes, simulator="verilator", build_dir=BUILD)
    assert first_mismatch(Emulator(mutant.manifest).predict_codes(codes).codes, result.codes) is None
    original = Emulator(manifest).predict_codes(codes).codes
    observed = np.any([(result.codes[name] != original[name]).any(axis=1) for name in manifest.outputs], axis=0)
    assert np.array_equal(observed, differ), f"{mutant.name}: the RTL differs from the original elsewhere"
