"""Deliberate faults for testing the certifier itself: one integer code of a layer tensor changed, in one path only.

Spelling (the hidden option --inject-fault): TARGET:LAYER:TENSOR:INDEX:DELTA, e.g. `emulator:enc_dense1:bias:3:+1`.
TARGET is `emulator` (the emulator's manifest), `rtl` (the manifest the RTL is generated from) or `determinism`
(only the second emulator run of the determinism check). The code at flat INDEX of LAYER's TENSOR moves by DELTA,
saturated to the tensor's type. The references themselves are never touched: the fault lives in a copy of the manifest.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from emulator.manifest import Manifest

TARGETS = ("emulator", "rtl", "determinism")


class FaultError(ValueError):
    """A fault specification that is malformed or names nothing in the manifest."""


@dataclass(frozen=True)
class Fault:
    """Add `delta` to code `index` (flat, C order) of tensor `tensor` of layer `layer`, in path `target` only."""

    target: str
    layer: str
    tensor: str
    index: int
    delta: int

    @classmethod
    def parse(cls, text: str) -> "Fault":
        parts = text.split(":")
        if len(parts) != 5:
            raise FaultError(f"fault {text!r}: expected TARGET:LAYER:TENSOR:INDEX:DELTA, "
                             f"e.g. emulator:dense1:bias:0:+1")
        target, layer, tensor, index, delta = parts
        if target not in TARGETS:
            raise FaultError(f"fault {text!r}: target {target!r} is not one of {', '.join(TARGETS)}")
        try:
            return cls(target, layer, tensor, int(index), int(delta))
        except ValueError:
            raise FaultError(f"fault {text!r}: INDEX and DELTA must be integers") from None

    def __str__(self) -> str:
        return f"{self.target}:{self.layer}:{self.tensor}:{self.index}:{self.delta:+d}"


def apply_faults(manifest: Manifest, faults) -> Manifest:
    """A copy of `manifest` with every fault applied; FaultError if one names nothing or changes nothing."""
    faulty = copy.deepcopy(manifest)
    for fault in faults:
        try:
            layer = faulty.layer(fault.layer)
        except KeyError:
            raise FaultError(f"fault {fault}: no layer {fault.layer!r}; layers: "
                             f"{', '.join(l.name for l in faulty.layers)}") from None
        if fault.tensor not in layer.tensors:
            raise FaultError(f"fault {fault}: layer {fault.layer!r} has no tensor {fault.tensor!r} "
                             f"(it has: {', '.join(layer.tensors) or 'none'})")
        codes = np.array(layer.tensors[fault.tensor], dtype=np.int64)
        if not 0 <= fault.index < codes.size:
            raise FaultError(f"fault {fault}: index {fault.index} is outside the {codes.size} codes "
                             f"of {fault.tensor!r}")
        kind = layer.types.get(fault.tensor)
        old = int(codes.flat[fault.index])
        new = old + fault.delta
        if kind is not None:
            new = min(max(new, kind.min_code), kind.max_code)
        if new == old:
            raise FaultError(f"fault {fault}: code {old} cannot move by {fault.delta:+d} inside its type {kind}")
        codes.flat[fault.index] = new
        layer.tensors[fault.tensor] = codes
    return faulty
