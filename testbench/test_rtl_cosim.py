"""The generated RTL equals the emulator bit for bit on Verilator and Icarus, is lint clean, streams one event per
clock with the latency it reports; external RTL with the same ports runs through the same path; and mutated RTL
(one weight bit, one rounding mode) is caught with the first differing output named."""

import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from emulator import Emulator
from emulator.fixed_type import FixedType
from firmware.rtl.casts import function_text
from firmware.rtl.generator import generate_rtl
from firmware.rtl.lint import lint
from testbench.cosim import CosimError, cosimulate, first_mismatch
from testbench.rtl_models import dnn_vae_encoder, small_cnn, stimulus

BUILD = Path(__file__).resolve().parents[1] / "build" / "test_rtl_cosim"
MODELS = {"small_cnn": small_cnn, "dnn_vae": dnn_vae_encoder}
# Events per run: Verilator streams the DNN-VAE-sized design at ~1e5 events/s; Icarus runs a few hundred.
EVENTS = {"verilator": 100_000, "icarus": 300}


def check(manifest, simulator, n_events, **options):
    """Co-simulate n_events and assert every output code equals the emulator's; return the result."""
    codes = stimulus(manifest, n_events)
    result = cosimulate(manifest, codes, simulator=simulator, build_dir=BUILD, **options)
    expected = Emulator(manifest).predict_codes(codes).codes
    mismatch = first_mismatch(expected, result.codes)
    assert mismatch is None, f"{simulator}: {mismatch}"
    assert result.ii_cycles == 1
    print(f"{manifest.name} on {simulator}: {n_events} events, latency {result.latency_cycles} cycles, "
          f"II {result.ii_cycles}, {result.events_per_second:.0f} events/s")
    return result


@pytest.mark.parametrize("model", sorted(MODELS))
def test_generated_rtl_is_lint_clean(model, tmp_path):
    design = generate_rtl(MODELS[model](), tmp_path)
    lint(design.sources, design.top)


@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_rtl_matches_emulator(model, simulator, tmp_path):
    manifest = MODELS[model]()
    result = check(manifest, simulator, EVENTS[simulator])
    assert result.latency_cycles == generate_rtl(manifest, tmp_path).latency


@pytest.mark.parametrize("pipeline, latency", [(0, 1), (2, 4), (3, 3), (100, 1)])
def test_pipeline_depth_sets_latency(pipeline, latency, tmp_path):
    """small_cnn has 8 layers; registers after every `pipeline` of them, and at the outputs."""
    manifest = small_cnn()
    assert generate_rtl(manifest, tmp_path, pipeline=pipeline).latency == latency
    assert check(manifest, "icarus", 200, pipeline=pipeline).latency_cycles == latency


def test_external_rtl_with_partitioned_inputs(tmp_path):
    """A directory of Verilog with per-element input ports (detected from the sources) runs like generated RTL."""
    manifest = small_cnn()
    design = generate_rtl(manifest, tmp_path, pipeline=2, input_style="partitioned")
    assert "image_0_V" in design.sources[0].read_text()
    assert check(manifest, "icarus", 200, rtl_dir=tmp_path).latency_cycles == design.latency


# ---- mutations: the comparison must fail and name the first differing output --------------------------------
_PRODUCT_CONSTANT = re.compile(r"\* \$signed\((\d+)'h([0-9a-f]+)\)")
_CAST_CALL = re.compile(r"\b(cast_s(\d+)f(m?\d+)_to_([su])(\d+)f(m?\d+)_([a-z_]+))\(")
_ROUNDING = ("rnd_conv", "rnd_min_inf", "rnd_inf", "rnd_zero", "trn_zero", "rnd", "trn")
_OVERFLOW = ("sat_zero", "sat_sym", "wrap_sm", "sat", "wrap")


def _module_span(text: str, module: str) -> tuple:
    start = text.index(f"module {module} (")
    return start, text.index("endmodule", start)


def flip_weight_bit(text: str, module: str) -> str:
    """Flip the least significant bit of the first constant weight in `module`."""
    start, end = _module_span(text, module)
    m = _PRODUCT_CONSTANT.search(text, start, end)
    width, value = int(m.group(1)), int(m.group(2), 16)
    return text[:m.start()] + f"* $signed({width}'h{value ^ 1:x})" + text[m.end():]


