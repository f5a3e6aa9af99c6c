"""The paper's four autoencoders (arXiv 2108.03986, section III) as Keras models, float or QKeras-quantized.

Every model takes the raw event, flat (57,) = 19 objects x (pT, eta, phi) in C order, and starts with the frozen
BatchNormalization `input_bn` that does the preprocessing on chip (see `Preprocessing`). Training models output the
reconstruction (and, for VAEs, the per-event KL term); `deployed_model` turns a trained one into what goes on the
FPGA: the AE with an MSE head on (standardised input, reconstruction), or the VAE encoder with a KL head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow import keras

from models.data.layout import ELECTRON_ROWS, JET_ROWS, MUON_ROWS, N_FEATURES, N_OBJECTS
from models.heads import CUSTOM_OBJECTS as HEAD_OBJECTS
from models.heads import KLDivergenceHead, MSEHead

N_INPUTS = N_OBJECTS * N_FEATURES
ARCHITECTURES = ("dnn_ae", "dnn_vae", "cnn_ae", "cnn_vae")
LEAKY_ALPHA = 0.3
BN_EPSILON = 1e-3
PT_STD_FLOOR = 1.0  # GeV: rows that are almost always empty would otherwise be scaled up by 1/std >> 1

#: |eta| bound of each object row (MET has eta = 0), used to rescale eta to [-1, 1] (the loss's tanh range).
ETA_BOUND = np.ones(N_OBJECTS)
ETA_BOUND[ELECTRON_ROWS], ETA_BOUND[MUON_ROWS], ETA_BOUND[JET_ROWS] = 3.0, 2.1, 4.0


@dataclass(frozen=True)
class Preprocessing:
    """standardised = (raw - offset) * scale, per input element: pT standardised, eta / bound, phi / pi."""

    offset: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, events: np.ndarray) -> "Preprocessing":
        """pT: mean and 1/max(std, PT_STD_FLOOR) of each row over `events` (N, 19, 3); eta and phi: fixed bounds."""
        events = np.asarray(events, dtype=np.float64).reshape(-1, N_OBJECTS, N_FEATURES)
        offset = np.zeros((N_OBJECTS, N_FEATURES))
        scale = np.ones((N_OBJECTS, N_FEATURES))
        std = events[:, :, 0].std(axis=0)
        offset[:, 0] = events[:, :, 0].mean(axis=0)
        scale[:, 0] = 1.0 / np.maximum(std, PT_STD_FLOOR)
        scale[:, 1] = 1.0 / ETA_BOUND
        scale[:, 2] = 1.0 / np.pi
        return cls(offset.ravel(), scale.ravel())

    def apply(self, events) -> np.ndarray:
        return (np.asarray(events, dtype=np.float64).reshape(-1, N_INPUTS) - self.offset) * self.scale

    def to_dict(self) -> dict:
        return {"offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(np.asarray(data["offset"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64))


@dataclass(frozen=True)
class Pruning:
    """Magnitude pruning of Dense/Conv2D kernels to `sparsity`, polynomial decay over steps [begin_step, end_step]."""

    sparsity: float
    begin_step: int
    end_step: int
    encoder_only: bool = False

    def applies_to(self, name: str) -> bool:
        return not self.encoder_only or not name.startswith("dec_")

    def wrap(self, layer):
        import tensorflow_model_optimization as tfmot

        schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=self.sparsity,
                                                        begin_step=self.begin_step, end_step=self.end_step,
                                                        frequency=max(1, (self.end_step - self.begin_step) // 20))
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)


@dataclass(frozen=True)
class Quantization:
    """QAT setting: weights and biases quantized_bits(bits, 1) (range [-2, 2)), activations `bits` wide with
    `integer` bits."""

    bits: int

    @property
    def integer(self) -> int:
        return self.bits // 2

    def weight_quantizer(self):
        from qkeras.quantizers import quantized_bits

        return quantized_bits(self.bits, 1, alpha=1)

    def relu(self):
        from qkeras.quantizers import quantized_relu

        return quantized_relu(self.bits, self.integer)

    def signed(self):
        from qkeras.quantizers import quantized_bits

        return quantized_bits(self.bits, self.integer, alpha=1)


class GaussianSampling(keras.layers.Layer):
    """Training only: z = mean + exp(log_var / 2) * N(0, 1)."""

    def call(self, inputs):
        mean, log_var = inputs
        return mean + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mean))


class KLTerm(keras.layers.Layer):
    """Training only: per event D_KL = -1/2 sum_i (1 + log_var - mean**2 - exp(log_var)), shape (1,)."""

    def call(self, inputs):
        mean, log_var = inputs
        return -0.5 * tf.reduce_sum(1.0 + log_var - tf.square(mean) - tf.exp(log_var), axis=-1, keepdims=True)


CUSTOM_OBJECTS = {"GaussianSampling": GaussianSampling, "KLTerm": KLTerm, **HEAD_OBJECTS}


def custom_objects() -> dict:
    """Everything `keras.models.load_model` needs for these models (QKeras layers included)."""
    from qkeras.utils import _add_supported_quantized_objects

    objects = dict(CUSTOM_OBJECTS)
    _add_supported_quantized_objects(objects)
    return objects


# ---- layer factories ---------------------------------------------------------------------------------
class _Layers:
    """Builds named layers, float (quantization None) or QKeras, Dense/Conv2D wrapped for pruning if asked."""

    def __init__(self, quantization: Quantization | None, pruning: Pruning | None):
        self.q = quantization
        self.pruning = pruning

    def _prunable(self, layer):
        if self.pruning is None or not self.pruning.applies_to(layer.name):
            return layer
        return self.pruning.wrap(layer)

    def dense(self, units, name):
        if self.q is None:
            return self._prunable(keras.layers.Dense(units, name=name))
        from qkeras import QDense

        return self._prunable(QDense(units, kernel_quantizer=self.q.weight_quantizer(),
                                     bias_quantizer=self.q.weight_quantizer(), name=name))

    def conv(self, filters, kernel, name, use_bias=True):
        if self.q is None:
            return self._prunable(keras.layers.Conv2D(filters, kernel, use_bias=use_bias, name=name))
        from qkeras import QConv2D

        return self._prunable(QConv2D(filters, kernel, use_bias=use_bias, kernel_quantizer=self.q.weight_quantizer(),
                                      bias_quantizer=self.q.weight_quantizer() if use_bias else None, name=name))

    def leaky_relu(self, x, name):
        """LeakyReLU; under QAT followed by a signed quantized_bits QActivation `<name>_q`."""
        x = keras.layers.LeakyReLU(alpha=LEAKY_ALPHA, name=name)(x)
        if self.q is None:
            return x
        from qkeras import QActivation

        return QActivation(self.q.signed(), name=f"{name}_q")(x)

    def relu(self, x, name):
        if self.q is None:
            return keras.layers.Activation("relu", name=name)(x)
        from qkeras import QActivation

        return QActivation(self.q.relu(), name=name)(x)


def _input_bn(x, preprocessing: Preprocessing):
    bn = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="input_bn", trainable=False)
    y = bn(x)
    var = np.full(N_INPUTS, 1.0 - BN_EPSILON)
    bn.set_weights([preprocessing.scale, np.zeros(N_INPUTS), preprocessing.offset, var])
    return y


# ---- DNN ------------------------------------------------------------------------------------------------
def _dnn_encoder(x, layers: _Layers):
    for i, units in enumerate((32, 16), start=1):
        x = layers.dense(units, f"enc_dense{i}")(x)
        x = keras.layers.BatchNormalization(name=f"enc_bn{i}")(x)
        x = layers.leaky_relu(x, f"enc_act{i}")
    return x


def _dnn_decoder(z, layers: _Layers):
    x = z
    for i, units in enumerate((16, 32), start=1):
        x = layers.dense(units, f"dec_dense{i}")(x)
        x = keras.layers.BatchNormalization(name=f"dec_bn{i}")(x)
        x = layers.leaky_relu(x, f"dec_act{i}")
    return layers.dense(N_INPUTS, "dec_out")(x)


# ---- CNN ------------------------------------------------------------------------------------------------
# 'same' convolutions are written as explicit ZeroPadding2D + 'valid' Conv2D (hls4ml io_parallel, emulator pads = 0).
def _cnn_encoder(x, layers: _Layers):
    x = keras.layers.Reshape((N_OBJECTS, N_FEATURES, 1), name="enc_reshape")(x)
    x = keras.layers.ZeroPadding2D(((1, 0), (0, 0)), name="enc_pad0")(x)                  # 20x3x1
    x = layers.conv(16, (3, 3), "enc_conv1", use_bias=False)(x)                          # 18x1x16
    x = layers.relu(x, "enc_act1")
    x = keras.layers.AveragePooling2D((3, 1), name="enc_pool1")(x)                       # 6x1x16
    x = keras.layers.ZeroPadding2D(((1, 1), (0, 0)), name="enc_pad1")(x)                 # 8x1x16
    x = layers.conv(32, (3, 1), "enc_conv2", use_bias=False)(x)                          # 6x1x32
    x = layers.relu(x, "enc_act2")
    x = keras.layers.AveragePooling2D((3, 1), name="enc_pool2")(x)                       # 2x1x32
    return keras.layers.Flatten(name="enc_flatten")(x)                                   # 64


def _cnn_decoder(z, layers: _Layers):
    x = layers.dense(64, "dec_dense1")(z)
    x = layers.relu(x, "dec_act1")
    x = keras.layers.Reshape((2, 1, 32), name="dec_reshape")(x)
    x = keras.layers.ZeroPadding2D(((1, 1), (0, 0)), name="dec_pad1")(x)                 # 4x1x32
    x = layers.conv(32, (3, 1), "dec_conv1")(x)                                          # 2x1x32
    x = layers.relu(x, "dec_act2")
    x = keras.layers.UpSampling2D((3, 1), name="dec_up1")(x)                             # 6x1x32
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="dec_pad2")(x)                 # 8x3x32
    x = layers.conv(16, (3, 1), "dec_conv2")(x)                                          # 6x3x16
    x = layers.relu(x, "dec_act3")
    x = keras.layers.UpSampling2D((3, 1), name="dec_up2")(x)                             # 18x3x16
    x = keras.layers.ZeroPadding2D(((2, 1), (1, 1)), name="dec_pad3")(x)                 # 21x5x16
    x = layers.conv(1, (3, 3), "dec_conv3")(x)                                           # 19x3x1
    return keras.layers.Flatten(name="dec_out")(x)                                       # 57


_PARTS = {"dnn": (_dnn_encoder, _dnn_decoder, 3), "cnn": (_cnn_encoder, _cnn_decoder, 8)}


def build(architecture: str, preprocessing: Preprocessing, quantization: Quantization | None = None,
          pruning: Pruning | None = None) -> keras.Model:
    """The training model: AEs output the reconstruction (57,); VAEs [reconstruction, per-event KL term].

    With `pruning`, Dense/Conv2D layers are tfmot pruning wrappers; `strip_pruning` removes them after training.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    family, kind = architecture.split("_")
    encoder, decoder, latent = _PARTS[family]
    layers = _Layers(quantization, pruning)
    events = keras.Input(shape=(N_INPUTS,), name="events")
    h = encoder(_input_bn(events, preprocessing), layers)
    if kind == "ae":
        reconstruction = decoder(layers.dense(latent, "latent")(h), layers)
        return keras.Model(events, reconstruction, name=architecture)
    mean = layers.dense(latent, "z_mean")(h)
    log_var = layers.dense(latent, "z_log_var")(h)
    reconstruction = decoder(GaussianSampling(name="sampling")([mean, log_var]), layers)
    kl = KLTerm(name="kl_term")([mean, log_var])
    return keras.Model(events, [reconstruction, kl], name=architecture)


