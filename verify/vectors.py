"""Test vectors a firmware team can replay: input codes and expected output codes as text, hls4ml testbench files,
and pattern files in the text format of the EMP framework (emp-fwk) board buffers.

EMP pattern file (one per direction):
    Board <name>
     Quad/Chan :    q00c0              q00c1  ...
          Link :     000                001   ...
    Frame 0000 : 1v0000000000000000 1v0000000000000000 ...
one line per clock frame, one `<valid>v<16 hex digits>` 64-bit word per link.
Packing of one event (`pack_words`): each element's code is taken as a `width`-bit field (two's complement if
signed); k = 64 // width whole fields go into each 64-bit word, element i into word i // k at bits
[(i % k) * width, (i % k + 1) * width), the rest of the word zero; fields never straddle words. The event's words are
spread over the links, word j on link j % n_links in the event's frame j // n_links, so an event takes
ceil(words / n_links) consecutive frames, all valid; unused slots of its last frame are valid zero words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulator.fixed_type import FixedType

WORD_BITS = 64
_FRAME = re.compile(r"^Frame\s+(\d+)\s*:\s*(.*)$")
_WORD = re.compile(r"^([01])v([0-9a-fA-F]{16})$")


class PatternError(ValueError):
    """A pattern file that does not follow the EMP text format, or values that cannot be packed."""


def words_per_event(n_elements: int, width: int) -> int:
    if not 1 <= width < WORD_BITS:
        raise PatternError(f"fields must be 1 to {WORD_BITS - 1} bits wide (int64 codes), got {width}")
    per_word = WORD_BITS // width
    return -(-n_elements // per_word)


def pack_words(codes: np.ndarray, width: int) -> np.ndarray:
    """(events, n) codes -> (events, words) uint64, `64 // width` whole fields per word, element 0 in the low bits."""
    codes = np.asarray(codes, dtype=np.int64)
    n_events, n = codes.shape
    per_word = WORD_BITS // width
    n_words = words_per_event(n, width)
    fields = np.zeros((n_events, n_words * per_word), dtype=np.uint64)
    fields[:, :n] = (codes & ((1 << width) - 1)).astype(np.uint64)
    fields = fields.reshape(n_events, n_words, per_word)
    shifts = (np.arange(per_word, dtype=np.uint64) * np.uint64(width))
    return np.bitwise_or.reduce(fields << shifts, axis=2)


def unpack_words(words: np.ndarray, n: int, width: int, signed: bool) -> np.ndarray:
    """Inverse of pack_words: (events, words) uint64 -> (events, n) int64 codes."""
    words = np.asarray(words, dtype=np.uint64)
    per_word = WORD_BITS // width
    shifts = np.arange(per_word, dtype=np.uint64) * np.uint64(width)
    mask = np.uint64((1 << width) - 1)
    fields = ((words[:, :, None] >> shifts) & mask).reshape(len(words), -1)[:, :n].astype(np.int64)
    if signed:  # sign-extend in int64 (2**width itself does not fit in int64 for 63-bit fields)
        pad = np.int64(64 - width)
        fields = (fields << pad) >> pad
    return fields


@dataclass(frozen=True)
class Pattern:
    """The content of a pattern file: board name, valid bits and words, both (frames, links)."""

    board: str
    valid: np.ndarray
    words: np.ndarray

    @property
    def links(self) -> int:
        return self.words.shape[1]


def event_frames(words: np.ndarray, n_links: int) -> np.ndarray:
    """(events, words) -> (events * frames per event, n_links) frames: word j of an event on link j % n_links."""
    n_events, n_words = words.shape
    frames = -(-n_words // n_links)
    padded = np.zeros((n_events, frames * n_links), dtype=np.uint64)
    padded[:, :n_words] = words
    return padded.reshape(n_events * frames, n_links)


def write_pattern(path, board: str, words: np.ndarray, valid: np.ndarray | None = None) -> Path:
    """Write (frames, links) uint64 words (all valid unless `valid` says otherwise) as an EMP pattern file."""
    words = np.asarray(words, dtype=np.uint64)
    if words.ndim != 2 or words.shape[1] == 0:
        raise PatternError(f"pattern words must be (frames, links) with at least one link, got {words.shape}")
    valid = np.ones(words.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if not board or any(c.isspace() for c in board):
        raise PatternError(f"board name {board!r} must be one word")
    links = range(words.shape[1])
    digits = max(4, len(str(len(words) - 1)))
    lead = 6 + digits  # columns line up under the words of the "Frame NNNN :" lines
    lines = [f"Board {board}",
             "Quad/Chan :".rjust(lead + 2) + "".join(f" q{i // 4:02d}c{i % 4}".ljust(19) for i in links).rstrip(),
             "Link :".rjust(lead + 2) + "".join(f" {i:03d}".ljust(19) for i in links).rstrip()]
    for f, (row, ok) in enumerate(zip(words, valid)):
        lines.append(f"Frame {f:0{digits}d} :" + "".join(f" {int(v)}v{int(w):016x}" for w, v in zip(row, ok)))
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def read_pattern(path) -> Pattern:
    """Parse an EMP pattern file; PatternError naming the line if it is malformed."""
    path = Path(path)
    board, valid, words = None, [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("Quad/Chan", "Link")):
            continue
        if stripped.startswith("Board"):
            board = stripped[len("Board"):].strip()
            continue
        match = _FRAME.match(stripped)
        if match is None:
            raise PatternError(f"{path}:{number}: not a Board, Quad/Chan, Link or Frame line: {line!r}")
        if int(match.group(1)) != len(words):
            raise PatternError(f"{path}:{number}: frame {match.group(1)} out of order (expected {len(words)})")
        row_valid, row_words = [], []
        for token in match.group(2).split():
            word = _WORD.match(token)
            if word is None:
                raise PatternError(f"{path}:{number}: {token!r} is not <valid>v<16 hex digits>")
            row_valid.append(word.group(1) == "1")
            row_words.append(int(word.group(2), 16))
        if words and len(row_words) != len(words[0]):
            raise PatternError(f"{path}:{number}: {len(row_words)} links, earlier frames have {len(words[0])}")
        valid.append(row_valid)
        words.append(row_words)
    if board is None:
        raise PatternError(f"{path}: no 'Board <name>' header")
    return Pattern(board, np.array(valid, dtype=bool).reshape(len(words), -1),
                   np.array(words, dtype=np.uint64).reshape(len(words), -1))


def events_from_pattern(pattern: Pattern, n: int, t: FixedType) -> np.ndarray:
    """The (events, n) codes of type t packed in a pattern written by write_event_pattern (valid frames only)."""
    n_words = words_per_event(n, t.width)
    frames = -(-n_words // pattern.links)
    rows = pattern.words[pattern.valid.all(axis=1)]
    if len(rows) % frames:
        raise PatternError(f"{len(rows)} valid frames is not a whole number of events of {frames} frames")
    words = rows.reshape(-1, frames * pattern.links)[:, :n_words]
    return unpack_words(words, n, t.width, t.signed)


def write_event_pattern(path, board: str, codes: np.ndarray, t: FixedType, n_links: int | None = None) -> Path:
    """Pack (events, n) codes of type t into an EMP pattern file (default: one event per frame)."""
    codes = np.asarray(codes, dtype=np.int64)
    words = pack_words(codes, t.width)
    n_links = n_links or words.shape[1]
    return write_pattern(path, board, event_frames(words, n_links))


def write_vectors(out_dir, manifest, inputs: np.ndarray, outputs: dict, first_event: int, note: str,
                  board: str = "l1ad", n_links: int | None = None) -> dict:
    """Write the test vectors into out_dir; returns {what: file name} (also saved as vectors.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = manifest.input
    files = {"input_codes": "input_codes.txt", "emp_rx": "emp_rx_inputs.txt",
             "hls4ml_inputs": "tb_input_features.dat", "hls4ml_outputs": "tb_output_predictions.dat"}
    _code_table(out / files["input_codes"], inputs)
    write_event_pattern(out / files["emp_rx"], board, inputs, spec.type, n_links)
    _value_table(out / files["hls4ml_inputs"], inputs, [spec.type.lsb] * spec.size)
    out_types = {name: manifest.layer(name).result for name in manifest.outputs}
    _value_table(out / files["hls4ml_outputs"], np.concatenate([outputs[name] for name in manifest.outputs], axis=1),
                 [out_types[name].lsb for name in manifest.outputs for _ in range(manifest.layer(name).size)])
    for name in manifest.outputs:
        files[f"expected_codes:{name}"] = f"expected_codes_{name}.txt"
        files[f"emp_tx:{name}"] = f"emp_tx_expected_{name}.txt"
        _code_table(out / files[f"expected_codes:{name}"], outputs[name])
        write_event_pattern(out / files[f"emp_tx:{name}"], board, outputs[name], out_types[name])
    description = {
        "note": note,
        "events": {"first": first_event, "count": int(len(inputs))},
        "input": {"name": spec.name, "shape": list(spec.shape), "type": str(spec.type), "size": spec.size},
        "outputs": {name: {"type": str(t), "size": manifest.layer(name).size} for name, t in out_types.items()},
        "files": files,
        "formats": {
            "codes": "one event per line: raw integer codes (value * 2**fractional bits), decimal, C order",
            "hls4ml": "hls4ml testbench tb_data files: one event per line, exact decimal values of the codes",
            "emp": __doc__.split("EMP pattern file", 1)[1].strip(),
        },
    }
    (out / "vectors.json").write_text(json.dumps(description, indent=1) + "\n")
    return files


def _code_table(path: Path, codes: np.ndarray) -> None:
    path.write_text("".join(" ".join(str(int(c)) for c in row) + "\n" for row in codes))


def _value_table(path: Path, codes: np.ndarray, lsbs: list) -> None:
    """Exact decimal values (code * lsb is exact in float64 for codes up to 53 bits), one event per line."""
    path.write_text("".join(" ".join(repr(float(c) * lsb) for c, lsb in zip(row, lsbs)) + "\n" for row in codes))
