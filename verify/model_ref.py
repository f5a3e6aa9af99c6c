"""Resolve the model to certify: a zoo name, or a user's Keras/QKeras .h5 with its hls4ml configuration.

`resolve(spec, build_dir)` gives a `Model`: its manifest (what the emulator and the RTL generator read), the
trigger threshold code, and on demand the converted hls4ml model (what the C-simulation compiles). A zoo model's
manifest is the committed manifest.json; the conversion of its model.h5 must reproduce it, hash for hash.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from emulator.manifest import Manifest, ManifestError
from models import zoo


class ModelError(ValueError):
    """The model cannot be found, loaded or converted; the message says how to fix it."""


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for: a zoo `name`, or `keras` + `config` paths; `threshold` overrides the threshold code."""

    name: str | None = None
    keras: Path | None = None
    config: Path | None = None
    threshold: int | None = None


@dataclass
class Model:
    """A resolved model: label, manifest, threshold code (None if unknown) and where each came from."""

    spec: ModelSpec
    label: str
    manifest: Manifest
    threshold: int | None
    origin: dict
    build_dir: Path
    _hls: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def score_output(self) -> str | None:
        """The output compared against the threshold: the model's first output if it is a single value."""
        name = self.manifest.outputs[0]
        return name if self.manifest.layer(name).size == 1 else None

    def hls_model(self):
        """The hls4ml model graph, converted once (io_parallel, Latency, every layer traced) from the Keras model."""
        with self._lock:
            if self._hls is None:
                self._hls = _convert(self.keras_path, self.config_path, self.build_dir)
                if self.spec.name is not None:
                    _check_same_arithmetic(self._hls, self.manifest, self.label)
            return self._hls

    @property
    def keras_path(self) -> Path:
        return Path(self.origin["keras"])

    @property
    def config_path(self) -> Path:
        return Path(self.origin["config"])


def resolve(spec: ModelSpec, build_dir) -> Model:
    """The Model of `spec`; ModelError if it is missing, unreadable or inconsistent."""
    build_dir = Path(build_dir)
    if (spec.name is None) == (spec.keras is None):
        raise ModelError("give either --model NAME (a zoo model) or --keras PATH --config PATH (your own model)")
    if spec.name is not None:
        return _zoo_model(spec, build_dir)
    if spec.config is None:
        raise ModelError("--keras needs --config: the hls4ml configuration (JSON or YAML) with explicit precisions")
    keras_path, config_path = Path(spec.keras).resolve(), Path(spec.config).resolve()
    for path, what in ((keras_path, "Keras model"), (config_path, "hls4ml configuration")):
        if not path.is_file():
            raise ModelError(f"{what} file not found: {path}")
    hls_model = _convert(keras_path, config_path, build_dir)
    manifest = _export(hls_model, keras_path.stem)
    origin = {"kind": "keras", "keras": str(keras_path), "config": str(config_path),
              "threshold": None if spec.threshold is None else "--threshold"}
    return Model(spec, keras_path.stem, manifest, spec.threshold, origin, build_dir, hls_model)


def _zoo_model(spec: ModelSpec, build_dir: Path) -> Model:
    try:
        folder = zoo.model_dir(spec.name)
    except KeyError:
        raise ModelError(f"unknown model {spec.name!r}; the zoo has: {', '.join(zoo.NAMES)} "
                         f"(or use --keras PATH --config PATH for your own model)") from None
    files = {key: folder / file for key, file in (("keras", "model.h5"), ("config", "hls_config.json"),
                                                   ("manifest", "manifest.json"), ("metadata", "metadata.json"))}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise ModelError(f"zoo model {spec.name!r} is not built (missing {', '.join(missing)}); build it with "
                         f"`python -m models.zoo build --name {spec.name}`")
    try:
        manifest = Manifest.load(files["manifest"])
        metadata = json.loads(files["metadata"].read_text())
        expected_hash = metadata["manifest_content_hash"]
        threshold = int(metadata["threshold"]["code"])
    except (ManifestError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"zoo model {spec.name!r} has unreadable artefacts in {folder}: {exc}; rebuild it with "
                         f"`python -m models.zoo build --name {spec.name}`") from None
    if manifest.content_hash != expected_hash:
        raise ModelError(f"zoo model {spec.name!r}: manifest.json has content hash {manifest.content_hash}, "
                         f"metadata.json records {expected_hash}; rebuild it with `python -m models.zoo build`")
    origin = {"kind": "zoo", **{key: str(path) for key, path in files.items()},
              "threshold": "metadata.json" if spec.threshold is None else "--threshold"}
    return Model(spec, spec.name, manifest, threshold if spec.threshold is None else spec.threshold, origin, build_dir)


def _load_config(path: Path) -> dict:
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yml", ".yaml"):
            import yaml

            config = yaml.safe_load(text)
        else:
            config = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and yaml.YAMLError are both ValueErrors or carry the text
        raise ModelError(f"{path} is not a valid hls4ml configuration file: {exc}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path}: an hls4ml configuration is a mapping (Model, LayerName, ...), "
                         f"got {type(config).__name__}")
    return config


def _convert(keras_path: Path, config_path: Path, build_dir: Path):
    """hls4ml conversion through firmware.hls_project.convert, into a project folder keyed by the inputs' content."""
    from firmware.hls_project import CSimError, convert

    config = _load_config(config_path)
    keras_model = _load_keras(keras_path)
    digest = hashlib.sha256(keras_path.read_bytes() + json.dumps(config, sort_keys=True, default=str).encode())
    try:
        return convert(keras_model, config, build_dir / "hls" / digest.hexdigest()[:16])
    except CSimError as exc:
        raise ModelError(f"hls4ml cannot convert {keras_path}: {exc}") from None
    except Exception as exc:  # hls4ml refuses unsupported QKeras quantizers with bare Exceptions and assertions
        raise ModelError(f"hls4ml failed to convert {keras_path} with {config_path}: "
                         f"{type(exc).__name__}: {exc}") from None


def _load_keras(path: Path):
    from tensorflow import keras

    from models.architectures import custom_objects

    try:
        return keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"cannot load the Keras model {path}: {exc}") from None


def _export(hls_model, name: str) -> Manifest:
    """The manifest, with every layer planned (the emulator refuses what its exact int64 kernels cannot hold)."""
    from emulator import Emulator, UnsupportedType
    from emulator.hls4ml_export import UnsupportedLayer, export_manifest

    try:
        manifest = export_manifest(hls_model, name)
        Emulator(manifest)
    except (UnsupportedLayer, UnsupportedType, ManifestError) as exc:
        raise ModelError(f"the emulator cannot represent this model: {exc}") from None
    return manifest


def _check_same_arithmetic(hls_model, manifest: Manifest, label: str) -> None:
    exported = _export(hls_model, manifest.name)
    if exported.content_hash != manifest.content_hash:
        raise ModelError(f"zoo model {label!r}: converting model.h5 with hls_config.json gives manifest hash "
                         f"{exported.content_hash}, not the committed {manifest.content_hash} (another hls4ml version, "
                         f"or stale artefacts); rebuild it with `python -m models.zoo build --name {label}`")
