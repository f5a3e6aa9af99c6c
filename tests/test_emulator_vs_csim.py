"""Property tests: random models with random precisions; emulator and hls4ml's compiled C-sim agree at every layer."""

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from emulator import Emulator
from random_models import assert_traces_equal, convert_and_compile, fixed_types, random_weights, stimulus

SETTINGS = settings(max_examples=3, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
N_EVENTS = 2000


@st.composite
def dense_recipes(draw):
    t = lambda **kw: draw(fixed_types(**kw))  # noqa: E731
    sizes = [draw(st.integers(2, 10)) for _ in range(4)]
    acc = lambda: t(min_width=8, max_width=26)  # noqa: E731
    precisions = {
        "x_in": {"result": t(min_width=6, max_width=16)},
        "bn": {"scale": t(), "bias": t(), "result": t()},
        "fc1": {"weight": t(max_width=10), "bias": t(max_width=12), "accum": acc(), "result": t()},
        "lrelu": {"param": t(min_width=4, max_width=12), "result": t()},
        "fc2": {"weight": t(max_width=10), "bias": t(max_width=12), "accum": acc(), "result": t()},
        "relu": {"result": t()},
        "fc3": {"weight": t(max_width=10), "bias": t(max_width=12), "accum": acc(), "result": t()},
    }
    alpha = draw(st.sampled_from([0.3, 0.1, 0.01, 0.75]))
    return sizes, precisions, alpha, draw(st.integers(0, 2**31 - 1))


@given(dense_recipes())
@SETTINGS
def test_dense_batchnorm_activations(recipe):
    import tensorflow as tf
    from tensorflow.keras import layers as L

    sizes, precisions, alpha, seed = recipe
    rng = np.random.default_rng(seed)
    inp = L.Input((sizes[0],), name="x_in")
    h = L.BatchNormalization(name="bn")(inp)
    h = L.Dense(sizes[1], name="fc1")(h)
    h = L.LeakyReLU(alpha, name="lrelu")(h)
    h = L.Dense(sizes[2], name="fc2")(h)
    h = L.ReLU(name="relu")(h)
    out = L.Dense(sizes[3], name="fc3")(h)
    model = tf.keras.Model(inp, out)
    random_weights(rng, model)
    hls_model = convert_and_compile(model, precisions, "dense")
    emulator = Emulator.from_hls_model(hls_model)
    in_t = precisions["x_in"]["result"]
    x = stimulus(rng, N_EVENTS, (sizes[0],), in_t.lsb, max(abs(in_t.max), in_t.lsb * 4))
    assert_traces_equal(hls_model, emulator, x)


@st.composite
def cnn_recipes(draw):
    t = lambda **kw: draw(fixed_types(**kw))  # noqa: E731
    acc = lambda: t(min_width=8, max_width=26)  # noqa: E731
    geometry = dict(
        height=draw(st.integers(3, 7)), width=draw(st.integers(2, 4)), chan=draw(st.integers(1, 2)),
        pad=(draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1))),
        filters=draw(st.integers(1, 4)), kernel=(draw(st.integers(1, 3)), draw(st.integers(1, 2))),
        bias=draw(st.booleans()), pool=(draw(st.integers(1, 2)), 1),
        up=(draw(st.integers(1, 3)), draw(st.integers(1, 2))),
        dense=draw(st.integers(1, 5)),
    )
    precisions = {
        "x_in": {"result": t(min_width=6, max_width=16)},
        "pad": {"result": t()},
        "conv1": {"weight": t(max_width=10), "bias": t(max_width=12), "accum": acc(), "result": t()},
        "relu": {"result": t()},
        "pool": {"accum": acc(), "result": t()},
        "up": {"result": t()},
        "conv2": {"weight": t(max_width=10), "bias": t(max_width=12), "accum": acc(), "result": t()},
        "fc": {"weight": t(max_width=10), "bias": t(max_width=12), "accum": acc(), "result": t()},
    }
    return geometry, precisions, draw(st.integers(0, 2**31 - 1))


@given(cnn_recipes())
@SETTINGS
def test_conv_pool_padding_upsampling(recipe):
    import tensorflow as tf
    from tensorflow.keras import layers as L

    g, precisions, seed = recipe
    rng = np.random.default_rng(seed)
    inp = L.Input((g["height"], g["width"], g["chan"]), name="x_in")
    h = L.ZeroPadding2D(((g["pad"][0], g["pad"][1]), (g["pad"][2], g["pad"][3])), name="pad")(inp)
    kh = min(g["kernel"][0], g["height"] + g["pad"][0] + g["pad"][1])
    kw = min(g["kernel"][1], g["width"] + g["pad"][2] + g["pad"][3])
    h = L.Conv2D(g["filters"], (kh, kw), use_bias=g["bias"], name="conv1")(h)
    h = L.ReLU(name="relu")(h)
    pool = (min(g["pool"][0], h.shape[1]), 1)
    h = L.AveragePooling2D(pool, name="pool")(h)
    h = L.UpSampling2D(g["up"], name="up")(h)
    h = L.Conv2D(2, (1, 1), name="conv2")(h)
    h = L.Flatten(name="flat")(h)
    out = L.Dense(g["dense"], name="fc")(h)
    model = tf.keras.Model(inp, out)
    random_weights(rng, model)
    hls_model = convert_and_compile(model, precisions, "cnn")
    emulator = Emulator.from_hls_model(hls_model)
    in_t = precisions["x_in"]["result"]
    x = stimulus(rng, N_EVENTS, (g["height"], g["width"], g["chan"]), in_t.lsb, max(abs(in_t.max), in_t.lsb * 4))
    assert_traces_equal(hls_model, emulator, x)


def test_unsupported_layer_is_refused_by_name():
    import tensorflow as tf
    from tensorflow.keras import layers as L

    from emulator.hls4ml_export import UnsupportedLayer

    inp = L.Input((4,), name="x_in")
    out = L.Activation("swish", name="squash")(L.Dense(3, name="fc")(inp))
    model = tf.keras.Model(inp, out)
    random_weights(np.random.default_rng(1), model)
    import hls4ml

    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vivado")
    hls_model = hls4ml.converters.convert_from_keras_model(model, hls_config=config, io_type="io_parallel",
                                                           output_dir="build/random-models/unsupported")
    with pytest.raises(UnsupportedLayer, match="squash.*swish"):
        Emulator.from_hls_model(hls_model)
