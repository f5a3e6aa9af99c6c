"""The KL and MSE heads compiled by hls4ml (firmware/hls/*.h) against the emulator and an independent Python reference.

One model carries six heads with different precisions (saturating and wrapping accumulators, a custom exp table,
a log_var type that cannot hold 1.0, a rank-3 MSE input); random input codes include saturating magnitudes.
Every comparison is on raw codes, with ==.
"""

from pathlib import Path

import numpy as np
import pytest
from tensorflow import keras

from emulator import Emulator
from emulator.arith import cast_raw, quantize, type_spec
from emulator.fixed_type import FixedType
from emulator.tables import kl_exp_table
from firmware.csim import CSim
from firmware.hls4ml_extensions import ExtensionError, register
from firmware.hls_project import convert
from models.heads import CUSTOM_OBJECTS, KLDivergenceHead, MSEHead

BUILD = Path(__file__).resolve().parents[1] / "build" / "tests" / "heads"
N_IN = 8
N_EVENTS = 4000
N_REFERENCE = 1000  # events checked against the (slow) pure-Python reference
WEIGHT_SCALE = {"log_var": 0.4, "narrow_log_var": 0.2, "rec": 0.6}

PRECISIONS = {
    "x_in": {"result": "fixed<14,6>"},
    "log_var": {"weight": "fixed<8,2>", "bias": "fixed<8,2>", "accum": "fixed<24,10>", "result": "fixed<14,5>"},
    "narrow_log_var": {"weight": "fixed<8,2>", "bias": "fixed<8,2>", "accum": "fixed<24,10>", "result": "fixed<8,1>"},
    "rec": {"weight": "fixed<8,2>", "bias": "fixed<8,2>", "accum": "fixed<24,10>", "result": "fixed<14,6>"},
    "log_var_linear": {"result": "fixed<14,5>"},
    "narrow_log_var_linear": {"result": "fixed<8,1>"},
    "rec_linear": {"result": "fixed<14,6>"},
    "x_3d": {"result": "fixed<14,6>"},
    "rec_3d": {"result": "fixed<14,6>"},
    "kl_a": {"accum": "fixed<12,4,TRN,SAT>", "result": "fixed<16,6>"},
    "kl_b": {"accum": "fixed<20,10,RND,WRAP>", "exp_table": "fixed<12,4,RND,SAT>", "result": "fixed<12,2,RND,SAT>"},
    "kl_c": {"accum": "fixed<18,8,RND,SAT>", "result": "fixed<10,4,RND_CONV,SAT>"},
    "mse_a": {"diff": "fixed<10,5,TRN,SAT>", "square": "fixed<12,6,RND,SAT>", "accum": "fixed<16,8,TRN,WRAP>",
              "result": "fixed<16,8>"},
    "mse_b": {"diff": "fixed<18,7>", "square": "fixed<24,12,RND,SAT>", "accum": "fixed<20,10,RND,SAT>",
              "result": "fixed<12,6,RND,SAT>"},
    "mse_c": {"diff": "fixed<16,8,RND,SAT>", "square": "fixed<20,12,TRN,SAT>", "accum": "fixed<14,6,RND,WRAP>",
              "result": "fixed<10,6,TRN,WRAP>"},
}
TABLES = {"kl_b": {"TableSize": 512, "ExpRange": 4}}


def heads_model(seed=1):
    x = keras.layers.Input((N_IN,), name="x_in")
    log_var = keras.layers.Dense(N_IN, name="log_var")(x)
    narrow = keras.layers.Dense(N_IN, name="narrow_log_var")(x)
    rec = keras.layers.Dense(N_IN, name="rec")(x)
    outputs = [
        KLDivergenceHead(name="kl_a")([x, log_var]),
        KLDivergenceHead(name="kl_b")([x, log_var]),
        KLDivergenceHead(name="kl_c")([log_var, narrow]),
        MSEHead(name="mse_a")([x, rec]),
        MSEHead(name="mse_b")([rec, x]),
        MSEHead(name="mse_c")([keras.layers.Reshape((2, 4, 1), name="x_3d")(x),
                               keras.layers.Reshape((2, 4, 1), name="rec_3d")(rec)]),
    ]
    model = keras.Model(x, outputs)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([rng.normal(0.0, WEIGHT_SCALE[layer.name], size=w.shape).astype(np.float32)
                               for w in layer.weights])
    return model


def hls_config(model):
    import hls4ml

    register()
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", default_precision="fixed<16,6>")
    for name, precision in PRECISIONS.items():
        config["LayerName"][name]["Precision"] = dict(precision)
    for name, extra in TABLES.items():
        config["LayerName"][name].update(extra)
    return config


@pytest.fixture(scope="module")
def compiled():
    model = heads_model()
    hls_model = convert(model, hls_config(model), BUILD / "project")
    return hls_model, CSim(hls_model)


