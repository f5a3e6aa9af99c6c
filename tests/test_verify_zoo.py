"""`verify` certifies every zoo model on all three paths (C-sim reference, emulator, RTL) on Verilator and Icarus.

The default run: 200 events on Icarus per model and 10,000 on Verilator for the dense models (the CNNs' Verilator
builds take minutes; their RTL is co-simulated on Icarus here and in testbench/). `make regression` runs the full
campaign: 100,000 events on Verilator and 1,000 on Icarus per model (about 10 minutes on 2 cores).
"""

import json

import pytest

from models import zoo
from verify.cli import main


def campaigns():
    """(model, simulator, events) per run, marked for the default run or the regression."""
    for name in zoo.NAMES:
        quick = pytest.mark.regression if name.startswith("cnn") else pytest.mark.slow
        yield pytest.param(name, "verilator", 10_000, marks=quick, id=f"{name}-verilator-10k")
        yield pytest.param(name, "icarus", 200, marks=pytest.mark.slow, id=f"{name}-icarus-200")
        yield pytest.param(name, "verilator", 100_000, marks=pytest.mark.regression, id=f"{name}-verilator-100k")
        yield pytest.param(name, "icarus", 1_000, marks=pytest.mark.regression, id=f"{name}-icarus-1k")


@pytest.mark.parametrize("name, simulator, events", list(campaigns()))
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
