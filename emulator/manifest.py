"""The manifest: the one serialisable description of a deployed model (layers, fixed-point types, integer weights).

It is exported from the hls4ml model graph after hls4ml's optimizer passes and read by the emulator, the RTL
generator and the testbench. Loading it needs neither TensorFlow nor hls4ml.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fixed_type import FixedType

SCHEMA = "l1ad-manifest"
VERSION = 1

#: Operations a manifest may contain, with the type names and integer tensors each one carries.
#: Shapes are channels-last; data is flattened in C order, as hls4ml's io_parallel arrays are.
OPS = {
    "dense": dict(types=("weight", "bias", "accum"), tensors=("weight", "bias")),
    "conv2d": dict(types=("weight", "bias", "accum"), tensors=("weight", "bias")),
    "batchnorm": dict(types=("scale", "bias"), tensors=("scale", "bias")),
    "relu": dict(types=(), tensors=()),
    "leaky_relu": dict(types=("param",), tensors=()),
    "linear": dict(types=(), tensors=()),
    "reshape": dict(types=(), tensors=()),
    "zeropad2d": dict(types=(), tensors=()),
    "avgpool2d": dict(types=("accum",), tensors=()),
    "upsampling2d": dict(types=(), tensors=()),
    "kl_divergence": dict(types=("accum", "exp_table"), tensors=("exp_table",)),
    "mse": dict(types=("diff", "square", "accum"), tensors=()),
}


def register_op(op: str, types=(), tensors=()) -> None:
    """Declare a manifest op with the type names and integer tensors its layers carry (for layer families
    defined in their own modules, see emulator.layers)."""
    if op in OPS and OPS[op] != dict(types=tuple(types), tensors=tuple(tensors)):
        raise ValueError(f"manifest op {op!r} is already registered with other fields")
    OPS[op] = dict(types=tuple(types), tensors=tuple(tensors))


class ManifestError(ValueError):
    """A manifest that cannot be read or does not follow the schema; the message says where."""


@dataclass
class Tensor:
    """The input of a model: a named, shaped array of one fixed-point type."""

    name: str
    shape: tuple
    type: FixedType

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Layer:
    """One operation of the graph: `op` applied to the outputs named in `inputs`, cast to `result`."""

    name: str
    op: str
    inputs: list
    shape: tuple
    result: FixedType
    types: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Manifest:
    """A model graph in topological order, with its inputs, outputs and provenance."""

    name: str
    inputs: list
    layers: list
    outputs: list
    meta: dict = field(default_factory=dict)

    # ---- queries -----------------------------------------------------------------------------
    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"manifest {self.name!r} has no layer {name!r}")

    def producer_type(self, name: str) -> FixedType:
        """The fixed-point type of the tensor called `name` (a model input or a layer's output)."""
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor.type
        return self.layer(name).result

    def producer_shape(self, name: str) -> tuple:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor.shape
        return self.layer(name).shape

    @property
    def input(self) -> Tensor:
        if len(self.inputs) != 1:
            raise ManifestError(f"model {self.name!r} has {len(self.inputs)} inputs, not one")
        return self.inputs[0]

    # ---- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "name": self.name,
            "meta": self.meta,
            "inputs": [{"name": t.name, "shape": list(t.shape), "type": str(t.type)} for t in self.inputs],
            "outputs": list(self.outputs),
            "layers": [_layer_to_dict(layer) for layer in self.layers],
        }

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")
        return path

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of everything that determines the arithmetic (meta excluded)."""
        body = self.to_dict()
        body.pop("meta")
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        if data.get("schema") != SCHEMA:
            raise ManifestError(f"not a {SCHEMA} file (schema field is {data.get('schema')!r})")
        if data.get("version") != VERSION:
            raise ManifestError(f"manifest version {data.get('version')!r} is not supported "
                                f"(this tool reads {VERSION})")
        try:
            inputs = [Tensor(t["name"], tuple(t["shape"]), FixedType.parse(t["type"])) for t in data["inputs"]]
            layers = [_layer_from_dict(d) for d in data["layers"]]
            manifest = cls(data["name"], inputs, layers, list(data["outputs"]), dict(data.get("meta", {})))
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"manifest is missing or has a malformed field: {exc}") from exc
        manifest.validate()
        return manifest

    @classmethod
    def load(cls, path) -> "Manifest":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"manifest file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def validate(self) -> None:
        """Check the graph is in topological order and every op carries the types and tensors it needs."""
        known = {t.name for t in self.inputs}
        for layer in self.layers:
            if layer.op not in OPS:
                raise ManifestError(f"layer {layer.name!r}: unknown op {layer.op!r}")
            for src in layer.inputs:
                if src not in known:
                    raise ManifestError(f"layer {layer.name!r} reads {src!r}, which is not produced before it")
            spec = OPS[layer.op]
            missing = [t for t in spec["types"] if t not in layer.types]
            missing += [t for t in spec["tensors"] if t not in layer.tensors]
            if missing:
                raise ManifestError(f"layer {layer.name!r} ({layer.op}) lacks {', '.join(missing)}")
            known.add(layer.name)
        for out in self.outputs:
            if out not in known:
                raise ManifestError(f"output {out!r} is not produced by any layer")


def _layer_to_dict(layer: Layer) -> dict:
    return {
        "name": layer.name,
        "op": layer.op,
        "inputs": list(layer.inputs),
        "shape": list(layer.shape),
        "result": str(layer.result),
        "types": {k: str(v) for k, v in layer.types.items()},
        "params": layer.params,
        "tensors": {k: {"shape": list(v.shape), "codes": np.asarray(v).ravel().tolist()}
                    for k, v in layer.tensors.items()},
    }


def _layer_from_dict(d: dict) -> Layer:
    tensors = {k: np.asarray(v["codes"], dtype=np.int64).reshape(v["shape"]) for k, v in d.get("tensors", {}).items()}
    return Layer(
        name=d["name"],
        op=d["op"],
        inputs=list(d["inputs"]),
        shape=tuple(d["shape"]),
        result=FixedType.parse(d["result"]),
        types={k: FixedType.parse(v) for k, v in d.get("types", {}).items()},
        params=dict(d.get("params", {})),
        tensors=tensors,
    )
