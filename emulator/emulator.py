"""`Emulator`: runs a manifest's layers on blocks of events with the numba kernels, bit for bit as the firmware."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arith import quantize, to_float
from .manifest import Manifest
from .plan import plan_layer

DEFAULT_BLOCK = 65536


class InputError(ValueError):
    """Input events the emulator cannot take (wrong shape, dtype, NaN or infinity); the message names them."""


@dataclass
class Prediction:
    """Model outputs per output name: raw codes (int64) and the same values as float64 on the output grid."""

    codes: dict
    values: dict

    @property
    def code(self) -> np.ndarray:
        """The codes of the model's only output."""
        return _only(self.codes)

    @property
    def value(self) -> np.ndarray:
        return _only(self.values)


def _only(outputs: dict) -> np.ndarray:
    if len(outputs) != 1:
        raise KeyError(f"the model has {len(outputs)} outputs ({', '.join(outputs)}); pick one by name")
    return next(iter(outputs.values()))


class Emulator:
    """Bit-exact emulation of one deployed model, built from its manifest."""

    def __init__(self, manifest: Manifest):
        manifest.validate()
        self.manifest = manifest
        self._steps = [(layer, plan_layer(layer, manifest)) for layer in manifest.layers]

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_manifest(cls, path_or_manifest) -> "Emulator":
        if isinstance(path_or_manifest, Manifest):
            return cls(path_or_manifest)
        return cls(Manifest.load(path_or_manifest))

    @classmethod
    def from_hls_model(cls, hls_model, name: str | None = None) -> "Emulator":
        """Export the hls4ml model graph to a manifest (needs hls4ml) and build the emulator from it."""
        from .hls4ml_export import export_manifest

        return cls(export_manifest(hls_model, name))

    def save_manifest(self, path) -> Path:
        return self.manifest.save(path)

    def fast(self) -> "Emulator":
        """The same model as emulator.fast.FastEmulator: generated, per-model specialised kernels, same outputs."""
        from .fast import FastEmulator

        return FastEmulator(self.manifest)

    # ---- running -----------------------------------------------------------------------------
    def quantize_inputs(self, x) -> np.ndarray:
        """Float events (N, *input shape) -> input codes (N, n_in), through the firmware's input type."""
        spec = self.manifest.input
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise InputError(f"input events must be numbers, got dtype {x.dtype}")
        x = self._check_shape(x, spec, "input events")
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            events = np.flatnonzero(bad)
            raise InputError(
                f"{events.size} event(s) contain NaN or infinity, which the firmware input type {spec.type} cannot "
                f"represent: event indices {events[:10].tolist()}{' ...' if events.size > 10 else ''}"
            )
        return quantize(x.astype(np.float64), spec.type)

    def predict(self, x, block: int = DEFAULT_BLOCK) -> Prediction:
        """Outputs for float events (quantized to the input type first)."""
        return self.predict_codes(self.quantize_inputs(x), block)

    def predict_codes(self, codes, block: int = DEFAULT_BLOCK) -> Prediction:
        """Outputs for input events given as raw codes of the input type, (N, n_in) int64."""
        traces = self._run(self._check_codes(codes), block, keep=set(self.manifest.outputs))
        out_codes = {name: traces[name] for name in self.manifest.outputs}
        values = {name: to_float(c, self.manifest.producer_type(name)) for name, c in out_codes.items()}
        return Prediction(out_codes, values)

    def trace(self, x, block: int = DEFAULT_BLOCK) -> dict:
        """{layer name: output codes (N, size)} for every layer, for float events."""
        return self.trace_codes(self.quantize_inputs(x), block)

    def trace_codes(self, codes, block: int = DEFAULT_BLOCK) -> dict:
        return self._run(self._check_codes(codes), block, keep=None)

    # ---- internals ---------------------------------------------------------------------------
    def _run(self, codes: np.ndarray, block: int, keep) -> dict:
        names = [layer.name for layer in self.manifest.layers] if keep is None else sorted(keep)
        out = {name: [] for name in names}
        for start in range(0, max(len(codes), 1), block):
            values = {self.manifest.input.name: codes[start:start + block]}
            for layer, step in self._steps:
                values[layer.name] = step([values[name] for name in layer.inputs])
            for name in names:
                out[name].append(values[name])
        return {name: np.concatenate(parts) for name, parts in out.items()}

    def _check_codes(self, codes) -> np.ndarray:
        spec = self.manifest.input
        codes = np.asarray(codes)
        if codes.dtype != np.int64:
            raise InputError(f"input codes must be int64 raw codes of {spec.type}, got dtype {codes.dtype}")
        codes = self._check_shape(codes, spec, "input codes")
        outside = (codes < spec.type.min_code) | (codes > spec.type.max_code)
        if outside.any():
            events = np.flatnonzero(outside.any(axis=1))
            raise InputError(f"input codes outside the range of {spec.type} in events {events[:10].tolist()}")
        return np.ascontiguousarray(codes)

    @staticmethod
    def _check_shape(x: np.ndarray, spec, what: str) -> np.ndarray:
        """Events of any shape (N, ...) holding the input's elements in C order, flattened to (N, size)."""
        if x.ndim >= 2 and int(np.prod(x.shape[1:])) == spec.size:
            return x.reshape(len(x), spec.size)
        shape = ", ".join(map(str, spec.shape))
        expected = f"(N, {shape})" if len(spec.shape) == 1 else f"(N, {shape}) or (N, {spec.size})"
        raise InputError(f"{what} have shape {x.shape}; expected {expected} for input {spec.name!r}")
