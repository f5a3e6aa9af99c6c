"""The deployed model zoo: the paper's four chosen models (Tables II and III), trained, quantized and thresholded.

Each `models/zoo/<name>/` holds model.h5 (the deployed Keras/QKeras model with its score head), hls_config.json
(every precision explicit), manifest.json (emulator.hls4ml_export of the converted hls4ml graph), metadata.json
(threshold code, manifest content hash, seeds, training record) and metrics.json. Built by `python -m models.zoo build`.
"""

from __future__ import annotations

import json
from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent
NAMES = ("dnn_ae_qat8", "dnn_vae_ptq8", "cnn_ae_qat4", "cnn_vae_ptq8")


def model_dir(name: str) -> Path:
    if name not in NAMES:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(NAMES)}")
    return ZOO_DIR / name


def manifest_path(name: str) -> Path:
    return model_dir(name) / "manifest.json"


def metadata(name: str) -> dict:
    """The zoo model's metadata.json (threshold, content hash, seeds, training record)."""
    return json.loads((model_dir(name) / "metadata.json").read_text())
