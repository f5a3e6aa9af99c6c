"""Precision planning: every hls4ml precision explicit, accumulators <= 32 bits, products <= 62 bits; a PTQ/QAT
smoke test of the bit-width scan through hls4ml and the emulator."""

import json

import numpy as np
import pytest

from emulator.fixed_type import FixedType
from models import compress
from models.architectures import Preprocessing, Quantization, build, deployed_model
from models import train as training
from models.train import TrainConfig, training_events


def test_integer_bits():
    assert compress.integer_bits(1.5) == 2  # [-2, 2)
    assert compress.integer_bits(2.0) == 3  # 2 itself must fit
    assert compress.integer_bits(0.3) == 0  # [-0.5, 0.5)
    assert compress.integer_bits(3.0, signed=False) == 2
    assert compress.integer_bits(1e-9) == compress.MIN_INTEGER


@pytest.fixture(scope="module")
def data():
    x_train, _ = training_events(2048, 16)
    return x_train


@pytest.mark.parametrize("architecture,bits", [("dnn_vae", None), ("cnn_ae", 4)])
def test_config_is_fully_explicit(architecture, bits, data, tmp_path):
    model = build(architecture, Preprocessing.fit(data), Quantization(bits) if bits else None)
    deployed = deployed_model(model, architecture)
    scheme = compress.Scheme(bits or 8, qat=bool(bits))
    quantized = compress.quantize(deployed, data, scheme, tmp_path / "hls", architecture)
    text = json.dumps(quantized.config)
    assert "auto" not in text.lower()
    for layer in quantized.manifest.layers:
        if "accum" in layer.types:
            assert layer.types["accum"].width <= 32
        if "weight" in layer.types:
            assert quantized.manifest.producer_type(layer.inputs[0]).width + layer.types["weight"].width <= 62
    assert quantized.manifest.input.type == FixedType(18, 12, True, "RND_CONV", "SAT")
    if bits:  # QAT weights keep the quantizer's type
        dense = quantized.manifest.layer("latent")
        assert dense.types["weight"] == FixedType(4, 2)


def test_a_config_left_auto_is_refused(data):
    deployed = deployed_model(build("dnn_ae", Preprocessing.fit(data)), "dnn_ae")
    plan = compress.plan_precisions(deployed, compress.layer_ranges(deployed, data), compress.Scheme(8, False))
    del plan["enc_dense1"]
    with pytest.raises(compress.PrecisionError, match="enc_dense1"):
        compress.hls_config(deployed, plan)


@pytest.mark.slow
def test_scan_smoke(data, tmp_path):
    x_train, x_val = training_events(2048, 512)
    test = training.test_events(4096, 512)
    results = compress.scan("dnn_ae", [6], x_train, x_val, test, TrainConfig(epochs=1, prune=False, batch_size=256),
                            tmp_path / "hls", calibration=1024)
    assert set(results["ptq"]) == {6} and set(results["qat"]) == {6}
    for figures in (results["float"], results["ptq"][6], results["qat"][6]):
        assert all(0.0 <= f["auc"] <= 1.0 for f in figures.values())
    png = compress.plot_scan(results, tmp_path / "scan.png", "smoke")
    assert png.read_bytes()[:4] == b"\x89PNG"
