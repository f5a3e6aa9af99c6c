"""`verify` on a user's own model (--keras PATH --config PATH): a small autoencoder with the MSE score head and
explicit precisions, built here (no zoo needed). Certified on the emulator and the real C-simulation; a fault
injected into the emulator's copy of the manifest makes it exit 1 naming the first differing layer and event.
`small_model` is shared by the other verify tests."""

import json

import numpy as np
import pytest

from verify.cli import main

INPUT_TYPE = "fixed<18,12,RND_CONV,SAT>"
THRESHOLD = 1_000_000


def small_model(folder):
    """(model.h5, hls_config.json) of a 57 -> BN -> 12 -> LeakyReLU -> 57 autoencoder scored by MSE; seeded weights."""
    import hls4ml
    from tensorflow import keras

    from firmware.hls4ml_extensions import register
    from models.heads import MSEHead

    register()
    events = keras.layers.Input((57,), name="events")
    norm = keras.layers.BatchNormalization(name="norm")(events)
    hidden = keras.layers.LeakyReLU(alpha=0.25, name="act")(keras.layers.Dense(12, name="enc")(norm))
    score = MSEHead(name="score")([norm, keras.layers.Dense(57, name="dec")(hidden)])
    model = keras.Model(events, score)
    rng = np.random.default_rng(12)
    for layer in model.layers:
        if layer.weights:
            values = [rng.normal(0.0, 0.4, size=w.shape) for w in layer.weights]
            if layer.name == "norm":
                values = [rng.uniform(0.02, 0.5, 57), rng.normal(0, 0.1, 57), np.zeros(57), np.ones(57)]
            layer.set_weights(values)
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", default_precision="fixed<16,6>")
    precisions = {
        "events": {"result": INPUT_TYPE},
        "norm": {"scale": "fixed<12,2>", "bias": "fixed<10,2>", "result": "fixed<16,6,RND,SAT>"},
        "enc": {"weight": "fixed<8,2>", "bias": "fixed<8,2>", "accum": "fixed<28,12>", "result": "fixed<16,6,RND,SAT>"},
        "act": {"param": "fixed<12,2>", "result": "fixed<16,6,RND,SAT>"},
        "dec": {"weight": "fixed<8,2>", "bias": "fixed<8,2>", "accum": "fixed<26,10>", "result": "fixed<16,6,RND,SAT>"},
        "score": {"diff": "fixed<18,8,RND,SAT>", "square": "fixed<24,14,RND,SAT>", "accum": "fixed<30,16,RND,SAT>",
                  "result": "fixed<30,16,RND,SAT>"},
    }
    for name, layer_config in config["LayerName"].items():  # hls4ml adds <dense>_linear for dense layers
        dense = name.removesuffix("_linear")
        layer_config["Precision"] = dict(precisions[name] if name == dense else {"result": precisions[dense]["result"]})
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.h5", include_optimizer=False)
    (folder / "hls_config.json").write_text(json.dumps(config, indent=1, default=str))
    return folder / "model.h5", folder / "hls_config.json"


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    return small_model(tmp_path_factory.mktemp("user-model"))


def verify(capsys, *args):
    code = main(["--quiet", *map(str, args)])
    return code, capsys.readouterr()


def test_user_model_is_certified_on_emulator_and_csim(capsys, tmp_path, user_model):
    keras_path, config_path = user_model
    out = tmp_path / "report"
    code, captured = verify(capsys, "--keras", keras_path, "--config", config_path, "--threshold", THRESHOLD,
                            "--events", 3000, "--shard-size", 1024, "--jobs", 2, "--skip-rtl", "--vectors", 100,
                            "--build-dir", tmp_path / "build", "--out", out)
    assert code == 0, captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["reference"] == "csim"
    assert report["paths"]["emulator"]["status"] == "passed"
    assert report["paths"]["emulator"]["differing_codes"] == 0 and report["paths"]["emulator"]["events"] == 3000
    assert report["paths"]["rtl"]["status"] == "skipped"
    assert report["model"]["threshold_code"] == THRESHOLD
    triggered = report["paths"]["csim"]["triggered"]
    assert 0 < triggered < 3000, "the threshold should split the events, so that decisions are really compared"
    assert report["paths"]["emulator"]["triggered"] == triggered
    assert (out / "score_distribution.png").stat().st_size > 0
    assert "CERTIFIED" in captured.out
    vectors = out / "vectors"
    assert len((vectors / "input_codes.txt").read_text().splitlines()) == 100


