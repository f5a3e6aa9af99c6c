"""The batched C-simulation runner against hls4ml's own compiled C-simulation (predict and trace), its compile cache,
and its errors. The model has two inputs and two outputs and runs dense, batchnorm, leaky ReLU, ReLU and the MSE
head."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from tensorflow import keras

from emulator.fixed_type import FixedType
from firmware.csim import CSim, CSimInputError
from firmware.hls4ml_extensions import register
from firmware.hls_project import CSimError, convert
from models.heads import MSEHead

BUILD = Path(__file__).resolve().parents[1] / "build" / "tests" / "csim-runner"
N_EVENTS = 300
PRECISION = "fixed<16,6>"


def two_way_model():
    in_a, in_b = keras.layers.Input((8,), name="in_a"), keras.layers.Input((6,), name="in_b")
    a = keras.layers.Dense(8, name="fc_a")(in_a)
    a = keras.layers.BatchNormalization(name="bn_a")(a)
    a = keras.layers.LeakyReLU(alpha=0.25, name="lrelu_a")(a)
    b = keras.layers.Dense(8, activation="relu", name="fc_b")(in_b)
    model = keras.Model([in_a, in_b], [MSEHead(name="dist")([a, b]), keras.layers.Dense(3, name="proj")(a)])
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if layer.weights:
            values = [rng.normal(0.0, 0.8, size=w.shape) for w in layer.weights]
            if layer.name == "bn_a":
                values[3] = rng.uniform(0.3, 2.0, size=values[3].shape)
            layer.set_weights(values)
    return model


def explicit_config(model, precision=PRECISION):
    """hls4ml's per-layer configuration with every 'auto' precision replaced by `precision`."""
    import hls4ml

    register()
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", default_precision=precision)
    for layer in config["LayerName"].values():
        for role, value in layer.get("Precision", {}).items():
            if value == "auto":
                layer["Precision"][role] = precision
    config["LayerName"]["dist"]["Precision"].update(accum="fixed<20,10,RND,SAT>", square="fixed<20,10,RND,SAT>")
    return config


@pytest.fixture(scope="module")
def project():
    """(hls4ml model, CSim of its project)."""
    model = two_way_model()
    hls_model = convert(model, explicit_config(model), BUILD / "project")
    return hls_model, CSim(hls_model)


@pytest.fixture(scope="module")
def codes(project):
    _, csim = project
    rng = np.random.default_rng(11)
    small = rng.random((N_EVENTS, 1)) < 0.7  # most events within +-1, the rest over the whole range (overflows)
    return [np.where(small, rng.integers(-(1 << 10), 1 << 10, size=(N_EVENTS, p.size)),
                     rng.integers(p.type.min_code, p.type.max_code + 1, size=(N_EVENTS, p.size)))
            for p in csim.interface.inputs]


@pytest.fixture(scope="module")
def hls4ml_results(project, codes):
    """hls4ml's own C-simulation of the codes as floats: (predict outputs, trace); one hls4ml compile (by trace)."""
    hls_model, csim = project
    floats = [to_floats(c, p.type) for c, p in zip(codes, csim.interface.inputs)]
    _, trace = hls_model.trace(floats)
    return hls_model.predict(floats), trace


def to_floats(codes, t: FixedType):
    return np.ascontiguousarray(codes * 2.0**-t.fractional, dtype=np.float64)


def to_codes(values, t: FixedType):
    codes = np.asarray(values, dtype=np.float64) * 2.0**t.fractional
    assert np.array_equal(codes, np.round(codes)), "hls4ml returned a value off its type's grid"
    return codes.astype(np.int64)


def test_run_matches_hls4ml_predict(project, codes, hls4ml_results):
    _, csim = project
    expected, _ = hls4ml_results
    observed = csim.run(codes)
    assert list(observed) == [p.name for p in csim.interface.outputs] == ["dist", "proj"]
    for port, values in zip(csim.interface.outputs, expected):
        reference = to_codes(values, port.type).reshape(N_EVENTS, port.size)
        assert np.array_equal(observed[port.name], reference), f"output {port.name} differs from hls4ml's predict"
    assert len(np.unique(observed["dist"])) > 50


