"""Property tests of QKeras quantizers as hls4ml converts them: random small QKeras models with random layer types,
converted by hls4ml (Vivado and Vitis backends); the emulator equals hls4ml's compiled C-sim trace at every layer.

One model holds every quantizer, to keep the number of C-sim compiles low (the default run converts it once, on
the Vitis backend; make regression on both backends, several times). Its first half,
  weights   quantized_bits (alpha 1, a power-of-two alpha, 'auto_po2', 'auto'), quantized_po2, binary and ternary
            weights (ternary also in a QConv1D); quantized_relu with a negative slope, quantized_bits,
            quantized_tanh, quantized_sigmoid and quantized_tanh(use_real_tanh) activations;
feeds its second half,
  binary    a binary network: binary and ternary activations after batch normalisations (hls4ml's
            BatchNormalizationQuantizedTanh), dense layers on their ap_uint<1> / ap_int<2> outputs with binary,
            ternary and fixed-point weights; a ternary activation after a dense layer (hls4ml inserts an ApplyAlpha
            for its threshold and merges the two) and a binary tanh.
A ternary activation with threshold 0.5 that follows no batch normalisation (TernaryTanh, for which hls4ml writes
no C++) is refused by name, and so are power-of-two weights on inputs too wide for the emulator's int64 shifts and
binary weights in a convolution.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from emulator import Emulator, UnsupportedType
from emulator.hls4ml_export import UnsupportedLayer
from random_models import assert_traces_equal, convert_and_compile, fixed_types, stimulus


N_EVENTS = 3000


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


@st.composite
def quantizer_recipes(draw):
    """(sizes, layer precisions, quantizer parameters, seed). Weight and bias types come from the quantizers;
    results and accumulators are drawn (accumulators wide enough that the layers do not all saturate)."""
    t = lambda **kw: draw(fixed_types(**kw))  # noqa: E731
    sizes = [draw(st.integers(2, 6)) for _ in range(4)]
    dense = lambda: {"result": t(min_width=6, max_width=16), "accum": t(min_width=10, max_width=24)}  # noqa: E731
    precisions = {}
    for name in ("fc_bits", "fc_po2", "fc_auto_po2", "fc_alpha", "conv_ternary", "fc_binary", "fc_ternary", "fc_in",
                 "fc_both", "fc_after_ternary", "fc_data_binary", "fc_last"):
        precisions[name] = dense()
        precisions[f"{name}_linear"] = {"result": t(min_width=6, max_width=16)}  # the QDense's own activation
    # Power-of-two weights on the input: of few integer bits, so that small weights shift bits out of the product
    # type r_T (of We + Wx <= 21 fractional bits), with an accumulator and result fine enough to show them.
    x_t = t(min_width=8, max_width=16)
    precisions["x_in"] = {"result": x_t.with_(integer=min(x_t.integer, draw(st.integers(1, 3))))}
    fine = lambda: t(min_width=26, max_width=32).with_(integer=draw(st.integers(2, 5)))  # noqa: E731
    precisions["fc_po2"] = {"result": fine(), "accum": fine()}
    for name in ("bn1", "bn2", "bn3"):
        precisions[name] = {"result": t(min_width=6, max_width=14), "scale": t(min_width=6, max_width=12),
                            "bias": t(min_width=6, max_width=12)}
    parameters = dict(
        bits=draw(st.integers(3, 8)), integer=draw(st.integers(0, 2)), po2_bits=draw(st.integers(4, 5)),
        alpha=draw(st.sampled_from([0.5, 2.0, 0.25, "auto"])), slope=draw(st.sampled_from([0.25, 0.125, 0.5])),
        act_bits=draw(st.integers(3, 8)), act_integer=draw(st.integers(0, 2)),
    )
    return sizes, precisions, parameters, draw(st.integers(0, 2**31 - 1))


def random_recipes():
    """Recipes other than the all-minimal one (every type the narrowest unsigned TRN/WRAP), which hypothesis tries
    first: the default runs, with one example each, get a random one."""
    return quantizer_recipes().filter(lambda recipe: recipe[-1] != 0)


def _weights_model(inp, sizes, p):
    from qkeras import (QActivation, QConv1D, QDense, binary, quantized_bits, quantized_po2, quantized_relu,
                        quantized_tanh, ternary)
    from tensorflow.keras import layers as L

    bits = lambda alpha=1: quantized_bits(p["bits"], p["integer"], alpha=alpha)  # noqa: E731
    h = QDense(sizes[1], kernel_quantizer=quantized_po2(p["po2_bits"], 1.0), bias_quantizer=bits(), name="fc_po2")(inp)
    h = QActivation(quantized_relu(p["act_bits"], p["act_integer"], negative_slope=p["slope"]), name="q_leaky")(h)
    h = QDense(sizes[2], kernel_quantizer=bits(), bias_quantizer=bits(), name="fc_bits")(h)
    h = QDense(sizes[3], kernel_quantizer=bits("auto_po2"), bias_quantizer=bits(), name="fc_auto_po2")(h)
    h = QDense(sizes[1], kernel_quantizer=bits(p["alpha"]), bias_quantizer=bits(), name="fc_alpha")(h)
    h = QActivation(f"quantized_tanh({p['act_bits']})", name="q_tanh")(h)
    h = QActivation(quantized_bits(p["act_bits"], p["act_integer"]), name="q_bits")(h)
    h = L.Reshape((sizes[1], 1), name="to_conv")(h)
    h = QConv1D(2, 2, kernel_quantizer=ternary(alpha=1), bias_quantizer=bits(), name="conv_ternary")(h)
    h = L.Flatten(name="flat")(h)
    h = QDense(sizes[2], kernel_quantizer=binary(alpha=1), name="fc_binary")(h)
    h = QDense(sizes[3], kernel_quantizer=ternary(alpha=1), name="fc_ternary")(h)
    h = QActivation(f"quantized_sigmoid({p['act_bits']})", name="q_sigmoid")(h)
    return QActivation(quantized_tanh(p["act_bits"], use_real_tanh=True), name="q_real_tanh")(h)


def _binary_model(inp, sizes, p):
    from qkeras import QActivation, QBatchNormalization, QDense, binary, quantized_bits, ternary

    bits = lambda: quantized_bits(p["bits"], p["integer"], alpha=1)  # noqa: E731
    h = QDense(sizes[1], kernel_quantizer=bits(), bias_quantizer=bits(), name="fc_in")(inp)
    h = QBatchNormalization(name="bn1")(h)
    h = QActivation("binary", name="binary1")(h)
    h = QDense(sizes[2], kernel_quantizer=binary(alpha=1), name="fc_both")(h)
    h = QBatchNormalization(name="bn2")(h)
    h = QActivation("ternary", name="ternary1")(h)
    h = QDense(sizes[3], kernel_quantizer=bits(), bias_quantizer=bits(), name="fc_after_ternary")(h)
    h = QBatchNormalization(name="bn3")(h)
    h = QActivation("binary", name="binary2")(h)
    h = QDense(sizes[1], kernel_quantizer=bits(), bias_quantizer=bits(), name="fc_data_binary")(h)
    h = QActivation("ternary", name="ternary2")(h)
    h = QDense(sizes[2], kernel_quantizer=ternary(alpha=1), name="fc_last")(h)
    return QActivation("binary_tanh", name="binary_tanh")(h)


OPS = {"dense", "dense_exponential", "scale_exponential", "batchnorm", "leaky_relu", "hard_tanh", "hard_sigmoid",
       "conv2d", "tanh", "binary_threshold", "ternary_threshold", "dense_binary_input", "binary_tanh"}


def random_quantized_weights(rng, model):
    """Weights of every layer: normal, a third of them tiny (power-of-two weights then shift right by more bits
    than the product type keeps); batch-norm variances positive, gammas of either sign."""
    for layer in model.layers:
        new = []
        for w in layer.weights:
            values = rng.normal(0.0, 0.7, size=w.shape)
            values[rng.random(w.shape) < 0.3] *= 2.0**-10
            if "moving_variance" in w.name:
                values = rng.uniform(0.2, 3.0, size=w.shape)
            new.append(values.astype(np.float32))
        if new:
            layer.set_weights(new)


def check_quantizers(recipe, backend: str):
    """Convert the model of the recipe (the weights model, then the binary network), and compare every layer's
    C-sim trace with the emulator's."""
    import tensorflow as tf
    from tensorflow.keras import layers as L

    sizes, precisions, parameters, seed = recipe
    rng = np.random.default_rng(seed)
    inp = L.Input((sizes[0],), name="x_in")
    model = tf.keras.Model(inp, _binary_model(_weights_model(inp, sizes, parameters), sizes, parameters))
    random_quantized_weights(rng, model)
    hls_model = convert_and_compile(model, precisions, "quantizers", backend=backend, compiled=False)
    emulator = Emulator.from_hls_model(hls_model)
    assert OPS <= {layer.op for layer in emulator.manifest.layers}
    spec = emulator.manifest.input
    x = stimulus(rng, N_EVENTS, spec.shape, spec.type.lsb, max(abs(spec.type.max), spec.type.lsb * 4))
    assert_traces_equal(hls_model, emulator, x)


