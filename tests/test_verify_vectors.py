"""The EMP pattern-file writer and reader: the text format, and the round trip of packed event codes."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.fixed_type import FixedType
from verify.vectors import (PatternError, events_from_pattern, pack_words, read_pattern, unpack_words,
                            write_event_pattern, write_pattern)


@st.composite
def packed_events(draw):
    t = FixedType(draw(st.integers(1, 63)), draw(st.integers(-4, 40)), draw(st.booleans()))
    n = draw(st.integers(1, 70))
    n_events = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    codes = np.random.default_rng(seed).integers(t.min_code, t.max_code, size=(n_events, n), endpoint=True)
    return t, codes, draw(st.one_of(st.none(), st.integers(1, 9)))


@given(packed_events())
@settings(max_examples=60, deadline=None)
def test_pattern_round_trip(tmp_path_factory, case):
    t, codes, links = case
    path = tmp_path_factory.mktemp("emp") / "rx.txt"
    write_event_pattern(path, "board_x", codes, t, links)
    pattern = read_pattern(path)
    assert pattern.board == "board_x"
    assert pattern.valid.all()
    assert np.array_equal(events_from_pattern(pattern, codes.shape[1], t), codes)


def test_widest_signed_fields_round_trip_as_integers(tmp_path):
    """63-bit signed codes (the case hypothesis found: their sign extension once went through floats)."""
    t = FixedType(63, 0)
    codes = np.array([[-3821711885214981764, t.min_code, t.max_code, -1, 0]])
    path = write_event_pattern(tmp_path / "rx.txt", "board_x", codes, t)
    out = events_from_pattern(read_pattern(path), codes.shape[1], t)
    assert out.dtype == np.int64 and np.array_equal(out, codes)


def test_packing_layout_is_documented_one():
    t = FixedType(18, 12)
    codes = np.array([[1, -1, 2, 3]])  # 3 fields of 18 bits per word: word 0 = 1 | (2**18-1) << 18 | 2 << 36
    words = pack_words(codes, t.width)
    assert words.tolist() == [[1 | ((1 << 18) - 1) << 18 | 2 << 36, 3]]
    assert unpack_words(words, 4, 18, True).tolist() == codes.tolist()


def test_text_format(tmp_path):
    words = np.array([[0x0123456789ABCDEF, 0], [1, 2]], dtype=np.uint64)
    path = write_pattern(tmp_path / "p.txt", "vcu118", words, valid=np.array([[True, True], [False, True]]))
    lines = path.read_text().splitlines()
    assert lines[0] == "Board vcu118"
    assert re.fullmatch(r"\s*Quad/Chan :\s+q00c0\s+q00c1", lines[1])
    assert re.fullmatch(r"\s*Link :\s+000\s+001", lines[2])
    assert lines[3] == "Frame 0000 : 1v0123456789abcdef 1v0000000000000000"
    assert lines[4] == "Frame 0001 : 0v0000000000000001 1v0000000000000002"
    assert lines[1].index("q00c1") == lines[3].index("1v0000000000000000")  # columns line up
    back = read_pattern(path)
    assert back.words.tolist() == words.tolist() and back.valid.tolist() == [[True, True], [False, True]]


def test_malformed_pattern_is_named(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("Board b\nFrame 0000 : 1v00000000000000zz\n")
    with pytest.raises(PatternError, match="bad.txt:2"):
        read_pattern(path)
    path.write_text("Board b\nFrame 0001 : 1v0000000000000000\n")
    with pytest.raises(PatternError, match="out of order"):
        read_pattern(path)
