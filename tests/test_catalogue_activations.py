"""Property tests of the activations: random small models with random precisions, random table sizes and table
types, converted by hls4ml (Vivado and Vitis backends); the emulator equals hls4ml's compiled C-sim trace at every
layer.

Two models hold every activation, to keep the number of C-sim compiles low (the default run converts each once, on
one backend; make regression both on both): inputs of random types feed the table activations (sigmoid, tanh,
softplus, softsign, elu, selu), Keras' and QKeras' hard sigmoid and hard tanh and QKeras' binary tanh in one; the
rectifiers (relu, Keras' and QKeras' leaky, thresholded, parametric) and a softmax in each of hls4ml's
implementations (latency, stable, legacy, argmax), one of them on a 2D input (hls4ml normalises over all of it), in
the other. The tables themselves are compared with g++'s run of hls4ml's init functions.
"""

import dataclasses
import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ap_reference import ap_types_dir, cpp_type
from emulator import Emulator
from emulator.fixed_type import FixedType
from emulator.hls4ml_export import UnsupportedLayer
from emulator.tables import (activation_table, legacy_exp_table, legacy_invert_table, softmax_exp_table,
                             softmax_invert_table)
from random_models import assert_traces_equal, convert_and_compile, fixed_types, hls_precision, random_weights, stimulus


T = FixedType.parse
N_EVENTS = 3000
TABLE_ACTIVATIONS = ("sigmoid", "tanh", "softplus", "softsign", "selu")
SOFTMAX_IMPLEMENTATIONS = ("latency", "stable", "legacy", "argmax")


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


@st.composite
def activation_recipes(draw):
    """(input shapes, precisions, table sizes and softmax implementations, activation parameters, seed). Types that
    hold a function's values (results, tables) have at most a few integer bits (results up to 3, so that 1 and a
    little more fit), so that a neighbouring table entry or a rounding step shows in the result; inputs span the
    tables' ranges with fractional bits to spare."""
    t = lambda **kw: draw(fixed_types(**kw))  # noqa: E731

    def fine(min_width=8, max_width=20, integer=3):
        drawn = t(min_width=min_width, max_width=max_width)
        return dataclasses.replace(drawn, integer=min(drawn.integer, draw(st.integers(1, integer))))

    def spanning():
        """An input type of 3 to 6 integer bits: beyond the tables' ranges (+-8, tanh +-4) and the hard clips."""
        drawn = t(min_width=8, max_width=16)
        return dataclasses.replace(drawn, integer=draw(st.integers(3, 6)))

    sizes = dict(a=(draw(st.integers(2, 6)),), b=(draw(st.integers(2, 6)),), c=(draw(st.integers(2, 6)),),
                 d=(draw(st.integers(1, 3)), draw(st.integers(2, 4))))
    precisions = {name: {"result": spanning()} for name in sizes}
    layer_settings = {}
    for name in TABLE_ACTIVATIONS + ("elu",):
        precisions[name] = {"result": fine()}
        layer_settings[name] = {"TableSize": draw(st.sampled_from([64, 100, 256, 1000, 1024, 4096])),
                                "table_t": hls_precision(fine(10, 24))}
    precisions["elu"]["param"] = fine(4, 12)
    precisions.update({
        "relu": {"result": fine(integer=6)}, "leaky": {"result": fine(integer=6), "param": fine(4, 12)},
        "q_leaky": {"result": fine(integer=6), "param": fine(4, 12)},
        "thresholded": {"result": fine(integer=6), "param": fine(4, 12, integer=3)},
        "prelu": {"result": fine(integer=6), "param": fine(4, 12)},
        "hard_sigmoid": {"result": fine()}, "q_hard_tanh": {"result": fine()}, "q_hard_sigmoid": {"result": fine()},
    })
    for implementation in SOFTMAX_IMPLEMENTATIONS:
        bits = draw(st.integers(2, 10))
        name = f"softmax_{implementation}"
        precisions[name] = {"result": fine(), "accum": fine(10, 24, integer=12)}
        tables = {"table_t": fine(10, 24, integer=8), "exp_table_t": fine(10, 24, integer=12),
                  "inv_table_t": fine(10, 24, integer=4), "inv_inp_t": fine(max(bits, 10), 24, integer=12)}
        layer_settings[name] = {"TableSize": 1 << bits, "Implementation": implementation,
                                **{key: hls_precision(t) for key, t in tables.items()}}
    parameters = dict(leaky=draw(st.sampled_from([0.3, 0.1, 0.01])),
                      theta=draw(st.sampled_from([1.0, 0.5, 0.125, 0.4])),
                      elu=draw(st.sampled_from([1.0, 0.7, 0.25])),
                      softmax_2d=draw(st.sampled_from(SOFTMAX_IMPLEMENTATIONS)))
    return sizes, precisions, layer_settings, parameters, draw(st.integers(0, 2**31 - 1))