@given(random_recipes())
@_settings(1)
def test_every_quantizer_vitis(recipe):
    check_quantizers(recipe, "Vitis")


@pytest.mark.regression
@given(quantizer_recipes())
@_settings(5)
def test_every_quantizer_both_backends(recipe):
    for backend in ("Vivado", "Vitis"):
        check_quantizers(recipe, backend)


# ---- refusals ----------------------------------------------------------------------------------------------
def _ternary_tanh_layer():
    from qkeras import QActivation, ternary

    return (QActivation(ternary(threshold=0.5), name="squash"), UnsupportedLayer,
            r"'squash' \(TernaryTanh\): hls4ml 1.3.0 writes no C\+\+ call")


def _po2_after_wide_layer():
    from qkeras import QDense, quantized_po2

    return (QDense(3, kernel_quantizer=quantized_po2(4), name="squash"), UnsupportedType,
            r"'squash' \(dense_exponential\): the shift product type needs \d+ bits")


def _binary_conv_layer():
    from qkeras import QConv1D, binary
    from tensorflow.keras import layers as L

    conv = QConv1D(2, 2, kernel_quantizer=binary(alpha=1), name="squash")
    return ((lambda h: conv(L.Reshape((4, 1), name="to_conv")(h))), UnsupportedLayer,
            r"'squash' \(Conv1D\): hls4ml's 'weight_binary' product")


REFUSALS = {"TernaryTanh (threshold 0.5, no batch normalisation)": _ternary_tanh_layer,
            "quantized_po2 weights on an input wider than 27 bits": _po2_after_wide_layer,
            "binary weights in a QConv1D": _binary_conv_layer}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_unsupported_quantizers_are_refused_by_name(case):
    """Each quantizer follows a plain Dense layer of hls4ml's default types."""
    import hls4ml
    import tensorflow as tf
    from tensorflow.keras import layers as L

    layer, error, message = REFUSALS[case]()
    inp = L.Input((4,), name="x_in")
    model = tf.keras.Model(inp, layer(L.Dense(4, name="fc")(inp)))
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vivado")
    hls_model = hls4ml.converters.convert_from_keras_model(model, hls_config=config, io_type="io_parallel",
                                                           output_dir="build/random-models/unsupported-quantizer")
    with pytest.raises(error, match=message):
        Emulator.from_hls_model(hls_model)
