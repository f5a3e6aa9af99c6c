"""Property tests of the structure layers: random small multi-branch models with random precisions, converted by
hls4ml (Vivado and Vitis backends); the emulator equals hls4ml's compiled C-sim trace at every layer.

Each model groups many layers to keep the number of C-sim compiles low: pooling (max and average, 1D, 2D and
global, padded), Conv1D/Conv2D with padding inside the layer, depthwise and separable convolutions, every merge
(hls4ml's modulo broadcast included), concatenation along every axis, a dot product, layers hls4ml removes
(Dropout, linear Activation, a final Flatten) or makes in place (Flatten), two inputs and two outputs.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from emulator import Emulator
from emulator.hls4ml_export import UnsupportedLayer
from random_models import assert_traces_equal, convert_and_compile, fixed_types, random_weights, stimulus


N_EVENTS = 2000
MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def past_the_simplest(recipes):
    """Hypothesis first tries the simplest draw (every choice minimal, seed 0 included): the one-example default run
    takes a random draw instead, and leaves the simplest to the runs in make regression."""
    return recipes.filter(lambda recipe: recipe[-1] != 0)


def _conv_types(t, acc):
    return {"weight": t(max_width=10), "bias": t(max_width=12), "accum": acc(), "result": t()}


def _draw_types(draw):
    t = lambda **kw: draw(fixed_types(**kw))  # noqa: E731
    acc = lambda: t(min_width=8, max_width=26)  # noqa: E731
    return t, acc


def _events(rng, precisions: dict, name: str, shape):
    in_t = precisions[name]["result"]
    return stimulus(rng, N_EVENTS, shape, in_t.lsb, max(abs(in_t.max), in_t.lsb * 4))


def _check(model, precisions, tag, backend, rng, inputs: dict):
    random_weights(rng, model)
    hls_model = convert_and_compile(model, precisions, tag, backend=backend, compiled=False)
    emulator = Emulator.from_hls_model(hls_model)
    assert [t.name for t in emulator.manifest.inputs] == list(inputs)
    x = [_events(rng, precisions, name, shape) for name, shape in inputs.items()]
    assert_traces_equal(hls_model, emulator, x if len(x) > 1 else x[0])
    return emulator.manifest


# ---- 1D: two inputs, two outputs ---------------------------------------------------------------------------
@st.composite
def sequence_recipes(draw):
    t, acc = _draw_types(draw)
    g = dict(width=draw(st.sampled_from([5, 7, 9])), chan=draw(st.integers(1, 3)), filters=draw(st.integers(1, 3)),
             kernel=draw(st.integers(1, 3)), conv_padding=draw(st.sampled_from(["same", "valid"])),
             dw_kernel=draw(st.integers(1, 3)), dw_padding=draw(st.sampled_from(["same", "valid"])),
             sep_filters=draw(st.integers(1, 3)), sep_kernel=draw(st.integers(1, 2)), aux=draw(st.integers(2, 5)),
             merge=draw(st.sampled_from(MERGES)), head_merge=draw(st.sampled_from(MERGES)),
             concat_axis=draw(st.sampled_from([1, 2, -1, -2])))
    pool = lambda: {"accum": acc(), "result": t()}  # noqa: E731
    precisions = {
        "seq": {"result": t(min_width=6, max_width=16)}, "aux": {"result": t(min_width=6, max_width=16)},
        "conv": _conv_types(t, acc), "act": {"result": dataclasses.replace(t(), signed=False)},
        "mpool": pool(), "apool": pool(), "merge": {"result": t()}, "pair": {"result": t()},
        "dw": _conv_types(t, acc),
        "sep": {"depthwise": t(max_width=10), "pointwise": t(max_width=10), "bias": t(max_width=12),
                "depthwise_accum": acc(), "pointwise_accum": acc(), "depthwise_result": t(), "result": t()},
        "gmax": pool(), "gavg": pool(), "cat": {"result": t()}, "fc": _conv_types(t, acc),
        "fa": _conv_types(t, acc), "head": {"result": t()}, "dot": {"accum": acc(), "result": t()},
    }
    precisions["lin"] = precisions["cat"]  # a linear activation that casts nothing: hls4ml removes it
    return g, precisions, draw(st.integers(0, 2**31 - 1))


def _sequence_model(g):
    import tensorflow as tf
    from tensorflow.keras import layers as L

    seq, aux = L.Input((g["width"], g["chan"]), name="seq"), L.Input((g["aux"],), name="aux")
    conv = L.Conv1D(g["filters"], g["kernel"], padding=g["conv_padding"], name="conv")(seq)
    act = L.ReLU(name="act")(conv)
    mpool = L.MaxPooling1D(2, padding="same", name="mpool")(act)  # unsigned input, padded window: hls4ml's pad value
    apool = L.AveragePooling1D(2, padding="same", name="apool")(conv)
    merged = getattr(L, g["merge"])(name="merge")([mpool, apool])
    pair = L.Concatenate(axis=g["concat_axis"], name="pair")([mpool, apool])
    dw_kernel = min(g["dw_kernel"], merged.shape[1])
    dw = L.DepthwiseConv1D(dw_kernel, padding=g["dw_padding"], name="dw")(merged)
    sep = L.SeparableConv1D(g["sep_filters"], min(g["sep_kernel"], dw.shape[1]), name="sep")(dw)
    pooled = [L.GlobalMaxPooling1D(name="gmax")(sep), L.GlobalAveragePooling1D(name="gavg")(pair)]
    cat = L.Concatenate(name="cat")(pooled)
    fc = L.Dense(g["aux"], name="fc")(L.Activation("linear", name="lin")(L.Dropout(0.5, name="drop")(cat)))
    fa = L.Dense(g["aux"], name="fa")(aux)
    head = getattr(L, g["head_merge"])(name="head")([fc, fa])
    dot = L.Dot(axes=1, name="dot")([head, fa])
    return tf.keras.Model([seq, aux], [L.Flatten(name="flat")(head), dot])


def check_sequence_model(recipe, backend):
    g, precisions, seed = recipe
    rng = np.random.default_rng(seed)
    model = _sequence_model(g)
    manifest = _check(model, precisions, "structure-1d", backend, rng,
                      {"seq": (g["width"], g["chan"]), "aux": (g["aux"],)})
    assert manifest.outputs == ["head", "dot"]  # the final Flatten is removed by hls4ml, the dot is its own output
    ops = {layer.name: layer.op for layer in manifest.layers}
    assert ops["sep_depthwise"] == "depthwise2d" and ops["sep_pointwise"] == "conv2d"
    assert not {"drop", "lin", "flat"} & set(ops)


@given(past_the_simplest(sequence_recipes()))
@_settings(1)
def test_sequence_branches_two_inputs(recipe):
    check_sequence_model(recipe, "Vivado")


@pytest.mark.regression
@given(sequence_recipes())
@_settings(6)
def test_sequence_branches_two_inputs_more(recipe):
    check_sequence_model(recipe, "Vitis")
    check_sequence_model(recipe, "Vivado")


# ---- 2D: one image, squeeze-and-excite broadcast, 3D concatenation -------------------------------------------
@st.composite
def image_recipes(draw):
    t, acc = _draw_types(draw)
    g = dict(height=draw(st.integers(3, 6)), width=draw(st.integers(3, 5)), chan=draw(st.integers(1, 2)),
             filters=draw(st.integers(1, 3)), kernel=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
             strides=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
             conv_padding=draw(st.sampled_from(["same", "valid"])), pool=(draw(st.integers(1, 3)), 2),
             merge=draw(st.sampled_from(MERGES)), dw_kernel=draw(st.integers(1, 3)),
             concat_axis=draw(st.sampled_from([1, 2, 3, -1, -2, -3])), dense=draw(st.integers(1, 4)))
    pool = lambda: {"accum": acc(), "result": t()}  # noqa: E731
    precisions = {
        "img": {"result": t(min_width=6, max_width=16)}, "conv": _conv_types(t, acc),
        "mpool": pool(), "apool": pool(), "merge": {"result": t()}, "gate": _conv_types(t, acc), "squeeze": pool(),
        "excite": {"result": t()},
        "dw": _conv_types(t, acc),
        "sep": {"depthwise": t(max_width=10), "pointwise": t(max_width=10), "bias": t(max_width=12),
                "depthwise_accum": acc(), "pointwise_accum": acc(), "depthwise_result": t(), "result": t()},
        "stack": {"result": t()}, "gmax": pool(), "gavg": pool(), "pooled": {"result": t()}, "cat": {"result": t()},
        "fc": _conv_types(t, acc),
    }
    return g, precisions, draw(st.integers(0, 2**31 - 1))


def _image_model(g):
    import tensorflow as tf
    from tensorflow.keras import layers as L

    img = L.Input((g["height"], g["width"], g["chan"]), name="img")
    kernel = tuple(min(k, n) for k, n in zip(g["kernel"], (g["height"], g["width"])))
    conv = L.Conv2D(g["filters"], kernel, strides=g["strides"], padding=g["conv_padding"], name="conv")(img)
    pool = tuple(min(p, n) for p, n in zip(g["pool"], conv.shape[1:3]))
    mpool = L.MaxPooling2D(pool, padding="same", name="mpool")(conv)
    apool = L.AveragePooling2D(pool, padding="same", name="apool")(conv)
    merged = getattr(L, g["merge"])(name="merge")([mpool, apool])
    gate = L.Conv2D(1, 1, name="gate")(merged)
    squeeze = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(gate)
    excited = L.Multiply(name="excite")([merged, squeeze])  # (h, w, f) * (1, 1, 1): hls4ml's modulo broadcast
    dw_kernel = min(g["dw_kernel"], *excited.shape[1:3])
    dw = L.DepthwiseConv2D(dw_kernel, padding="same", name="dw")(excited)
    sep_filters = 2 if g["concat_axis"] in (3, -1) else g["filters"]  # other axes join tensors of equal channels
    sep = L.SeparableConv2D(sep_filters, dw_kernel, padding="same", name="sep")(dw)
    stack = L.Concatenate(axis=g["concat_axis"], name="stack")([dw, sep])
    pooled = L.Concatenate(name="pooled")([L.GlobalMaxPooling2D(name="gmax")(stack),
                                           L.GlobalAveragePooling2D(name="gavg")(dw)])
    cat = L.Concatenate(name="cat")([pooled, L.Flatten(name="flat")(apool)])  # a Flatten inside the graph: in place
    return tf.keras.Model(img, L.Dense(g["dense"], name="fc")(cat))


def check_image_model(recipe, backend):
    g, precisions, seed = recipe
    rng = np.random.default_rng(seed)
    manifest = _check(_image_model(g), precisions, "structure-2d", backend, rng,
                      {"img": (g["height"], g["width"], g["chan"])})
    assert {"maxpool2d", "avgpool2d", "multiply", "depthwise2d", "concatenate", "reshape"} <= {
        layer.op for layer in manifest.layers}


@given(past_the_simplest(image_recipes()))
@_settings(1)
def test_image_branches(recipe):
    check_image_model(recipe, "Vitis")


@pytest.mark.regression
@given(image_recipes())
@_settings(6)
def test_image_branches_more(recipe):
    check_image_model(recipe, "Vivado")
    check_image_model(recipe, "Vitis")


# ---- refusals ----------------------------------------------------------------------------------------------
def test_unsupported_options_are_refused_by_name():
    """A depth multiplier other than 1 (hls4ml's C++ asserts on it) is refused at export, naming layer and option."""
    import hls4ml
    import tensorflow as tf
    from tensorflow.keras import layers as L

    inp = L.Input((6, 2), name="x_in")
    model = tf.keras.Model(inp, L.DepthwiseConv1D(3, depth_multiplier=2, name="deep")(inp))
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vivado")
    hls_model = hls4ml.converters.convert_from_keras_model(model, hls_config=config, io_type="io_parallel",
                                                           output_dir="build/random-models/unsupported-structure")
    with pytest.raises(UnsupportedLayer, match=r"'deep' \(DepthwiseConv1D\): depth_multiplier 2"):
        Emulator.from_hls_model(hls_model)


def test_partly_written_broadcast_merge_is_refused():
    """hls4ml sizes a merge by the larger C++ size string ('3' > '2*2*3'): (2, 2, 3) * (1, 1, 3) writes only 3
    outputs and leaves 9 unset, which no emulator can reproduce."""
    import hls4ml
    import tensorflow as tf
    from tensorflow.keras import layers as L

    inp = L.Input((2, 2, 3), name="x_in")
    scale = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(inp)
    model = tf.keras.Model(inp, L.Multiply(name="excite")([inp, scale]))
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vivado")
    hls_model = hls4ml.converters.convert_from_keras_model(model, hls_config=config, io_type="io_parallel",
                                                           output_dir="build/random-models/unsupported-merge")
    with pytest.raises(UnsupportedLayer, match=r"'excite' \(Merge\): hls4ml writes only 3 of its 12 outputs"):
        Emulator.from_hls_model(hls_model)


def test_verify_refuses_multi_input_models(tmp_path, capsys):
    """verify feeds one input tensor (events, vectors, RTL harness): a two-input model exits 2 saying so."""
    import json

    import hls4ml
    import tensorflow as tf
    from tensorflow.keras import layers as L

    from verify.cli import main

    a, b = L.Input((3,), name="a"), L.Input((3,), name="b")
    model = tf.keras.Model([a, b], L.Add(name="sum")([a, b]))
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", default_precision="fixed<16,6>")
    model.save(tmp_path / "two_inputs.h5", include_optimizer=False)
    (tmp_path / "hls_config.json").write_text(json.dumps(config, default=str))
    status = main(["--keras", str(tmp_path / "two_inputs.h5"), "--config", str(tmp_path / "hls_config.json"),
                   "--skip-rtl", "--quiet", "--out", str(tmp_path / "report"), "--build-dir", str(tmp_path / "build")])
    assert status == 2
    assert "has 2 inputs (a, b); verify certifies one-input models" in capsys.readouterr().err


def test_several_inputs_are_named_in_every_input_error():
    """A two-input model takes a list (input order) or a dict by name; each input is checked on its own."""
    from emulator import FixedType, InputError, Manifest
    from emulator.manifest import Layer, Tensor

    t = FixedType.parse("ap_fixed<8,3,AP_RND,AP_SAT>")
    manifest = Manifest("two", [Tensor("a", (2, 2), t), Tensor("b", (4,), t)],
                        [Layer("sum", "add", ["a", "b"], (2, 2), FixedType.parse("ap_fixed<9,4>"),
                               params={"n_elem1": 4, "n_elem2": 4})], ["sum"])
    emulator = Emulator(manifest)
    a, b = np.array([[[0.5, -1.0], [2.25, 3.0]]]), np.array([[0.25, 0.5, -8.0, 1.0]])
    by_list, by_name = emulator.predict([a, b]), emulator.predict({"b": b, "a": a})
    assert by_list.code.tolist() == by_name.code.tolist() == [[24, -16, -56, 128]]  # -8 saturates to -4 as input
    assert set(emulator.quantize_inputs([a, b])) == {"a", "b"}
    with pytest.raises(InputError, match=r"2 inputs \(a, b\): give input events as a list of 2 arrays"):
        emulator.predict(a)
    with pytest.raises(InputError, match=r"given for inputs \['a'\]; the model's inputs are \['a', 'b'\]"):
        emulator.predict({"a": a})
    with pytest.raises(InputError, match="different numbers of events: a: 1, b: 2"):
        emulator.predict([a, np.vstack([b, b])])
    with pytest.raises(InputError, match=r"event\(s\) of input 'b' contain NaN"):
        emulator.predict([a, np.full((1, 4), np.nan)])
    with pytest.raises(InputError, match=r"input codes of input 'a' outside the range"):
        emulator.predict_codes([np.full((1, 4), 999, dtype=np.int64), np.zeros((1, 4), dtype=np.int64)])
    with pytest.raises(InputError, match=r"expected \(N, 4\) for input 'b'"):
        emulator.trace([a, np.zeros((1, 3))])
