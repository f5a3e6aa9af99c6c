"""The committed zoo artefacts are consistent: manifest, hash, explicit configuration, threshold and metrics."""

import hashlib
import json

import numpy as np
import pytest

from emulator import Emulator, Manifest
from models import zoo
from models.data.generator import generate


@pytest.fixture(scope="module", params=zoo.NAMES)
def entry(request):
    name = request.param
    return name, zoo.model_dir(name), zoo.metadata(name)


def test_manifest_hash_matches_metadata(entry):
    name, folder, meta = entry
    manifest = Manifest.load(folder / "manifest.json")
    assert manifest.content_hash == meta["manifest_content_hash"]
    assert str(manifest.layer(manifest.outputs[0]).result) == meta["threshold"]["score_type"]


def test_config_has_no_auto(entry):
    _, folder, _ = entry
    text = (folder / "hls_config.json").read_text()
    json.loads(text)
    assert "auto" not in text.lower()


def test_emulator_reproduces_the_stored_scores_and_threshold(entry):
    name, folder, meta = entry
    check, threshold = meta["check"], meta["threshold"]
    events = generate("background", check["events"], check["generator_seed"]).reshape(check["events"], -1)
    codes = Emulator(Manifest.load(folder / "manifest.json")).predict(events).code.ravel()
    assert hashlib.sha256(np.ascontiguousarray(codes, dtype="<i8").tobytes()).hexdigest() == check["score_codes_sha256"]
    assert int(np.count_nonzero(codes > threshold["code"])) == check["above_threshold"]
    assert threshold["background_events"] >= 1_000_000
    assert threshold["measured_fpr"] <= threshold["target_fpr"]


def test_metrics_state_the_data_source(entry):
    _, folder, _ = entry
    record = json.loads((folder / "metrics.json").read_text())
    assert record["data"] == "synthetic, built-in generator"
    for kind in ("float", "quantized"):
        assert set(record["figures"][kind]) == {"leptoquark", "Ato4l", "hToTauTau", "hChToTauNu"}
