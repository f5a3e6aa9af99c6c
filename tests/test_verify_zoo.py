"""`verify` certifies every zoo model on all three paths (C-sim reference, emulator, Verilator RTL) on 10,000 events."""

import json

import pytest

from models import zoo
from verify.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.NAMES)
def test_zoo_model_is_certified(name, tmp_path, capsys):
    assert (zoo.model_dir(name) / "metadata.json").is_file(), f"zoo model {name} is missing: python -m models.zoo build"
    out = tmp_path / name
    code = main(["--quiet", "--model", name, "--events", "10000", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["content_hash"] == zoo.metadata(name)["manifest_content_hash"]
    assert [report["paths"][p]["status"] for p in ("emulator", "csim", "rtl")] == ["passed", "reference", "passed"]
    assert report["determinism"]["status"] == "passed"
    assert report["paths"]["rtl"]["decision_disagreements"] == 0
    assert report["paths"]["emulator"]["events"] == report["paths"]["rtl"]["events"] == 10000
