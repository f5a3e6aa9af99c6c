"""Build the example user models: small QKeras models trained briefly on generator events, with explicit precisions.

    python -m models.examples build [--name dense_tagger ...] [--out DIR]

  dense_tagger  57 -> BatchNorm -> QDense 32 -> quantized_relu -> QDense 16 -> quantized_relu -> QDense 5 ->
                softmax: which of the five processes (background and the four signals) made the event
  cnn_maxpool   (19, 3, 1) -> BatchNorm -> QConv2D 4 (3x3, same) -> quantized_relu -> MaxPooling2D (2, 1) ->
                QConv2D 8 (3x3) -> quantized_relu -> Flatten -> QDense 8 -> quantized_relu -> QDense 1: a signal logit
  two_branch    57 -> BatchNorm -> QDense 16 -> quantized_relu, feeding two branches, QDense 8 -> quantized_relu
                and QDense 8 (ternary weights) -> quantized_tanh, added (Add) -> QDense 1: a signal logit
Seeded (generator seed TRAIN_SEED, TensorFlow seed 0, op determinism); each trains for a few epochs in seconds.
hls_config.json is hls4ml's configuration of the model with every "auto" precision replaced by an explicit type.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from models.data import PROCESSES, generate
from models.examples import EXAMPLES_DIR, NAMES

TRAIN_SEED = 11
EVENTS_PER_PROCESS = 6000
EPOCHS = 4

INPUT = {"result": "fixed<18,12,RND_CONV,SAT>"}
NORM = {"result": "fixed<16,6,RND_CONV,SAT>", "scale": "fixed<18,2,RND_CONV,SAT>", "bias": "fixed<18,6,RND_CONV,SAT>"}
HIDDEN = {"result": "fixed<16,7,RND_CONV,SAT>", "accum": "fixed<24,10>"}
SCORE = {"result": "fixed<18,8,RND_CONV,SAT>", "accum": "fixed<24,10>"}


def _bits(bits: int = 6, integer: int = 0, alpha=1):
    from qkeras import quantized_bits

    return quantized_bits(bits, integer, alpha=alpha)


def dense_tagger():
    """(model, explicit precisions by layer name)."""
    from qkeras import QActivation, QDense
    from tensorflow import keras

    events = keras.layers.Input((57,), name="events")
    h = keras.layers.BatchNormalization(name="norm")(events)
    for k, width in enumerate((32, 16), start=1):
        h = QDense(width, kernel_quantizer=_bits(), bias_quantizer=_bits(), name=f"fc{k}")(h)
        h = QActivation("quantized_relu(8, 3)", name=f"relu{k}")(h)
    h = QDense(len(PROCESSES), kernel_quantizer=_bits(8, 1), bias_quantizer=_bits(8, 1), name="logits")(h)
    probabilities = keras.layers.Activation("softmax", name="softmax")(h)
    precisions = {"events": INPUT, "norm": NORM, "fc1": HIDDEN, "fc2": HIDDEN, "logits": SCORE,
                  "softmax": {"result": "ufixed<16,1,RND_CONV,SAT>"}}
    return keras.Model(events, probabilities), precisions


def cnn_maxpool():
    from qkeras import QActivation, QConv2D, QDense
    from tensorflow import keras

    events = keras.layers.Input((19, 3, 1), name="events")
    h = keras.layers.BatchNormalization(name="norm")(events)
    h = QConv2D(4, (3, 3), padding="same", kernel_quantizer=_bits(), bias_quantizer=_bits(), name="conv1")(h)
    h = QActivation("quantized_relu(8, 3)", name="relu1")(h)
    h = keras.layers.MaxPooling2D((2, 1), name="pool")(h)
    h = QConv2D(8, (3, 3), kernel_quantizer=_bits(), bias_quantizer=_bits(), name="conv2")(h)
    h = QActivation("quantized_relu(8, 3)", name="relu2")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = QDense(8, kernel_quantizer=_bits(), bias_quantizer=_bits(), name="fc")(h)
    h = QActivation("quantized_relu(8, 3)", name="relu3")(h)
    score = QDense(1, kernel_quantizer=_bits(8, 1), bias_quantizer=_bits(8, 1), name="score")(h)
    pooled = {"result": "ufixed<8,3,RND_CONV,SAT>", "accum": "fixed<12,5>"}
    precisions = {"events": INPUT, "norm": NORM, "conv1": HIDDEN, "pool": pooled, "conv2": HIDDEN,
                  "flatten": {"result": "ufixed<8,3,RND_CONV,SAT>"}, "fc": HIDDEN, "score": SCORE}
    return keras.Model(events, score), precisions


def two_branch():
    from qkeras import QActivation, QDense, ternary
    from tensorflow import keras

    events = keras.layers.Input((57,), name="events")
    h = keras.layers.BatchNormalization(name="norm")(events)
    h = QDense(16, kernel_quantizer=_bits(), bias_quantizer=_bits(), name="fc")(h)
    h = QActivation("quantized_relu(8, 3)", name="relu")(h)
    a = QDense(8, kernel_quantizer=_bits(), bias_quantizer=_bits(), name="branch_a")(h)
    a = QActivation("quantized_relu(8, 3)", name="relu_a")(a)
    b = QDense(8, kernel_quantizer=ternary(alpha=1), bias_quantizer=_bits(), name="branch_b")(h)
    b = QActivation("quantized_tanh(8)", name="tanh_b")(b)
    merged = keras.layers.Add(name="add")([a, b])
    score = QDense(1, kernel_quantizer=_bits(8, 1), bias_quantizer=_bits(8, 1), name="score")(merged)
    precisions = {"events": INPUT, "norm": NORM, "fc": HIDDEN, "branch_a": HIDDEN, "branch_b": HIDDEN,
                  "tanh_b": {"slope": "ufixed<2,0>", "shift": "ufixed<2,0>"},
                  "add": {"result": "fixed<12,4,RND_CONV,SAT>"}, "score": SCORE}
    return keras.Model(events, score), precisions


ARCHITECTURES = {"dense_tagger": dense_tagger, "cnn_maxpool": cnn_maxpool, "two_branch": two_branch}


def training_data():
    """(events (N, 19, 3), process labels 0..4): EVENTS_PER_PROCESS of each process, shuffled."""
    events = np.concatenate([generate(p, EVENTS_PER_PROCESS, TRAIN_SEED) for p in PROCESSES])
    labels = np.repeat(np.arange(len(PROCESSES)), EVENTS_PER_PROCESS)
    order = np.random.default_rng(TRAIN_SEED).permutation(len(labels))
    return events[order], labels[order]


def train(model, events, labels):
    """A few epochs: the tagger learns the process, the others signal (any of the four) against background."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    tagger = model.output_shape[-1] > 1
    loss = (tf.keras.losses.SparseCategoricalCrossentropy() if tagger
            else tf.keras.losses.BinaryCrossentropy(from_logits=True))
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss=loss)
    targets = labels if tagger else (labels > 0).astype(np.float32)
    x = events.reshape((len(events), *model.input_shape[1:]))
    history = model.fit(x, targets, batch_size=256, epochs=EPOCHS, validation_split=0.2, verbose=0)
    return history.history


