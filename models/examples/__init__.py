"""Example user models for `verify --keras PATH --config PATH`: three small QKeras models of different layer mixes.

Each `models/examples/<name>/` holds model.h5 (the Keras/QKeras model) and hls_config.json (hls4ml's configuration
with every precision explicit), made by `python -m models.examples build` (models.examples.build).
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
NAMES = ("dense_tagger", "cnn_maxpool", "two_branch")


def example_files(name: str) -> tuple:
    """(model.h5, hls_config.json) of example `name`."""
    if name not in NAMES:
        raise KeyError(f"unknown example model {name!r}; known: {', '.join(NAMES)}")
    folder = EXAMPLES_DIR / name
    return folder / "model.h5", folder / "hls_config.json"