def _number(token: str) -> int:
    return -int(token[1:]) if token.startswith("m") else int(token)


def swap_rounding(text: str, module: str, wire_stem: str, new_rounding: str) -> str:
    """In `module`, make the first wire named <wire_stem>_N call a copy of its cast function with `new_rounding`."""
    start, end = _module_span(text, module)
    body = text[start:end]
    m = _CAST_CALL.search(body, re.search(rf"wire \[\d+:0\] {wire_stem}_\d+ = ", body).end())
    _, src_width, src_frac, sign, width, frac, modes = m.groups()
    rounding, overflow = next((r, o) for r in _ROUNDING for o in _OVERFLOW if modes == f"{r}_{o}")
    assert rounding != new_rounding.lower()
    dst = FixedType(int(width), int(width) - _number(frac), sign == "s", new_rounding, overflow.upper())
    swapped = function_text(int(src_width), _number(src_frac), dst)
    new_name = re.search(r"function \[\d+:0\] (\w+);", swapped).group(1)
    header_end = body.index(");\n") + 3
    body = body[:header_end] + swapped + "\n" + body[header_end:m.start()] + new_name + body[m.end() - 1:]
    return text[:start] + body + text[end:]


MUTATIONS = {
    "weight_bit": lambda text: flip_weight_bit(text, "myproject_decode"),
    "rounding_mode": lambda text: swap_rounding(text, "myproject_mse", "mean", "TRN"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutated_rtl_is_caught(mutation, tmp_path):
    manifest = small_cnn()
    design = generate_rtl(manifest, tmp_path / "good")
    text = design.sources[0].read_text()
    mutated = MUTATIONS[mutation](text)
    assert mutated != text
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / design.sources[0].name).write_text(mutated)
    codes = stimulus(manifest, 300)
    result = cosimulate(manifest, codes, simulator="icarus", build_dir=BUILD, rtl_dir=tmp_path / "bad")
    mismatch = first_mismatch(Emulator(manifest).predict_codes(codes).codes, result.codes)
    assert mismatch is not None, f"the {mutation} mutation was not detected"
    assert mismatch.output == "mse" and mismatch.expected != mismatch.observed
    assert re.match(r"event \d+, output 'mse' element 0: expected code -?\d+, observed -?\d+", str(mismatch))
    print(f"{mutation}: {mismatch}")


def test_bad_requests_are_named(tmp_path):
    manifest = small_cnn()
    with pytest.raises(ValueError, match="pipeline must be a non-negative integer"):
        generate_rtl(manifest, tmp_path, pipeline=-1)
    with pytest.raises(ValueError, match="input_style 'wide' is not one of reshaped, partitioned"):
        generate_rtl(manifest, tmp_path, input_style="wide")
    with pytest.raises(ValueError, match=r"expected \(N, 18\) for input 'image'"):
        cosimulate(manifest, stimulus(manifest, 4)[:, :5], simulator="icarus", build_dir=BUILD)
    with pytest.raises(ValueError, match="must be int64"):
        cosimulate(manifest, stimulus(manifest, 4).astype(float), simulator="icarus", build_dir=BUILD)
    with pytest.raises(CosimError, match="no Verilog sources"):
        cosimulate(manifest, stimulus(manifest, 4), simulator="icarus", build_dir=BUILD, rtl_dir=tmp_path / "none")


def _cosimulate_in_process(seed: int, build_dir: str):
    manifest = small_cnn()
    codes = stimulus(manifest, 200, seed=seed)
    return codes, cosimulate(manifest, codes, simulator="icarus", build_dir=build_dir).codes


def test_processes_cosimulating_one_design_at_once_each_get_their_events(tmp_path):
    """Shards of a scaled-out run may co-simulate one design in several processes at once: one build, and a run
    folder each."""
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(_cosimulate_in_process, [1, 2, 3], [str(tmp_path)] * 3))
    emulator = Emulator(small_cnn())
    for codes, observed in runs:
        assert first_mismatch(emulator.predict_codes(codes).codes, observed) is None
    assert not list(tmp_path.glob("icarus/*/run-*")), "a finished run leaves no folder behind"