def random_recipes():
    """Recipes other than the all-minimal one (every type the narrowest unsigned TRN/WRAP, the smallest tables),
    which hypothesis tries first: the default runs, with one example each, get a random one."""
    return activation_recipes().filter(lambda recipe: recipe[-1] != 0)


def _table_model(inputs, parameters):
    from qkeras import QActivation
    from tensorflow.keras import layers as L

    a, b = inputs["a"], inputs["b"]
    return ([L.Activation(kind, name=kind)(a) for kind in TABLE_ACTIVATIONS]
            + [L.ELU(parameters["elu"], name="elu")(b), L.Activation("hard_sigmoid", name="hard_sigmoid")(a),
               QActivation("quantized_tanh(4)", name="q_hard_tanh")(b),
               QActivation("quantized_sigmoid(4)", name="q_hard_sigmoid")(a),
               QActivation("binary()", name="q_binary")(b)])


def _softmax_model(inputs, parameters):
    from qkeras import QActivation
    from tensorflow.keras import layers as L

    b, c, d = inputs["b"], inputs["c"], inputs["d"]
    return ([L.ReLU(name="relu")(b), L.LeakyReLU(parameters["leaky"], name="leaky")(b),
             QActivation("quantized_relu(6, 2, negative_slope=0.25)", name="q_leaky")(b),
             L.ThresholdedReLU(parameters["theta"], name="thresholded")(b), L.PReLU(name="prelu")(b)]
            + [L.Activation("softmax", name=f"softmax_{kind}")(c) for kind in SOFTMAX_IMPLEMENTATIONS]
            + [L.Activation("softmax", name="softmax_2d")(d)])


MODELS = {  # name: (outputs from the inputs, the inputs used, the ops it must hold)
    "tables": (_table_model, ("a", "b"), {"sigmoid", "tanh", "softplus", "softsign", "elu", "selu", "hard_sigmoid",
                                          "hard_tanh", "binary_tanh"}),
    "softmax": (_softmax_model, ("b", "c", "d"), {"relu", "leaky_relu", "thresholded_relu", "prelu", "softmax_latency",
                                                  "softmax_stable", "softmax_legacy", "softmax_argmax"}),
}


def check_activations(recipe, model_name: str, backend: str):
    """Convert MODELS[model_name] for the recipe, and compare every layer's C-sim trace with the emulator's."""
    import tensorflow as tf
    from tensorflow.keras import layers as L

    sizes, precisions, layer_settings, parameters, seed = recipe
    rng = np.random.default_rng(seed)
    outputs, names, ops = MODELS[model_name]
    inputs = {name: L.Input(sizes[name], name=name) for name in names}
    model = tf.keras.Model(list(inputs.values()), outputs(inputs, parameters))
    random_weights(rng, model, scale=0.5)
    layer_settings = {**layer_settings, "softmax_2d": {"Implementation": parameters["softmax_2d"]}}
    hls_model = convert_and_compile(model, precisions, f"activations-{model_name}", backend=backend, compiled=False,
                                    layer_settings=layer_settings)
    emulator = Emulator.from_hls_model(hls_model)
    assert ops <= {layer.op for layer in emulator.manifest.layers}
    x = [stimulus(rng, N_EVENTS, spec.shape, spec.type.lsb, max(abs(spec.type.max), spec.type.lsb * 4))
         for spec in emulator.manifest.inputs]
    edges = np.array([0.0, 1.0, -1.0, parameters["theta"]])  # where the rectifiers, units and clips switch
    for events in x:
        picked = rng.random(events.shape) < 0.08
        events[picked] = rng.choice(edges, size=int(picked.sum()))
    assert_traces_equal(hls_model, emulator, x)


