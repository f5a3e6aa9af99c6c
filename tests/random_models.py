"""Random small Keras models with random explicit fixed-point precisions, converted by hls4ml, for differential
tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from emulator.fixed_type import OVERFLOW_MODES, ROUNDING_MODES, FixedType

BUILD = Path(__file__).resolve().parents[1] / "build" / "random-models"


@st.composite
def fixed_types(draw, min_width=3, max_width=18, allow_unsigned=True):
    """Any ap_fixed/ap_ufixed with every rounding mode and every overflow mode hls4ml can express, 1 to width
    integer bits.

    Integer bits below 1 or above the width are covered by the arithmetic harness against g++ (test_arith_vs_ap_types):
    hls4ml's C-sim aborts inside ap_private when a cast drops more fractional bits than its source is wide, which such
    types make possible inside the layers.
    """
    width = draw(st.integers(min_width, max_width))
    integer = draw(st.integers(1, width))
    signed = draw(st.booleans()) if allow_unsigned else True
    overflow_modes = tuple(m for m in OVERFLOW_MODES if m != "WRAP_SM")  # hls4ml's SaturationMode has no WRAP_SM
    return FixedType(width, integer, signed, draw(st.sampled_from(ROUNDING_MODES)),
                     draw(st.sampled_from(overflow_modes)))


def hls_precision(t: FixedType) -> str:
    """The hls4ml configuration spelling of a type."""
    return (str(t) if (t.rounding, t.overflow) != ("TRN", "WRAP")
            else f"{'' if t.signed else 'u'}fixed<{t.width},{t.integer}>")


def random_weights(rng, model, zero_fraction=0.2, scale=1.0):
    """Give every layer random weights, some exactly zero; BatchNorm variances positive."""
    for layer in model.layers:
        new = []
        for w in layer.weights:
            values = rng.normal(0.0, scale, size=w.shape)
            values[rng.random(w.shape) < zero_fraction] = 0.0
            if "moving_variance" in w.name:
                values = rng.uniform(0.2, 3.0, size=w.shape)
            new.append(values.astype(np.float32))
        if new:
            layer.set_weights(new)


def stimulus(rng, n_events, shape, lsb, span):
    """Events mixing ordinary values, exact rounding ties on the input grid, and magnitudes that overflow."""
    size = int(np.prod(shape))
    normal = rng.normal(0.0, span / 4, size=(n_events, size))
    ties = (rng.integers(-(2**12), 2**12, size=(n_events, size)) + 0.5) * lsb
    huge = rng.choice([-1.0, 1.0], size=(n_events, size)) * rng.uniform(span, 8 * span, size=(n_events, size))
    pick = rng.random((n_events, size))
    x = np.where(pick < 0.6, normal, np.where(pick < 0.85, ties, huge))
    return x.reshape((n_events, *shape))


def convert_and_compile(keras_model, layer_precisions: dict, tag: str, backend: str = "Vivado", compiled: bool = True,
                        layer_settings: dict | None = None):
    """Convert with hls4ml (io_parallel, Latency), every precision explicit, trace on; compile the C-sim (or leave
    that to the first `hls_model.trace`, which compiles it again anyway, with `compiled=False`).
    `layer_settings`: further hls4ml layer configuration by layer name (e.g. TableSize, Implementation)."""
    import hls4ml

    config = hls4ml.utils.config_from_keras_model(keras_model, granularity="name", backend=backend)
    config["Model"]["Strategy"] = "Latency"
    for name, layer_config in config["LayerName"].items():
        layer_config["Trace"] = True
        if name in layer_precisions:
            layer_config["Precision"] = {k: hls_precision(v) for k, v in layer_precisions[name].items()}
        layer_config.update((layer_settings or {}).get(name, {}))
    digest = hashlib.sha256(
        (json.dumps(config, sort_keys=True, default=str) + keras_model.to_json()
         + "".join(w.tobytes().hex() for w in keras_model.get_weights())).encode()
    ).hexdigest()[:16]
    hls_model = hls4ml.converters.convert_from_keras_model(
        keras_model, hls_config=config, output_dir=str(BUILD / f"{tag}-{digest}"), backend=backend,
        io_type="io_parallel", part="xcvu9p-flgb2104-2-e",
    )
    if compiled:
        hls_model.compile()
    return hls_model


def trace_codes(hls_model, manifest, x) -> dict:
    """hls4ml's own C-sim trace of every manifest layer, turned into raw codes; fails if a value is off the grid.
    `x`: the events, or a list of them per input (in the manifest's input order) for a model with several."""
    several = isinstance(x, (list, tuple))
    _, trace = hls_model.trace([np.ascontiguousarray(a, dtype=np.float64) for a in x] if several
                               else np.ascontiguousarray(x, dtype=np.float64))
    n_events = len(x[0]) if several else len(x)
    codes = {}
    for layer in manifest.layers:
        if layer.name not in trace:
            if layer.op == "reshape" and layer.inputs[0] in codes:  # hls4ml's reshape is in place: no copy, no trace
                assert layer.result == manifest.producer_type(layer.inputs[0])
                codes[layer.name] = codes[layer.inputs[0]]
            continue
        values = np.asarray(trace[layer.name], dtype=np.float64).reshape(n_events, -1)
        scaled = values * 2.0 ** layer.result.fractional
        assert np.array_equal(scaled, np.round(scaled)), f"{layer.name}: traced value off the {layer.result} grid"
        codes[layer.name] = scaled.astype(np.int64)
    return codes


def assert_traces_equal(hls_model, emulator, x):
    """The emulator's trace equals the compiled C-sim's at every layer of the manifest, code for code."""
    expected = trace_codes(hls_model, emulator.manifest, x)
    observed = emulator.trace(x)
    untraced = {layer.name: layer.op for layer in emulator.manifest.layers if layer.name not in expected}
    assert not untraced, f"layers not traced by the C-sim: {untraced}"
    for layer in emulator.manifest.layers:
        bad = np.argwhere(expected[layer.name] != observed[layer.name])
        assert bad.size == 0, (
            f"{layer.name} ({layer.op}, result {layer.result}, types {({k: str(v) for k, v in layer.types.items()})}): "
            f"{len(bad)} mismatches; first at event {bad[0][0]} element {bad[0][1]}: "
            f"C-sim {expected[layer.name][tuple(bad[0])]} emulator {observed[layer.name][tuple(bad[0])]}"
        )
