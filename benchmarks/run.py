"""Events per second of every engine on the same events, for every zoo model, with the ratios from the same run.

    python -m benchmarks.run [--models NAME ...] [--zoo-dir DIR] [--events N] [--slow-events M] [--threads 1 2]

Engines: the fast emulator (emulator.fast, generated per model) at each thread count, on int64 codes and on int32
codes; the reference emulator (emulator.kernels); the batched C-simulation (firmware.csim, one compiled call);
hls4ml's own `predict`; and QKeras/Keras float `predict`. The fast emulator's codes are checked equal to the C-sim's
and the reference emulator's on the events they ran. Slow engines run on the first M events.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import human, load_average, measure
from models.zoo import NAMES, ZOO_DIR

BUILD = Path(__file__).resolve().parents[1] / "build" / "benchmarks"


def benchmark_events(n: int, input_size: int, seed: int = 2) -> np.ndarray:
    """The first n background events of the data generator's test stream, flat (n, input_size) float64."""
    from models.data.generator import generate

    return generate("background", n, seed).reshape(n, input_size)


def hls_model_of(model_dir: Path, name: str):
    """The zoo model converted by hls4ml with its committed hls_config.json, compiled (cached by hls4ml's build)."""
    from tensorflow import keras

    from firmware.hls_project import convert
    from models.architectures import custom_objects

    keras_model = keras.models.load_model(model_dir / "model.h5", custom_objects=custom_objects(), compile=False)
    config = json.loads((model_dir / "hls_config.json").read_text())
    hls_model = convert(keras_model, config, BUILD / f"{name}-hls")
    hls_model.compile()
    return keras_model, hls_model


def bench_model(name: str, model_dir: Path, n_events: int, n_slow: int, threads: list) -> dict:
    import numba

    from emulator import Emulator, Manifest
    from firmware.csim import CSim

    manifest = Manifest.load(model_dir / "manifest.json")
    reference = Emulator(manifest)
    fast = reference.fast()
    compile_s = cold_compile_seconds(fast)
    floats = benchmark_events(n_events, manifest.input.size)
    codes = reference.quantize_inputs(floats)
    codes32 = codes.astype(np.int32)
    out = manifest.outputs[0]
    rows = {}

    expected = fast.predict_codes(codes).codes[out]
    for t in threads:
        numba.set_num_threads(t)
        rows[f"fast emulator, {t} thread(s), int64 codes"] = measure(lambda: fast.predict_codes(codes), n_events)
        rows[f"fast emulator, {t} thread(s), int32 codes"] = measure(lambda: fast.predict_codes(codes32), n_events)
        in_cache = codes[:16384]
        rows[f"fast emulator, {t} thread(s), 16k events in cache"] = measure(
            lambda: fast.predict_codes(in_cache), len(in_cache), repeat=3, min_seconds=0.5)
    numba.set_num_threads(max(threads))
    slow_codes, slow_floats = codes[:n_slow], floats[:n_slow]
    rows["reference emulator (emulator.kernels)"] = measure(lambda: reference.predict_codes(slow_codes), n_slow, 1)
    assert np.array_equal(reference.predict_codes(slow_codes).codes[out], expected[:n_slow]), f"{name}: reference"

    keras_model, hls_model = hls_model_of(model_dir, name)
    csim = CSim(hls_model)
    csim_codes = csim.run(slow_codes)
    bit_exact = bool(np.array_equal(csim_codes, expected[:n_slow]))
    rows["batched C-sim (firmware.csim)"] = measure(lambda: csim.run(slow_codes), n_slow, 1)
    n_hls = min(n_slow, 20000)
    rows["hls4ml predict"] = measure(lambda: hls_model.predict(np.ascontiguousarray(slow_floats[:n_hls])), n_hls, 1)
    shaped = floats.reshape((n_events, *keras_model.input_shape[1:]))
    rows["QKeras float predict (batch 16384)"] = measure(
        lambda: keras_model.predict(shaped, batch_size=16384, verbose=0), n_events, 2)
    return {"rows": rows, "bit_exact_vs_csim": bit_exact, "events": n_events, "slow_events": n_slow,
            "compile_s": compile_s}


def cold_compile_seconds(fast) -> dict:
    """Seconds to generate and compile the fast emulator's kernels from nothing (an empty machine-code cache)."""
    import tempfile

    from emulator.fast.codegen import generate
    from emulator.fast.compiled import Kernel

    seconds = {}
    with tempfile.TemporaryDirectory() as empty:
        for dtype in (np.int64, np.int32):
            start = time.perf_counter()
            Kernel(generate(fast.manifest, dtype=dtype).ir, Path(empty))
            seconds[np.dtype(dtype).name] = time.perf_counter() - start
    return seconds


def report(name: str, result: dict, threads: list) -> str:
    rows = result["rows"]
    best_fast = rows[f"fast emulator, {max(threads)} thread(s), int64 codes"].per_s
    compile_s = ", ".join(f"{dtype} {seconds:.1f} s" for dtype, seconds in result["compile_s"].items())
    lines = [f"## {name}  (fast emulator == C-sim on {result['slow_events']} events: {result['bit_exact_vs_csim']}; "
             f"fast emulator cold compile: {compile_s})",
             f"{'engine':52s} {'events/s':>11s} {'per CPU-s':>11s} {'fast/this':>10s}"]
    for label, rate in rows.items():
        lines.append(f"{label:52s} {human(rate.per_s):>11s} {human(rate.per_cpu_s):>11s} "
                     f"{best_fast / rate.per_s:>10.1f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(NAMES))
    parser.add_argument("--zoo-dir", type=Path, default=ZOO_DIR)
    parser.add_argument("--events", type=int, default=1 << 21, help="events for the fast engines")
    parser.add_argument("--slow-events", type=int, default=50000, help="events for the slow engines")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    print(f"# benchmarks.run: {args.events} events ({args.slow_events} for the slow engines); {load_average()}")
    results = {}
    for name in args.models:
        model_dir = args.zoo_dir / name
        if not (model_dir / "manifest.json").exists():
            print(f"## {name}: not built in {args.zoo_dir}, skipped", file=sys.stderr)
            continue
        results[name] = bench_model(name, model_dir, args.events, args.slow_events, args.threads)
        print(report(name, results[name], args.threads), flush=True)
    print(f"# end: {load_average()}")
    if args.json:
        body = {name: {"bit_exact_vs_csim": r["bit_exact_vs_csim"], "compile_s": r["compile_s"],
                       "rows": {k: {"events": v.events, "wall_s": v.wall_s, "cpu_s": v.cpu_s}
                                for k, v in r["rows"].items()}}
                for name, r in results.items()}
        args.json.write_text(json.dumps(body, indent=1) + "\n")


if __name__ == "__main__":
    main()