@given(random_recipes())
@_settings(1)
def test_table_activations_vivado(recipe):
    check_activations(recipe, "tables", "Vivado")


@given(random_recipes())
@_settings(1)
def test_rectifiers_and_softmax_vitis(recipe):
    check_activations(recipe, "softmax", "Vitis")


@pytest.mark.regression
@given(activation_recipes())
@_settings(6)
def test_every_activation_both_backends(recipe):
    for model_name in MODELS:
        for backend in ("Vivado", "Vitis"):
            check_activations(recipe, model_name, backend)


# ---- refusals ----------------------------------------------------------------------------------------------
REFUSALS = {  # layer settings of a softmax (or the binary tanh's result type) that hls4ml's C++ cannot index
    "latency table size 1000": ({"Implementation": "latency", "TableSize": 1000},
                                r"'squash' \(Softmax\): exp table size 1000 is not a power of two"),
    "stable inversion input too narrow": ({"Implementation": "stable", "TableSize": 1024, "inv_inp_t": "fixed<8,4>"},
                                          r"'squash' \(Softmax\): inversion table size 1024 needs 10 address bits"),
    "binary tanh into ap_uint<1>": ({"Precision": {"result": "uint<1>"}},
                                    r"'squash' \(Activation\): binary_tanh into an ap_uint<1> result"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_unsupported_options_are_refused_by_name(case):
    import hls4ml
    import tensorflow as tf
    from qkeras import QActivation
    from tensorflow.keras import layers as L

    settings_, message = REFUSALS[case]
    inp = L.Input((4,), name="x_in")
    squash = QActivation("binary()", name="squash") if "binary" in case else L.Activation("softmax", name="squash")
    model = tf.keras.Model(inp, squash(inp))
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vivado")
    config["LayerName"]["squash"].update(settings_)
    hls_model = hls4ml.converters.convert_from_keras_model(model, hls_config=config, io_type="io_parallel",
                                                           output_dir="build/random-models/unsupported-activation")
    with pytest.raises(UnsupportedLayer, match=message):
        Emulator.from_hls_model(hls_model)


# ---- the tables against hls4ml's own init functions, compiled with g++ ------------------------------------
TABLE_BUILD = Path(__file__).resolve().parents[1] / "build" / "activation-tables"
GPP = ["g++", "-O3", "-std=c++23", "-w"]  # hls4ml's build_lib.sh flags for the C-sim (g++ >= 11 has c++23)
WIDE, SATURATING = T("ap_fixed<48,3,AP_RND,AP_SAT>"), T("ap_ufixed<40,4,AP_RND_CONV,AP_SAT>")
WRAPPING = T("ap_fixed<8,2>")
TABLE_JOBS = [  # (init function, table size, table type, address type or None, exp_scale, negative)
    *[(kind, size, t, None, 1.0, False) for kind in ("sigmoid", "tanh", "softplus", "softsign", "elu", "selu")
      for size, t in ((1024, WIDE), (100, SATURATING), (4096, WRAPPING))],
    *[(kind, 512, t, None, 1.0, False) for kind in ("exp_legacy", "invert_legacy") for t in (WIDE, WRAPPING)],
    ("exp", 1024, WIDE, T("ap_fixed<10,3>"), 1.0, False), ("exp", 256, WIDE, T("ap_ufixed<12,4>"), 1.0, True),
    ("exp", 64, SATURATING, T("ap_fixed<20,3>"), 0.37, False), ("invert", 1024, WIDE, T("ap_fixed<18,8>"), 1.0, False),
    ("invert", 256, SATURATING, T("ap_ufixed<12,7>"), 1.0, False),
    ("invert", 128, WRAPPING, T("ap_fixed<7,7>"), 1.0, False),
]


def _init_call(kind, size, address, negative) -> str:
    if kind in ("exp", "invert"):
        return f"nnet::init_{kind}_table<{cpp_type(address)}, cfg>(t{', true' if negative else ''});"
    if kind.endswith("_legacy"):
        return f"nnet::init_{kind.removesuffix('_legacy')}_table_legacy<cfg, {size}>(t);"
    return f"nnet::init_{kind}_table<cfg, {size}>(t);"


def _reference_tables() -> list:
    """The codes of every TABLE_JOBS table as hls4ml's nnet_activation.h fills it, from one g++ program."""
    import hls4ml

    jobs = []
    for n, (kind, size, t, address, scale, negative) in enumerate(TABLE_JOBS):
        jobs.append(f"""namespace job{n} {{
struct cfg : nnet::activ_config {{
  static const unsigned table_size = {size}, exp_table_size = {size}, inv_table_size = {size};
  static constexpr float exp_scale = {scale!r};
  typedef {cpp_type(t)} table_t; typedef table_t exp_table_t; typedef table_t inv_table_t;
}};
void run() {{ static cfg::table_t t[{size}]; {_init_call(kind, size, address, negative)} dump(t, {size}); }}
}}""")
    source = "\n".join(["#include <cstdio>", '#include "nnet_utils/nnet_activation.h"',
                        "template <class T> void dump(const T* t, int n) {",
                        "  for (int i = 0; i < n; i++) { long long c = t[i].range().to_int64();",
                        "    if (t[i].is_neg()) c -= 1LL << T::width;",
                        '    printf("%lld ", c); }', '  printf("\\n"); }', *jobs,
                        "int main() {", *(f"  job{n}::run();" for n in range(len(jobs))), "}"])
    templates = Path(hls4ml.__file__).parent / "templates" / "vivado"
    folder = TABLE_BUILD / hashlib.sha256((source + " ".join(GPP)).encode()).hexdigest()[:16]
    executable = folder / "tables"
    if not executable.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tables.cpp").write_text(source)
        subprocess.run([*GPP, f"-I{templates}", f"-I{ap_types_dir()}", str(folder / "tables.cpp"), "-o",
                        str(folder / "tables.tmp")], check=True, capture_output=True)
        (folder / "tables.tmp").replace(executable)
    lines = subprocess.run([str(executable)], check=True, capture_output=True, text=True).stdout.splitlines()
    return [np.array(line.split(), dtype=np.int64) for line in lines]


def _emulator_table(kind, size, t, address, scale, negative) -> np.ndarray:
    if kind == "exp":
        return softmax_exp_table(size, address, scale, t, negative)
    if kind == "invert":
        return softmax_invert_table(size, address, t)
    if kind == "exp_legacy":
        return legacy_exp_table(size, t)
    if kind == "invert_legacy":
        return legacy_invert_table(size, t)
    return activation_table(kind, size, t)


def test_tables_equal_the_templates_init_functions():
    """Every table (activations, softmax exp and inversion, legacy) equals g++'s run of hls4ml's init_*_table, for
    48-bit table types that show every float rounding step, saturating and wrapping ones, 1/0 included."""
    for job, reference in zip(TABLE_JOBS, _reference_tables(), strict=True):
        emulated = _emulator_table(*job)
        bad = np.flatnonzero(emulated != reference)
        assert bad.size == 0, f"{job}: {bad.size} entries differ, first at {bad[0]}: g++ {reference[bad[0]]} " \
                              f"emulator {emulated[bad[0]]}"