@pytest.fixture(scope="module")
def input_codes():
    """Per event: uniform over the whole input range (mean**2, the exp index and the sums saturate), small values,
    or only extreme codes."""
    t = FixedType.parse("ap_fixed<14,6>")
    rng = np.random.default_rng(7)
    wide = rng.integers(t.min_code, t.max_code + 1, size=(N_EVENTS, N_IN))
    small = rng.integers(-(1 << 8), 1 << 8, size=(N_EVENTS, N_IN))
    extreme = rng.choice([t.min_code, t.max_code, 0, -1, 1], size=(N_EVENTS, N_IN))
    pick = rng.random((N_EVENTS, 1))
    return np.where(pick < 0.3, wide, np.where(pick < 0.9, small, extreme)).astype(np.int64)


# ---- the independent reference: Python ints and emulator.arith.cast_raw ---------------------------------------
def cast(value: int, frac: int, t: FixedType) -> int:
    """Code of the exact value value * 2**-frac cast to t."""
    return int(cast_raw(value, frac, *type_spec(t)))


def constant(x: float, t: FixedType) -> int:
    return int(quantize(np.array([x]), t)[0])


def add(a: int, a_frac: int, b: int, b_frac: int, t: FixedType) -> int:
    """t(a + b), the sum exact."""
    frac = max(a_frac, b_frac)
    return cast((a << (frac - a_frac)) + (b << (frac - b_frac)), frac, t)


def tree_sum(codes: list, t: FixedType) -> int:
    """nnet::reduce with Op_add<t>: left part the largest power of two below the length."""
    if len(codes) == 1:
        return codes[0]
    if len(codes) == 2:
        return cast(codes[0] + codes[1], t.fractional, t)
    left = 1 << ((len(codes) - 1).bit_length() - 1)
    return cast(tree_sum(codes[:left], t) + tree_sum(codes[left:], t), t.fractional, t)


def kl_reference(mean, mean_t, log_var, log_var_t, acc_t, table, table_t, table_size, exp_range, res_t) -> int:
    terms = []
    scale = table_size // (2 * exp_range)
    for m, lv in zip(mean, log_var):
        mean_sq = cast(m * m, 2 * mean_t.fractional, acc_t)
        kl = add(constant(1.0, log_var_t), log_var_t.fractional, lv, log_var_t.fractional, acc_t)
        shift = log_var_t.fractional
        index = (lv * scale >> shift if shift >= 0 else lv * scale << -shift) + table_size // 2
        index = min(max(index, 0), table_size - 1)
        kl = add(kl, acc_t.fractional, -table[index], table_t.fractional, acc_t)
        terms.append(cast(kl - mean_sq, acc_t.fractional, acc_t))
    total = cast(tree_sum(terms, acc_t) * constant(1.0 / len(terms), acc_t), 2 * acc_t.fractional, acc_t)
    return cast(constant(-0.5, res_t) * total, res_t.fractional + acc_t.fractional, res_t)


def mse_reference(ref, ref_t, rec, rec_t, diff_t, square_t, acc_t, res_t) -> int:
    leaves = []
    for a, b in zip(ref, rec):
        d = add(b, rec_t.fractional, -a, ref_t.fractional, diff_t)
        s = cast(d * d, 2 * diff_t.fractional, square_t)
        leaves.append(cast(s, square_t.fractional, acc_t))
    total = cast(tree_sum(leaves, acc_t) * constant(1.0 / len(leaves), acc_t), 2 * acc_t.fractional, acc_t)
    return cast(total, acc_t.fractional, res_t)


def fixed(node, attr) -> FixedType:
    return FixedType.from_hls4ml(node.get_attr(attr).precision)


def producer_values(hls_model, name: str, values: dict):
    """(codes, type) of a tensor; a reshape without a function call (io_parallel) passes its input through."""
    while name not in values:
        name = hls_model.graph[name].inputs[0]
    return values[name]


def head_reference(hls_model, node, values: dict) -> np.ndarray:
    """The reference outputs of one head node, from the codes and types of its two inputs."""
    (a, a_t), (b, b_t) = (producer_values(hls_model, name, values) for name in node.inputs)
    res_t = FixedType.from_hls4ml(node.get_output_variable().type.precision)
    if node.class_name == "KLDivergence":
        table_t = fixed(node, "exp_table_t")
        size, exp_range = int(node.get_attr("table_size")), int(node.get_attr("exp_range"))
        table = kl_exp_table(size, exp_range, table_t).tolist()
        args = (fixed(node, "accum_t"), table, table_t, size, exp_range, res_t)
        return np.array([kl_reference(m, a_t, lv, b_t, *args) for m, lv in zip(a.tolist(), b.tolist())])
    types = (fixed(node, "diff_t"), fixed(node, "square_t"), fixed(node, "accum_t"), res_t)
    return np.array([mse_reference(r, a_t, c, b_t, *types) for r, c in zip(a.tolist(), b.tolist())])