def explicit_config(model, precisions: dict) -> dict:
    """hls4ml's configuration of `model` (by layer name) with `precisions` set; a QDense's or QConv's own linear
    activation (<name>_linear) gets its result type. Raises ValueError if an "auto" type is left."""
    import hls4ml

    config = hls4ml.utils.config_from_keras_model(model, granularity="name", default_precision="fixed<16,6>")
    config["Model"]["Strategy"] = "Latency"
    for name, layer in config["LayerName"].items():
        owner = name.removesuffix("_linear")
        given = precisions.get(name) or ({"result": precisions[owner]["result"]} if owner in precisions else {})
        layer["Precision"].update(given)
        left = [role for role, t in layer["Precision"].items() if t == "auto"]
        if left:
            raise ValueError(f"layer {name!r}: no explicit {', '.join(left)} type")
    return config


def build_one(name: str, out: Path, data) -> dict:
    model, precisions = ARCHITECTURES[name]()
    history = train(model, *data)
    config = explicit_config(model, precisions)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.h5", include_optimizer=False)
    (out / "hls_config.json").write_text(json.dumps(config, indent=1, default=str) + "\n")
    return {key: round(float(values[-1]), 4) for key, values in history.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m models.examples", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="train the example models and write their model.h5 and hls_config.json")
    build.add_argument("--name", nargs="+", choices=NAMES, default=list(NAMES))
    build.add_argument("--out", type=Path, default=EXAMPLES_DIR, help="parent folder of the model folders")
    args = parser.parse_args(argv)
    data = training_data()
    for name in args.name:
        start = time.perf_counter()
        losses = build_one(name, args.out / name, data)
        print(f"{name}: {losses} ({time.perf_counter() - start:.0f} s) -> {args.out / name}", file=sys.stderr)