def test_trace_matches_hls4ml_trace(project, codes, hls4ml_results):
    _, csim = project
    _, expected = hls4ml_results
    observed = csim.trace(codes)
    assert set(observed) == set(expected) >= {"fc_a", "bn_a", "lrelu_a", "fc_b", "dist", "proj"}
    for port in csim.interface.traced:
        reference = to_codes(expected[port.name], port.type).reshape(N_EVENTS, port.size)
        assert np.array_equal(observed[port.name], reference), f"layer {port.name} differs from hls4ml's trace"


def test_run_and_trace_outputs_agree(project, codes):
    _, csim = project
    run, trace = csim.run(codes), csim.trace(codes)
    for name in ("dist", "proj"):
        assert np.array_equal(run[name], trace[name])


def test_threads_give_the_same_codes(project):
    _, csim = project
    rng = np.random.default_rng(4)
    many = [rng.integers(-(1 << 12), 1 << 12, size=(4500, p.size)) for p in csim.interface.inputs]
    single, shared = csim.run(many, threads=1), csim.run(many, threads=3)
    for name in single:
        assert np.array_equal(single[name], shared[name])


def test_cache_reuses_the_compiled_library(project):
    _, csim = project
    mtime = csim.library.path.stat().st_mtime_ns
    again = CSim(BUILD / "project")
    assert not again.library.compiled
    assert again.library.path == csim.library.path
    assert again.library.path.stat().st_mtime_ns == mtime


def test_changed_firmware_source_is_recompiled_and_errors_are_reported(project, tmp_path):
    """A copy of the project with a broken header misses the cache and fails with the compiler's message."""
    broken = tmp_path / "project"
    shutil.copytree(BUILD / "project", broken, ignore=shutil.ignore_patterns("*.so"))
    parameters = broken / "firmware" / "parameters.h"
    parameters.write_text("#error deliberately broken header\n" + parameters.read_text())
    with pytest.raises(CSimError, match="deliberately broken header"):
        CSim(broken, cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir()), "a failed build left a cache entry"


def test_missing_compiler_is_reported(project, tmp_path):
    with pytest.raises(CSimError, match="g\\+\\+ was not found on PATH"):
        CSim(BUILD / "project", env={**os.environ, "PATH": str(tmp_path)})


def test_bad_input_codes_are_refused(project, codes):
    _, csim = project
    with pytest.raises(CSimInputError, match="2 inputs"):
        csim.run(codes[0])
    with pytest.raises(CSimInputError, match="must be integers"):
        csim.run([codes[0] * 0.5, codes[1]])
    with pytest.raises(CSimInputError, match=r"expected shape \(N, 6\)"):
        csim.run([codes[0], codes[0]])
    with pytest.raises(CSimInputError, match="outside"):
        csim.run([codes[0] + 2**15, codes[1]])
    with pytest.raises(CSimInputError, match="different numbers of events"):
        csim.run([codes[0], codes[1][:-1]])


def test_unsupported_keras_layer_is_reported(tmp_path):
    x = keras.layers.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Lambda(lambda t: 2 * t, name="doubler")(x))
    with pytest.raises(CSimError, match="'doubler' of Keras class Lambda is not supported"):
        convert(model, {"Model": {"Precision": PRECISION}}, tmp_path / "project")


def test_io_stream_project_is_refused(tmp_path):
    import hls4ml

    x = keras.layers.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(2, name="fc")(x))
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config={"Model": {"Precision": PRECISION, "ReuseFactor": 1}}, output_dir=str(tmp_path / "p"),
        io_type="io_stream")
    with pytest.raises(CSimError, match="io_stream"):
        CSim(hls_model)


def test_trace_needs_trace_hooks(tmp_path):
    """A project hls4ml wrote without tracing runs, but refuses to trace."""
    import hls4ml

    x = keras.layers.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(2, name="fc")(x))
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config={"Model": {"Precision": PRECISION, "ReuseFactor": 1}}, output_dir=str(tmp_path / "p"),
        io_type="io_parallel")
    csim = CSim(hls_model)
    assert csim.run(np.zeros((2, 4), dtype=np.int64)).shape == (2, 2)
    with pytest.raises(CSimError, match="without trace hooks"):
        csim.trace(np.zeros((2, 4), dtype=np.int64))