# ---- tests -----------------------------------------------------------------------------------------------------
HEADS = ("kl_a", "kl_b", "kl_c", "mse_a", "mse_b", "mse_c")


def test_heads_match_the_emulator(compiled, input_codes):
    hls_model, csim = compiled
    observed = csim.run(input_codes)
    expected = Emulator.from_hls_model(hls_model).predict_codes(input_codes).codes
    assert set(observed) == set(HEADS)
    for name in HEADS:
        assert np.array_equal(observed[name], expected[name]), (
            f"{name}: {np.sum(observed[name] != expected[name])} mismatches")


@pytest.mark.parametrize("head", HEADS)
def test_head_matches_the_python_reference(compiled, input_codes, head):
    hls_model, csim = compiled
    codes = input_codes[:N_REFERENCE]
    trace = csim.trace(codes)
    values = {port.name: (trace[port.name], port.type) for port in csim.interface.traced}
    values["x_in"] = (codes, csim.interface.inputs[0].type)
    node = hls_model.graph[head]
    expected = head_reference(hls_model, node, values)
    assert np.array_equal(trace[head][:, 0], expected), f"{head}: {np.sum(trace[head][:, 0] != expected)} mismatches"


def test_stimulus_reaches_saturation_and_the_table_ends(compiled, input_codes):
    """The inputs square beyond kl_a's accumulator range, drive the exp-table index to both clamps and saturate
    mse_b's result, while leaving many values in range (else the tests above would be weak)."""
    _, csim = compiled
    trace = csim.trace(input_codes)
    x = input_codes * 2.0**-8
    assert (x**2 > FixedType.parse("ap_fixed<12,4>").max).any()
    log_var = trace["log_var"] * 2.0**-9
    assert (log_var < -8).any() and (log_var > 8).any() and (np.abs(log_var) < 8).mean() > 0.3
    mse_b_max = FixedType.parse("ap_fixed<12,6,AP_RND,AP_SAT>").max_code
    assert (trace["mse_b"] == mse_b_max).any() and (trace["mse_b"] < mse_b_max).mean() > 0.3
    for head in HEADS:
        assert len(np.unique(trace[head])) > 20, f"{head} takes too few distinct values"


def test_narrow_log_var_type_wraps_the_constant_one(compiled):
    """kl_c's log_var type ap_fixed<8,1> cannot hold 1.0, so L(1.0) wraps to -1.0 as in hls4ml's contrib layer."""
    hls_model, _ = compiled
    node = hls_model.graph["kl_c"]
    narrow = FixedType.from_hls4ml(node.get_input_variable(node.inputs[1]).type.precision)
    assert str(narrow) == "ap_fixed<8,1>"
    assert constant(1.0, narrow) == narrow.min_code


def test_configured_precisions_reach_the_nodes(compiled):
    hls_model, _ = compiled
    kl_b, mse_a, kl_a = hls_model.graph["kl_b"], hls_model.graph["mse_a"], hls_model.graph["kl_a"]
    assert str(fixed(kl_b, "accum_t")) == "ap_fixed<20,10,AP_RND,AP_WRAP>"
    assert str(fixed(kl_b, "exp_table_t")) == "ap_fixed<12,4,AP_RND,AP_SAT>"
    assert (kl_b.get_attr("table_size"), kl_b.get_attr("exp_range")) == (512, 4)
    assert str(fixed(kl_a, "exp_table_t")) == "ap_fixed<18,8,AP_RND,AP_SAT>"
    assert (kl_a.get_attr("table_size"), kl_a.get_attr("exp_range")) == (1024, 8)
    assert [str(fixed(mse_a, f"{r}_t")) for r in ("diff", "square", "accum")] == [
        "ap_fixed<10,5,AP_TRN,AP_SAT>", "ap_fixed<12,6,AP_RND,AP_SAT>", "ap_fixed<16,8>"]


def kl_model():
    mean_in, log_var_in = keras.layers.Input((4,), name="mean_in"), keras.layers.Input((4,), name="log_var_in")
    return keras.Model([mean_in, log_var_in], KLDivergenceHead(name="kl")([mean_in, log_var_in]))


def test_defaults_apply_without_layer_configuration(tmp_path):
    hls_model = convert(kl_model(), {"Model": {"Precision": "fixed<16,6>"}}, tmp_path / "project")
    kl = hls_model.graph["kl"]
    assert str(fixed(kl, "exp_table_t")) == "ap_fixed<18,8,AP_RND,AP_SAT>"
    assert str(fixed(kl, "accum_t")) == "ap_fixed<16,6>"
    assert (kl.get_attr("table_size"), kl.get_attr("exp_range")) == (1024, 8)
    assert kl.get_output_variable().shape == [1]