def test_broken_emulator_exits_1_naming_the_first_mismatch(capsys, tmp_path, user_model):
    keras_path, config_path = user_model
    out = tmp_path / "report"
    # weight (14, 3) of `enc`: input 14 is an electron's phi, zero in many events, so the first events may agree
    code, captured = verify(capsys, "--keras", keras_path, "--config", config_path, "--events", 2000, "--skip-rtl",
                            "--inject-fault", "emulator:enc:weight:171:+25", "--build-dir", tmp_path / "build",
                            "--out", out)
    assert code == 1, captured.err
    report = json.loads((out / "report.json").read_text())
    first = report["first_mismatch"]
    assert report["verdict"] == "mismatch" and report["paths"]["emulator"]["status"] == "failed"
    assert first["path"] == "emulator" and first["reference"] == "csim"
    assert first["layer"]["name"] == "enc" and first["layer"]["neuron"] == 3
    assert first["layer"]["expected"] != first["layer"]["observed"]
    assert len(first["layer"]["expected_binary"]) == 16
    differing = report["paths"]["emulator"]["differing_events"]
    assert 0 < differing <= 2000
    assert report["layer_bit_differences"]["enc"]["codes"] > 0
    assert (out / "layer_bit_differences.png").is_file()
    text = captured.out
    assert f"event {first['event']}" in text and "'enc' (dense), neuron 3" in text
    assert "0b" + first["layer"]["expected_binary"] in text and "ap_fixed<16,6,AP_RND,AP_SAT>" in text
    assert report["injected_faults"] == ["emulator:enc:weight:171:+25"]


def test_nondeterministic_emulator_fails_the_determinism_check(capsys, tmp_path, user_model):
    keras_path, config_path = user_model
    out = tmp_path / "report"
    code, captured = verify(capsys, "--keras", keras_path, "--config", config_path, "--events", 1500, "--skip-csim",
                            "--skip-rtl", "--inject-fault", "determinism:dec:bias:5:-3",
                            "--build-dir", tmp_path / "build", "--out", out)
    assert code == 1, captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["determinism"]["status"] == "failed"
    assert report["paths"]["emulator"]["status"] == "reference"
    first = report["first_mismatch"]
    assert first["path"] == "determinism" and first["event"] == 0
    assert first["layer"]["name"] == "dec" and first["layer"]["neuron"] == 5


def test_broken_rtl_exits_1_and_is_not_traced(capsys, tmp_path, user_model):
    keras_path, config_path = user_model
    out = tmp_path / "report"
    code, captured = verify(capsys, "--keras", keras_path, "--config", config_path, "--events", 200, "--skip-csim",
                            "--sim", "icarus", "--inject-fault", "rtl:dec:bias:2:+7", "--out", out)
    assert code == 1, captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["reference"] == "emulator" and report["paths"]["csim"]["status"] == "skipped"
    assert report["paths"]["rtl"]["status"] == "failed" and report["paths"]["rtl"]["simulator"] == "icarus"
    assert report["paths"]["rtl"]["latency_cycles"] >= 1 and report["paths"]["rtl"]["ii_cycles"] == 1
    first = report["first_mismatch"]
    assert first["path"] == "rtl" and first["output"] == "score" and "layer" not in first
    assert "no per-layer trace" in first["note"]
