"""`verify --keras ... --config ...` on the committed example models (models/examples: a dense tagger with a softmax,
a CNN with max pooling, a two-branch model with a merge): every one is certified (exit 0) on the emulator, the
C-sim and the RTL, or with the RTL path skipped for a reason the report states."""

import json

import pytest

from models.examples import NAMES, example_files
from verify.cli import main


@pytest.mark.parametrize("name", NAMES)
def test_example_model_is_certified(capsys, tmp_path, name):
    keras_path, config_path = example_files(name)
    out = tmp_path / "report"
    code = main(["--quiet", "--keras", str(keras_path), "--config", str(config_path), "--events", "500",
                 "--shard-size", "250", "--vectors", "20", "--build-dir", str(tmp_path / "build"), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "report.json").read_text())
    paths = report["paths"]
    assert report["verdict"] == "certified" and report["reference"] == "csim"
    assert paths["emulator"]["status"] == "passed" and paths["emulator"]["events"] == 500
    assert paths["rtl"]["status"] == "passed" or (paths["rtl"]["status"] == "skipped" and paths["rtl"]["reason"])
    assert report["determinism"]["status"] == "passed"
