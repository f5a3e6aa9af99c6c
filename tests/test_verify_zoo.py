"""`verify` certifies every zoo model on all three paths (C-sim reference, emulator, RTL) on Verilator and Icarus.

The default run: 10,000 events on Verilator and 200 on Icarus per model. `make regression` runs the full campaign:
100,000 events on Verilator and 1,000 on Icarus per model (about 10 minutes on 2 cores).
"""

import json

import pytest

from models import zoo
from verify.cli import main

CAMPAIGNS = [
    pytest.param("verilator", 10_000, marks=pytest.mark.slow, id="verilator-10k"),
    pytest.param("icarus", 200, marks=pytest.mark.slow, id="icarus-200"),
    pytest.param("verilator", 100_000, marks=pytest.mark.regression, id="verilator-100k"),
    pytest.param("icarus", 1_000, marks=pytest.mark.regression, id="icarus-1k"),
]


@pytest.mark.parametrize("simulator, events", CAMPAIGNS)
@pytest.mark.parametrize("name", zoo.NAMES)
def test_zoo_model_is_certified(name, simulator, events, tmp_path, capsys):
    assert (zoo.model_dir(name) / "metadata.json").is_file(), f"zoo model {name} is missing: python -m models.zoo build"
    out = tmp_path / name
    code = main(["--quiet", "--model", name, "--events", str(events), "--sim", simulator, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["content_hash"] == zoo.metadata(name)["manifest_content_hash"]
    assert [report["paths"][p]["status"] for p in ("emulator", "csim", "rtl")] == ["passed", "reference", "passed"]
    assert report["paths"]["rtl"]["simulator"] == simulator
    assert report["paths"]["rtl"]["ii_cycles"] == 1
    assert report["determinism"]["status"] == "passed"
    assert report["paths"]["rtl"]["decision_disagreements"] == 0
    assert report["paths"]["emulator"]["events"] == report["paths"]["rtl"]["events"] == events
