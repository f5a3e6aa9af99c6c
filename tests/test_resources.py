"""Resource estimates: Yosys synthesizes the generated RTL for UltraScale+ and the cells are counted."""

import shutil

import numpy as np
import pytest

from emulator.fixed_type import FixedType
from emulator.manifest import Layer, Manifest, Tensor
from firmware import resources

T = FixedType.parse


def small_dense() -> Manifest:
    """4 -> 2 dense layer with 6-bit weights; its two 10-bit outputs are registered."""
    rng = np.random.default_rng(0)
    layer = Layer("fc", "dense", ["x"], (2,), T("ap_fixed<10,5,AP_RND,AP_SAT>"),
                  {"weight": T("ap_fixed<6,2>"), "bias": T("ap_fixed<6,2>"), "accum": T("ap_fixed<16,8>")},
                  {"n_in": 4, "n_out": 2},
                  {"weight": rng.integers(-32, 32, size=(4, 2)), "bias": rng.integers(-32, 32, size=2)})
    return Manifest("small_dense", [Tensor("x", (4,), T("ap_fixed<8,4>"))], [layer], ["fc"])


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys is not installed (apt-get install yosys)")
def test_yosys_counts_logic_and_the_output_registers(tmp_path):
    estimate = resources.estimate(small_dense(), build_dir=tmp_path)
    assert estimate.latency_cycles == 1
    assert estimate.lut + estimate.dsp > 0, "a dense layer with non-zero weights needs logic"
    assert estimate.ff >= 2 * 10 + 1, "both 10-bit outputs and the valid bit are registered"
    assert resources.estimate(small_dense(), build_dir=tmp_path) == estimate, "second call reads the cache"
    table = resources.format_table({"small_dense": estimate})
    assert "| small_dense |" in table and "5 ns" in table


def test_missing_yosys_is_named_with_its_install_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(resources.YosysError, match="apt-get install yosys"):
        resources.estimate(small_dense(), build_dir=tmp_path)
    assert resources.main(["--model", "dnn_vae_ptq8", "--build-dir", str(tmp_path)]) == 2
    assert "yosys is not installed" in capsys.readouterr().err
