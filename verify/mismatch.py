"""Locate and explain differences with per-layer traces: the first differing layer and neuron of an event, the bit
differences per layer, and codes printed in binary and decimal with their types.
"""

from __future__ import annotations

import numpy as np

from emulator.fixed_type import FixedType
from emulator.manifest import Manifest

from .results import Difference, LayerDiff, LayerLocation


def compared_layers(manifest: Manifest, expected: dict, observed: dict) -> list:
    """Manifest layers (topological order) traced by both paths; hls4ml's in-place reshapes have no trace."""
    return [layer for layer in manifest.layers if layer.name in expected and layer.name in observed]


def locate(manifest: Manifest, expected: dict, observed: dict, names: tuple) -> LayerLocation | None:
    """The first layer, then the first neuron, where two traces of ONE event differ (None if they agree everywhere).
    `names` = (expected path, observed path)."""
    for layer in compared_layers(manifest, expected, observed):
        want, got = np.asarray(expected[layer.name])[0], np.asarray(observed[layer.name])[0]
        differ = np.flatnonzero(want != got)
        if differ.size:
            neuron = int(differ[0])
            index = tuple(int(i) for i in np.unravel_index(neuron, layer.shape))
            return LayerLocation(layer.name, layer.op, neuron, index, str(layer.result), int(want[neuron]),
                                 int(got[neuron]), *names)
    return None


def layer_differences(manifest: Manifest, expected: dict, observed: dict) -> dict:
    """{layer: LayerDiff} over all traced events: differing codes, events, and how often each bit differs."""
    diffs = {}
    for layer in compared_layers(manifest, expected, observed):
        want, got = np.asarray(expected[layer.name]), np.asarray(observed[layer.name])
        differ = want != got
        width = layer.result.width
        mask = (1 << width) - 1
        flipped = (want[differ] ^ got[differ]) & mask
        bits = ((flipped[:, None] >> np.arange(width)) & 1).sum(axis=0).astype(np.int64)
        diffs[layer.name] = LayerDiff(int(differ.sum()), int(differ.any(axis=1).sum()), bits)
    return diffs


def binary(code: int, t: FixedType) -> str:
    """The code's bits as the hardware holds them (two's complement for signed types), MSB first."""
    return format(code & ((1 << t.width) - 1), f"0{t.width}b")


def describe_code(code: int, t: FixedType) -> str:
    """`0b... = code N = value V` for one code of type t."""
    return f"0b{binary(code, t)}  code {code:>12d}  value {code * t.lsb!r}"


def explain(difference: Difference) -> str:
    """Lines for the terminal and report.md: where the first difference is, expected and observed codes with types."""
    out_type = FixedType.parse(difference.type)
    width = max(len(difference.reference), len(difference.path)) + 3
    lines = [
        f"first mismatch: event {difference.event}, output {difference.output!r} element {difference.element} "
        f"({difference.path} against {difference.reference}), type {difference.type}",
        f"  {('expected (' + difference.reference + ')'):<{width + 10}} {describe_code(difference.expected, out_type)}",
        f"  {('observed (' + difference.path + ')'):<{width + 10}} {describe_code(difference.observed, out_type)}",
    ]
    where = difference.location
    if where is not None:
        layer_type = FixedType.parse(where.type)
        width = max(len(where.expected_path), len(where.observed_path)) + 3
        lines += [
            f"first differing layer: {where.layer!r} ({where.op}), neuron {where.neuron} (index {where.index}) at "
            f"event {difference.event}, type {where.type}",
            f"  {('expected (' + where.expected_path + ')'):<{width + 10}} {describe_code(where.expected, layer_type)}",
            f"  {('observed (' + where.observed_path + ')'):<{width + 10}} {describe_code(where.observed, layer_type)}",
        ]
    if difference.location_note:
        lines.append(f"  {difference.location_note}")
    return "\n".join(lines)
