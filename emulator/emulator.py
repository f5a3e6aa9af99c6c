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
    # A model with one input takes events as one array. A model with several takes a list or tuple of arrays in
    # the manifest's input order, or a dict {input name: array}; each input is checked on its own, and every input
    # must hold the same number of events. Codes come back in the same form: an array, or a dict by input name.
    def quantize_inputs(self, x):
        """Float events (N, *input shape) -> input codes (N, n_in), through the firmware's input type (one
        array per input, as a dict by input name, for a model with several inputs)."""
        codes = {spec.name: quantize_events(events, spec, of=self._of(spec))
                 for spec, events in self._per_input(x, "input events")}
        return self._as_given(codes)

    def predict(self, x, block: int = DEFAULT_BLOCK) -> Prediction:
        """Outputs for float events (quantized to the input type first)."""
        return self.predict_codes(self.quantize_inputs(x), block)

    def predict_codes(self, codes, block: int = DEFAULT_BLOCK) -> Prediction:
        """Outputs for input events given as raw codes of the input type, (N, n_in) int64 per input."""
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
    def _run(self, codes, block: int, keep) -> dict:
        """Run every layer on checked codes (an array, or a dict by input name) in blocks of events."""
        inputs = codes if isinstance(codes, dict) else {self.manifest.inputs[0].name: codes}
        n_events = len(next(iter(inputs.values())))
        names = [layer.name for layer in self.manifest.layers] if keep is None else sorted(keep)
        out = {name: [] for name in names}
        for start in range(0, max(n_events, 1), block):
            values = {name: c[start:start + block] for name, c in inputs.items()}
            for layer, step in self._steps:
                values[layer.name] = step([values[name] for name in layer.inputs])
            for name in names:
                out[name].append(values[name])
        return {name: np.concatenate(parts) for name, parts in out.items()}

    def _check_codes(self, codes):
        """Raw input codes checked against each input's shape and type: an array, or a dict by input name."""
        return self._as_given({spec.name: self._checked_input_codes(c, spec)
                               for spec, c in self._per_input(codes, "input codes")})

    def _per_input(self, x, what: str) -> list:
        """[(input Tensor, its events)] from one array (one input), a list/tuple in input order, or a dict by name."""
        specs = self.manifest.inputs
        names = [spec.name for spec in specs]
        if isinstance(x, dict):
            if sorted(x) != sorted(names):
                raise InputError(f"{what} are given for inputs {sorted(x)}; the model's inputs are {names}")
            arrays = [x[name] for name in names]
        elif len(specs) == 1:
            arrays = [x]
        elif isinstance(x, (list, tuple)) and len(x) == len(specs):
            arrays = list(x)
        else:
            raise InputError(f"the model has {len(specs)} inputs ({', '.join(names)}): give {what} as a list of "
                             f"{len(specs)} arrays in that order, or a dict by input name")
        counts = {name: len(np.asarray(a)) if np.ndim(a) else 0 for name, a in zip(names, arrays)}
        if len(set(counts.values())) > 1:
            raise InputError(f"the inputs hold different numbers of events: "
                             f"{', '.join(f'{name}: {n}' for name, n in counts.items())}")
        return list(zip(specs, arrays))

    def _as_given(self, per_name: dict):
        """An array for a one-input model, else the dict by input name."""
        return next(iter(per_name.values())) if len(self.manifest.inputs) == 1 else per_name

    def _checked_input_codes(self, codes, spec) -> np.ndarray:
        codes = np.asarray(codes)
        of = self._of(spec)
        if codes.dtype != np.int64:
            raise InputError(f"input codes{of} must be int64 raw codes of {spec.type}, got dtype {codes.dtype}")
        codes = check_event_shape(codes, spec, f"input codes{of}")
        outside = (codes < spec.type.min_code) | (codes > spec.type.max_code)
        if outside.any():
            events = np.flatnonzero(outside.any(axis=1))
            raise InputError(f"input codes{of} outside the range of {spec.type} in events {events[:10].tolist()}")
        return np.ascontiguousarray(codes)

    def _of(self, spec) -> str:
        """' of input NAME' where the model has several inputs, else nothing."""
        return f" of input {spec.name!r}" if len(self.manifest.inputs) > 1 else ""



def quantize_events(x, spec, first: int = 0, of: str = "") -> np.ndarray:
    """Float events (N, ...) of input `spec` -> (N, size) codes of its type, with its rounding and overflow;
    InputError for values that are not numbers, a wrong shape, or NaN/infinity (naming the events, numbered from
    `first`; `of` names the input in messages)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise InputError(f"input events{of} must be numbers, got dtype {x.dtype}")
    x = check_event_shape(x, spec, f"input events{of}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        listed = ", ".join(str(first + int(i)) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise InputError(f"{bad.size} event(s){of} contain NaN or infinity, which the firmware input type "
                         f"{spec.type} cannot represent: events {listed}")
    return quantize(x.astype(np.float64), spec.type)


def check_event_shape(x: np.ndarray, spec, what: str) -> np.ndarray:
    """Events of any shape (N, ...) holding the input's elements in C order, flattened to (N, size)."""
    if x.ndim >= 2 and int(np.prod(x.shape[1:])) == spec.size:
        return x.reshape(len(x), spec.size)
    shape = ", ".join(map(str, spec.shape))
    expected = f"(N, {shape})" if len(spec.shape) == 1 else f"(N, {shape}) or (N, {spec.size})"
    raise InputError(f"{what} have shape {x.shape}; expected {expected} for input {spec.name!r}")
