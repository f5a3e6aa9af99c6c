"""Train one of the paper's autoencoders on generated events, evaluate it, and print a Table-I-style summary.

    python -m models.train --model dnn_vae [--events 500000] [--epochs 30] [--qat BITS] [--no-prune] [--out DIR]

Recipe (sections III and VI): Adam, batch 1024, early stopping (patience 10) on the validation loss, masked MSE
with standardised pT, VAE loss (1 - beta) MSE + beta D_KL, 50% magnitude pruning with polynomial decay from epoch 5.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from models import metrics
from models.data.generator import SYNTHETIC_NOTE, generate, generate_range

#: Generator seeds: training/validation background, and the test split (background and signals).
TRAIN_SEED = 1
TEST_SEED = 2
DATA_SOURCE = "synthetic, built-in generator (models.data.generator)"


@dataclass
class TrainConfig:
    """Everything that determines a training run (with the data, it is reproducible)."""

    epochs: int = 100
    batch_size: int = 1024
    patience: int = 10
    learning_rate: float = 1e-3
    beta: float = 0.8
    prune: bool = True
    sparsity: float = 0.5
    prune_start_epoch: int = 5
    prune_epochs: int = 5
    bits: int | None = None
    seed: int = 0

    def pruning_steps(self, steps_per_epoch: int) -> tuple:
        begin = self.prune_start_epoch * steps_per_epoch
        return begin, begin + max(1, self.prune_epochs * steps_per_epoch)


@dataclass
class TrainResult:
    """A trained model (pruning stripped), its preprocessing, loss history and wall time."""

    model: object
    preprocessing: object
    config: TrainConfig
    history: dict = field(default_factory=dict)
    seconds: float = 0.0


# ---- data ---------------------------------------------------------------------------------------------
def training_events(n_train: int, n_val: int, seed: int = TRAIN_SEED):
    """(train, validation) background events, flat (N, 57): consecutive ranges of the `seed` stream."""
    train = generate("background", n_train, seed).reshape(n_train, -1)
    val = generate_range("background", n_train, n_train + n_val, seed).reshape(n_val, -1)
    return train, val


def test_events(n_background: int, n_signal: int, seed: int = TEST_SEED) -> dict:
    """{process: events (N, 57)} of the test split: background and the four signals, seed `seed`."""
    processes = {"background": n_background, **{name: n_signal for name in metrics.SIGNALS}}
    return {name: generate(name, n, seed).reshape(n, -1) for name, n in processes.items()}


# ---- training -------------------------------------------------------------------------------------------
def _seed_everything(seed: int):
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class TqdmEpochs(tf.keras.callbacks.Callback):
    """Keras callback drawing one tqdm bar over epochs with the latest losses."""

    def __init__(self, total: int, desc: str):
        super().__init__()
        self.total, self.desc = total, desc

    def on_train_begin(self, logs=None):
        self.bar = tqdm(total=self.total, desc=self.desc, unit="epoch")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in (logs or {}).items() if "loss" in k})
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


def copy_weights(source, target) -> None:
    """Set every layer of `target` (pruning wrappers looked through) from the same-named layer of `source`."""
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
        if inner.name in layers and inner.weights:
            inner.set_weights(layers[inner.name].get_weights())


def train(architecture: str, x_train, x_val, config: TrainConfig, progress: bool = True, init_from=None) -> TrainResult:
    """Train `architecture` on raw background events (N, 57); early stopping restores the best validation epoch.

    `init_from`: a trained model of the same architecture whose weights start the training (QAT fine-tuning of the
    pruned float model); otherwise the weights start at random.
    """
    import tensorflow_model_optimization as tfmot

    from models.architectures import Preprocessing, Pruning, Quantization, build, is_vae, strip_pruning
    from models.losses import compile_losses

    _seed_everything(config.seed)
    preprocessing = Preprocessing.fit(x_train)
    steps = int(np.ceil(len(x_train) / config.batch_size))
    pruning = None
    if config.prune:
        begin, end = config.pruning_steps(steps)
        pruning = Pruning(config.sparsity, begin, end, encoder_only=is_vae(architecture))
    quantization = Quantization(config.bits) if config.bits else None
    model = build(architecture, preprocessing, quantization, pruning)
    if init_from is not None:
        copy_weights(init_from, model)
    losses, weights = compile_losses(architecture, preprocessing, config.beta)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate), loss=losses, loss_weights=weights)

    def targets(x):
        x = x.astype(np.float32)
        return [x, np.zeros((len(x), 1), np.float32)] if is_vae(architecture) else x

    callbacks = [tf.keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True,
        start_from_epoch=config.prune_start_epoch + config.prune_epochs if config.prune else 0)]
    if config.prune:
        callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
    if progress:
        callbacks.append(TqdmEpochs(config.epochs,
                                    f"{architecture}{'' if not config.bits else f' QAT {config.bits}b'}"))
    start = time.perf_counter()
    history = model.fit(x_train.astype(np.float32), targets(x_train), validation_data=(x_val.astype(np.float32),
                        targets(x_val)), epochs=config.epochs, batch_size=config.batch_size, shuffle=True,
                        callbacks=callbacks, verbose=0)
    seconds = time.perf_counter() - start
    if config.prune:
        model = strip_pruning(model)
    return TrainResult(model, preprocessing, config,
                       {k: [float(v) for v in vals] for k, vals in history.history.items()}, seconds)


# ---- evaluation -----------------------------------------------------------------------------------------
def float_scores(deployed, events: dict, batch_size: int = 65536) -> dict:
    """{process: anomaly score (N,)} of a deployed Keras model (float arithmetic)."""
    return {name: deployed.predict(x.astype(np.float32), batch_size=batch_size, verbose=0).ravel().astype(np.float64)
            for name, x in events.items()}


def score_figures(scores: dict) -> dict:
    background = scores["background"]
    return metrics.figures(background, {name: scores[name] for name in metrics.SIGNALS})


def roc_png(scores: dict, path, title: str) -> Path:
    curves = {metrics.SIGNALS[name]: (scores["background"], scores[name]) for name in metrics.SIGNALS}
    return metrics.plot_roc(curves, path, title)


SCORE_NAMES = {"ae": "IO (MSE)", "vae": "D_KL"}


def score_name(architecture: str) -> str:
    return SCORE_NAMES[architecture.split("_")[1]]


def main(argv=None):
    from models.architectures import ARCHITECTURES, deployed_model

    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=ARCHITECTURES)
    parser.add_argument("--events", type=int, default=500_000, help="training events (validation: a fifth of this)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=0.8, help="VAE loss weight of D_KL")
    parser.add_argument("--qat", type=int, default=None, metavar="BITS", help="quantization-aware training (QKeras)")
    parser.add_argument("--no-prune", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-background", type=int, default=1_000_000)
    parser.add_argument("--test-signal", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default build/train/<model>)")
    args = parser.parse_args(argv)

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, patience=args.patience,
                         learning_rate=args.learning_rate, beta=args.beta, prune=not args.no_prune, bits=args.qat,
                         seed=args.seed)
    out = args.out or Path("build") / "train" / (args.model + (f"_qat{args.qat}" if args.qat else ""))
    out.mkdir(parents=True, exist_ok=True)
    x_train, x_val = training_events(args.events, max(args.events // 5, 1))
    result = train(args.model, x_train, x_val, config)
    deployed = deployed_model(result.model, args.model)
    scores = float_scores(deployed, test_events(args.test_background, args.test_signal))
    figures = score_figures(scores)
    label = f"{args.model}{f' QAT {args.qat} bits' if args.qat else ''}{' (pruned)' if config.prune else ''}"
    print(metrics.table([(label, score_name(args.model), figures)]))
    print(f"{SYNTHETIC_NOTE}; training {result.seconds:.0f} s, {len(result.history['loss'])} epochs")
    deployed.save(out / "model.h5", include_optimizer=False)
    roc_png(scores, out / "roc.png", f"{label}, {score_name(args.model)}")
    (out / "metrics.json").write_text(json.dumps({"data": DATA_SOURCE, "config": asdict(config),
                                                  "train_seconds": result.seconds, "history": result.history,
                                                  "figures": figures}, indent=1))
    print(f"wrote {out}/model.h5, roc.png, metrics.json")


if __name__ == "__main__":
    main()
