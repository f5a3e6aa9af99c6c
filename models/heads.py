"""Keras layers for the two anomaly scores computed on the FPGA: the VAE's KL divergence and the AE's MSE.

Both take two inputs and give one value per event (output shape (1,)); hls4ml converts them through
firmware.hls4ml_extensions. Load saved models with `custom_objects=CUSTOM_OBJECTS`.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow import keras


def _two_inputs(layer, inputs) -> tuple:
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        raise ValueError(f"{type(layer).__name__} {layer.name!r} takes a list of two inputs, got {inputs!r}")
    return inputs[0], inputs[1]


class KLDivergenceHead(keras.layers.Layer):
    """[z_mean, z_log_var], each (n,) -> (1,): -0.5 * mean_i(1 + log_var - mean**2 - exp(log_var))."""

    def build(self, input_shape):
        mean_shape, log_var_shape = _two_inputs(self, input_shape)
        mean_shape, log_var_shape = tf.TensorShape(mean_shape), tf.TensorShape(log_var_shape)
        if mean_shape.rank != 2 or mean_shape[1:] != log_var_shape[1:]:
            raise ValueError(
                f"KLDivergenceHead {self.name!r} needs z_mean and z_log_var of the same shape (n,), "
                f"got {mean_shape[1:]} and {log_var_shape[1:]}"
            )
        super().build(input_shape)

    def call(self, inputs):
        mean, log_var = _two_inputs(self, inputs)
        kl = 1.0 + log_var - tf.square(mean) - tf.exp(log_var)
        return -0.5 * tf.reduce_mean(kl, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([tf.TensorShape(input_shape[0])[0], 1])


class MSEHead(keras.layers.Layer):
    """[reference, reconstruction] of the same shape (any rank, flattened) -> (1,):
    mean((reconstruction - reference)**2)."""

    def build(self, input_shape):
        ref_shape, rec_shape = (tf.TensorShape(s) for s in _two_inputs(self, input_shape))
        if ref_shape[1:] != rec_shape[1:]:
            raise ValueError(
                f"MSEHead {self.name!r} needs reference and reconstruction of the same shape, "
                f"got {ref_shape[1:]} and {rec_shape[1:]}"
            )
        super().build(input_shape)

    def call(self, inputs):
        reference, reconstruction = _two_inputs(self, inputs)
        diff = tf.reshape(reconstruction - reference, (tf.shape(reference)[0], -1))
        return tf.reduce_mean(tf.square(diff), axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([tf.TensorShape(input_shape[0])[0], 1])


CUSTOM_OBJECTS = {"KLDivergenceHead": KLDivergenceHead, "MSEHead": MSEHead}
