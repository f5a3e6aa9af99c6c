"""The reconstruction loss ignores zero-padded entries, compares eta and phi through tanh; the VAE loss weights."""

import numpy as np
import pytest

from models.architectures import Preprocessing
from models.data.generator import generate
from models.losses import compile_losses, reconstruction_loss


@pytest.fixture(scope="module")
def setup():
    events = generate("background", 2048, 11).reshape(2048, -1)
    preprocessing = Preprocessing.fit(events)
    return events[:64], preprocessing, reconstruction_loss(preprocessing)


def _perfect_output(events, preprocessing):
    """Decoder outputs that reproduce the target exactly: pT standardised, eta and phi as atanh of the target."""
    target = preprocessing.apply(events)
    out = target.copy()
    angles = np.arange(57) % 3 != 0
    out[:, angles] = np.arctanh(np.clip(target[:, angles], -0.999999, 0.999999))
    return out


def test_zero_padded_entries_are_ignored(setup):
    events, preprocessing, loss = setup
    out = _perfect_output(events, preprocessing)
    padded = events == 0
    assert padded.any() and (~padded).any()
    garbage = np.where(padded, 1e3, out)
    assert np.asarray(loss(events, garbage)).max() == pytest.approx(np.asarray(loss(events, out)).max(), abs=1e-6)
    assert np.asarray(loss(events, out)).max() < 1e-6


def test_filled_entries_count(setup):
    events, preprocessing, loss = setup
    out = _perfect_output(events, preprocessing)
    row = int(np.flatnonzero(events[:, 0] != 0)[0])  # MET pT, always filled
    out[row, 0] += 1.0
    values = np.asarray(loss(events, out))
    assert values[row] == pytest.approx(1.0 / 57, rel=1e-5)


def test_eta_and_phi_go_through_tanh(setup):
    events, preprocessing, loss = setup
    out = _perfect_output(events, preprocessing)
    filled_phi = np.flatnonzero(events[:, 2] != 0)[0]  # MET phi
    out[filled_phi, 2] = 50.0  # tanh saturates at 1: the loss is bounded by (1 + |target|)^2 / 57
    assert np.asarray(loss(events, out))[filled_phi] <= 4.0 / 57


def test_vae_loss_weights():
    preprocessing = Preprocessing.fit(generate("background", 512, 3))
    losses, weights = compile_losses("dnn_vae", preprocessing, 0.8)
    assert len(losses) == 2 and weights == pytest.approx([0.2, 0.8])
    loss, weights = compile_losses("dnn_ae", preprocessing, 0.8)
    assert weights is None and callable(loss)
