"""Coverage-driven certification: coverage bins from the manifest, the instrumented emulator that counts them, the
precision profile, interval proofs of unreachable bins and targeted stimuli for the empty ones."""

from .bins import Bin, Trigger, coverage_bins
from .instrumented import Coverage, InstrumentedEmulator
from .report import CoverageReport, LayerStats

__all__ = ["Bin", "Coverage", "CoverageReport", "InstrumentedEmulator", "LayerStats", "Trigger", "coverage_bins"]
