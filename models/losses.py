"""Training losses (arXiv 2108.03986, sections III and VI): masked reconstruction MSE and the VAE's KL term.

The reconstruction target is the standardised input (`Preprocessing`): pT standardised, eta / bound, phi / pi.
The decoder's pT outputs are compared as they are, its eta and phi outputs through tanh (the rescaled tanh of the
paper, in standardised units), and input entries that are exactly zero (missing objects, MET eta) are ignored.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.architectures import N_INPUTS, Preprocessing
from models.data.layout import N_FEATURES


def reconstruction_loss(preprocessing: Preprocessing):
    """loss(raw events (N, 57), decoder output (N, 57)) -> per-event masked MSE (N,), mean over the 57 entries."""
    offset = tf.constant(preprocessing.offset, tf.float32)
    scale = tf.constant(preprocessing.scale, tf.float32)
    is_pt = tf.constant(np.arange(N_INPUTS) % N_FEATURES == 0)

    def masked_mse(raw, output):
        raw = tf.cast(tf.reshape(raw, (-1, N_INPUTS)), tf.float32)
        output = tf.cast(tf.reshape(output, (-1, N_INPUTS)), tf.float32)
        target = (raw - offset) * scale
        prediction = tf.where(is_pt, output, tf.tanh(output))
        mask = tf.cast(tf.not_equal(raw, 0.0), tf.float32)
        return tf.reduce_mean(mask * tf.square(target - prediction), axis=-1)

    return masked_mse


def kl_loss(_, kl_term):
    """The per-event KL term computed by the model's KLTerm layer, as a loss (its target is ignored)."""
    return tf.reshape(kl_term, (-1,))


def compile_losses(architecture: str, preprocessing: Preprocessing, beta: float):
    """(losses, loss_weights) for `model.compile`: AE masked MSE; VAE (1 - beta) * MSE + beta * D_KL."""
    mse = reconstruction_loss(preprocessing)
    if architecture.endswith("_vae"):
        return [mse, kl_loss], [1.0 - beta, beta]
    return mse, None