def test_table_size_must_be_a_multiple_of_twice_the_range(tmp_path):
    config = {"Model": {"Precision": "fixed<16,6>"}, "LayerName": {"kl": {"TableSize": 1000, "ExpRange": 8}}}
    with pytest.raises(ExtensionError,
                       match="table_size \\(1000\\) must be a positive multiple of 2 \\* exp_range \\(16\\)"):
        convert(kl_model(), config, tmp_path / "project")


def test_register_is_idempotent():
    import hls4ml

    register()
    register()
    assert {"KLDivergenceHead", "MSEHead"} <= set(hls4ml.converters.get_supported_keras_layers())
    for backend in ("Vivado", "Vitis"):
        sources = hls4ml.backends.get_backend(backend).get_custom_source()
        assert {"nnet_utils/kl_divergence.h", "nnet_utils/mse_distance.h"} <= set(sources)


# ---- the Keras layers ----------------------------------------------------------------------------------------
def test_keras_heads_compute_the_scores_and_reload(tmp_path):
    mean_in, log_var_in = keras.layers.Input((3,)), keras.layers.Input((3,))
    image_a, image_b = keras.layers.Input((2, 3, 1)), keras.layers.Input((2, 3, 1))
    model = keras.Model([mean_in, log_var_in, image_a, image_b],
                        [KLDivergenceHead()([mean_in, log_var_in]), MSEHead()([image_a, image_b])])
    rng = np.random.default_rng(3)
    mean, log_var = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    a, b = rng.normal(size=(5, 2, 3, 1)), rng.normal(size=(5, 2, 3, 1))
    kl, mse = model.predict([mean, log_var, a, b], verbose=0)
    assert kl.shape == mse.shape == (5, 1)
    np.testing.assert_allclose(kl[:, 0], -0.5 * np.mean(1 + log_var - mean**2 - np.exp(log_var), axis=1), rtol=1e-5)
    np.testing.assert_allclose(mse[:, 0], np.mean(((b - a) ** 2).reshape(5, -1), axis=1), rtol=1e-5)
    model.save(tmp_path / "heads.h5")
    reloaded = keras.models.load_model(tmp_path / "heads.h5", custom_objects=CUSTOM_OBJECTS)
    np.testing.assert_array_equal(reloaded.predict([mean, log_var, a, b], verbose=0)[0], kl)


def test_keras_heads_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="same shape"):
        KLDivergenceHead()([keras.layers.Input((3,)), keras.layers.Input((4,))])
    with pytest.raises(ValueError, match="two inputs"):
        MSEHead()(keras.layers.Input((3,)))


def test_vitis_backend_heads_match_the_python_reference():
    """The heads registered for the Vitis backend, on two model inputs fed directly with codes over their whole
    range."""
    mean_in, log_var_in = keras.layers.Input((5,), name="mean_in"), keras.layers.Input((5,), name="log_var_in")
    model = keras.Model([mean_in, log_var_in], [KLDivergenceHead(name="kl")([mean_in, log_var_in]),
                                                MSEHead(name="mse")([mean_in, log_var_in])])
    config = {"Model": {"Precision": "fixed<16,6>"}, "LayerName": {
        "mean_in": {"Precision": {"result": "fixed<10,4>"}},
        "log_var_in": {"Precision": {"result": "fixed<12,5,RND,SAT>"}},
        "kl": {"Precision": {"accum": "fixed<16,7,RND,SAT>", "exp_table": "fixed<14,6,RND,SAT>",
                             "result": "fixed<16,6>"}},
        "mse": {"Precision": {"diff": "fixed<12,6>", "square": "fixed<16,8,RND,SAT>", "accum": "fixed<16,8,RND,SAT>",
                              "result": "fixed<12,6,RND,SAT>"}},
    }}
    register()
    hls_model = convert(model, config, BUILD / "vitis", backend="Vitis")
    csim = CSim(hls_model)
    rng = np.random.default_rng(2)
    small = rng.random((500, 1)) < 0.8  # |value| < 2 in most events, the whole range in the others
    codes = [np.where(small, rng.integers(-(2 << p.type.fractional), 2 << p.type.fractional, size=(500, p.size)),
                      rng.integers(p.type.min_code, p.type.max_code + 1, size=(500, p.size)))
             for p in csim.interface.inputs]
    observed = csim.run(codes)
    values = {p.name: (c, p.type) for p, c in zip(csim.interface.inputs, codes)}
    for head in ("kl", "mse"):
        expected = head_reference(hls_model, hls_model.graph[head], values)
        assert np.array_equal(observed[head][:, 0], expected), (
            f"{head}: {np.sum(observed[head][:, 0] != expected)} mismatches")
        assert len(np.unique(expected)) > 50
