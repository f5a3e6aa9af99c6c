"""A tiny training run: losses fall, pruning reaches its sparsity, and the seeded run is reproducible."""

import numpy as np
import pytest

from models.architectures import deployed_model, sparsity
from models.train import TrainConfig, float_scores, train, training_events


@pytest.fixture(scope="module")
def events():
    return training_events(3072, 1024)


@pytest.mark.parametrize("architecture,bits", [("dnn_ae", None), ("dnn_vae", None), ("dnn_ae", 6), ("cnn_vae", None)])
def test_one_epoch_with_pruning(architecture, bits, events):
    x_train, x_val = events
    config = TrainConfig(epochs=1, prune_start_epoch=0, prune_epochs=1, bits=bits, batch_size=256)
    result = train(architecture, x_train, x_val, config, progress=False)
    assert len(result.history["loss"]) == 1 and np.isfinite(result.history["val_loss"][0])
    kernels = sparsity(result.model)
    encoder = {k: v for k, v in kernels.items() if not k.startswith("dec_")}
    assert encoder and all(v == pytest.approx(0.5, abs=0.02) for v in encoder.values())
    decoder = [v for k, v in kernels.items() if k.startswith("dec_")]
    assert all(v < 0.1 for v in decoder) if architecture.endswith("_vae") else all(v > 0.45 for v in decoder)
    scores = float_scores(deployed_model(result.model, architecture), {"background": x_val[:100]})["background"]
    assert scores.shape == (100,) and np.isfinite(scores).all()


def test_seeded_training_is_reproducible(events):
    x_train, x_val = events
    config = TrainConfig(epochs=1, prune=False, batch_size=512, seed=3)
    first, second = (train("dnn_ae", x_train, x_val, config, progress=False) for _ in range(2))
    for a, b in zip(first.model.get_weights(), second.model.get_weights()):
        np.testing.assert_array_equal(a, b)