def strip_pruning(model: keras.Model) -> keras.Model:
    """The model with pruning wrappers replaced by the (masked) layers they wrap; other layers kept as they are."""
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.strip_pruning(model)


def sparsity(model: keras.Model) -> dict:
    """{layer name: fraction of zero kernel weights} of every Dense/Conv2D layer."""
    return {layer.name: float(np.mean(layer.get_weights()[0] == 0.0)) for layer in model.layers
            if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))}


def is_vae(architecture: str) -> bool:
    return architecture.endswith("_vae")


def deployed_model(model: keras.Model, architecture: str) -> keras.Model:
    """The firmware model of a trained (pruning-stripped) training model, its output the anomaly score (1,)."""
    def output(name):  # the newest node: after strip_pruning's clone, layers also hold the wrapped model's nodes
        return model.get_layer(name).get_output_at(-1)

    if is_vae(architecture):
        score = KLDivergenceHead(name="kl_score")([output("z_mean"), output("z_log_var")])
    else:
        score = MSEHead(name="mse_score")([output("input_bn"), output("dec_out")])
    graph = keras.Model(model.input, score, name=f"{architecture}_deployed")
    deployed = keras.models.clone_model(graph)  # fresh layers with one node each, so `layer.output` is unambiguous
    deployed.set_weights(graph.get_weights())
    return deployed

