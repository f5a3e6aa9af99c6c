"""The `verify` command's exit codes and messages for bad input and missing tools, and skipped paths reported as
skipped; each run is in-process and skips the paths it does not need, so these take seconds."""

import json

import h5py
import numpy as np
import pytest

from models import zoo
from models.data import generate_range, write_published_h5
from verify.cli import main

MODEL = "dnn_ae_qat8"
needs_zoo = pytest.mark.skipif(not (zoo.model_dir(MODEL) / "metadata.json").is_file(), reason=f"zoo {MODEL} not built")


def run(capsys, *args):
    code = main(["--quiet", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_teaches_exit_codes(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "exit status" in out and "0  certified" in out and "1  mismatch" in out and "2  usage" in out
    assert "--inject-fault" not in out


def test_missing_model_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "--model", "no_such_model", "--out", tmp_path)
    assert code == 2
    assert "unknown model 'no_such_model'" in err and "dnn_vae_ptq8" in err


def test_missing_keras_file_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "--keras", tmp_path / "absent.h5", "--config", tmp_path / "absent.json",
                       "--out", tmp_path)
    assert code == 2
    assert "Keras model file not found" in err


def test_bad_numbers_are_usage_errors(capsys, tmp_path):
    assert run(capsys, "--model", MODEL, "--events", 0, "--out", tmp_path)[0] == 2
    assert run(capsys, "--model", MODEL, "--rtl", tmp_path, "--skip-rtl", "--out", tmp_path)[0] == 2
    code, _, err = run(capsys, "--model", MODEL, "--coverage-mutant-seconds", -1, "--out", tmp_path)
    assert code == 2 and "--coverage-mutant-seconds must be at least 0" in err
    code, _, err = run(capsys, "--model", MODEL, "--inject-fault", "emulator:nolayer", "--out", tmp_path)
    assert code == 2 and "TARGET:LAYER:TENSOR:INDEX:DELTA" in err


@needs_zoo
def test_nan_events_are_rejected_by_index(capsys, tmp_path):
    events = generate_range("background", 0, 20, seed=5)
    path = tmp_path / "events.h5"
    write_published_h5(path, events)
    with h5py.File(path, "r+") as handle:
        handle["Particles"][7, 2, 0] = np.nan
        handle["Particles"][13, 0, 2] = np.inf
    code, _, err = run(capsys, "--model", MODEL, "--data", path, "--skip-csim", "--skip-rtl", "--out", tmp_path / "r")
    assert code == 2
    assert "NaN or infinite values in events 7, 13" in err


@needs_zoo
def test_a_shards_bad_events_are_named_by_their_index_in_the_run():
    from emulator.manifest import Manifest
    from models.data import DataError
    from verify.shard import input_codes

    manifest = Manifest.load(zoo.model_dir(MODEL) / "manifest.json")
    events = np.zeros((6, manifest.input.size))
    events[[1, 4], 3] = [np.nan, -np.inf]
    with pytest.raises(DataError, match=r"2 event\(s\) contain NaN or infinity, .*: events 1001, 1004$"):
        input_codes(events, manifest, 1000)
    with pytest.raises(DataError, match=rf"expected \(N, {manifest.input.size}\)"):
        input_codes(np.zeros((6, manifest.input.size + 1)), manifest, 1000)
    assert input_codes(events[[0, 2]], manifest, 1000).shape == (2, manifest.input.size)


@needs_zoo
def test_corrupt_and_missing_hdf5_are_usage_errors(capsys, tmp_path):
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    code, _, err = run(capsys, "--model", MODEL, "--data", corrupt, "--skip-csim", "--skip-rtl",
                       "--out", tmp_path / "r")
    assert code == 2 and "not a readable HDF5 file" in err
    code, _, err = run(capsys, "--model", MODEL, "--data", tmp_path / "nothing", "--skip-csim", "--skip-rtl",
                       "--out", tmp_path / "r")
    assert code == 2 and "not found" in err


@needs_zoo
def test_wrong_shape_hdf5_is_a_usage_error(capsys, tmp_path):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("Particles", data=np.zeros((5, 57)))
    code, _, err = run(capsys, "--model", MODEL, "--data", path, "--skip-csim", "--skip-rtl", "--out", tmp_path / "r")
    assert code == 2 and "has shape (5, 57)" in err


@needs_zoo
def test_missing_simulator_is_an_environment_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no iverilog, vvp or g++ on PATH
    code, _, err = run(capsys, "--model", MODEL, "--sim", "icarus", "--skip-csim", "--events", 10, "--out", tmp_path)
    assert code == 2 and "iverilog" in err and "apt-get install" in err
    code, _, err = run(capsys, "--model", MODEL, "--skip-rtl", "--events", 10, "--out", tmp_path)
    assert code == 2 and "g++" in err and "--skip-csim" in err


@needs_zoo
def test_skipped_paths_are_reported_as_skipped(capsys, tmp_path):
    out = tmp_path / "report"
    code, stdout, _ = run(capsys, "--model", MODEL, "--events", 600, "--shard-size", 250, "--skip-csim", "--skip-rtl",
                          "--out", out)
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "l1ad-verify-report" and report["version"] == 1
    assert report["paths"]["csim"] == {"status": "skipped", "reason": "--skip-csim"}
    assert report["paths"]["rtl"]["status"] == "skipped"
    assert report["paths"]["emulator"]["status"] == "reference"
    assert report["determinism"]["status"] == "passed" and report["determinism"]["events"] == 600
    assert report["data"]["note"].startswith("data: synthetic events from the built-in generator")
    assert "skipped (--skip-csim)" in stdout and "passed" not in stdout.split("csim")[1].splitlines()[0]
    assert report["data"]["note"] in (out / "report.md").read_text()
    assert report["data"]["note"] in (out / "vectors" / "vectors.json").read_text()
