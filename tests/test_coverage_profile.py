"""The precision profile of a hand-built model: table rows from known events, and the plot file."""

import numpy as np
import pytest

from emulator.coverage import InstrumentedEmulator
from emulator.coverage.profile import plot_profile, precision_profile, profile_table
from test_coverage_instrumented import EVENTS
from test_coverage_manifests import chain_with_heads, random_codes, two_input_dense


def test_profile_of_known_events():
    manifest = two_input_dense()
    report = InstrumentedEmulator(manifest).cover_codes(EVENTS).report
    (row,) = precision_profile(manifest, report)
    # results of EVENTS: 31 (saturated), 3 (2.5 rounded up), -32 (saturated), 3, 31, -32
    assert (row.observed_min, row.observed_max) == (-32, 31)
    assert row.overflow_rate == pytest.approx(2 / 6)  # events 0 and 2 saturate (accumulator and result)
    assert row.overflow_casts == 4
    assert (row.at_min_rate, row.at_max_rate) == (pytest.approx(2 / 6), pytest.approx(2 / 6))
    assert row.headroom_bits == 0
    table = profile_table([row])
    assert table.splitlines()[0].split()[:2] == ["layer", "type"]
    assert "[-32, 31]" in table and "33.333%" in table and "0 bits" in table


def test_headroom_counts_unused_integer_bits():
    manifest = two_input_dense()
    report = InstrumentedEmulator(manifest).cover_codes(np.array([[3, 2], [-6, 0]], dtype=np.int64)).report
    (row,) = precision_profile(manifest, report)
    assert (row.observed_min, row.observed_max) == (-3, 3)  # [-4, 3] fits 3 bits of the 6
    assert row.headroom_bits == 3


def test_plot_and_table_for_every_layer(tmp_path):
    manifest = chain_with_heads()
    report = InstrumentedEmulator(manifest).cover_codes(random_codes(manifest, 1000, seed=9)).report
    rows = precision_profile(manifest, report)
    assert [r.layer for r in rows] == [layer.name for layer in manifest.layers]
    assert len(profile_table(rows).splitlines()) == len(rows) + 1
    path = plot_profile(rows, tmp_path / "profile.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="not for"):
        precision_profile(two_input_dense(), report)
