"""`verify`: certify that a model gives bit-identical outputs in the emulator, the HLS C-simulation and the RTL.

Exit status: 0 certified, 1 a mismatch (the first one is named), 2 a usage or environment error (with a fix).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.data import DataError
from models.data.generator import PROCESSES

from .certify import DEFAULT_EVENTS, DEFAULT_SEARCH, DEFAULT_SHARD, DEFAULT_VECTORS, Options, certify
from .faults import Fault, FaultError
from .model_ref import ModelError, ModelSpec
from .paths import BackendError
from .vectors import PatternError

REPO_ROOT = Path(__file__).resolve().parents[1]

DESCRIPTION = """\
Certify that an L1 anomaly-detection encoder computes the same integer codes in three places:
  emulator  the numba emulator of the model's manifest (run twice: the determinism check)
  csim      hls4ml's C-simulation of the firmware, compiled with g++ (the reference when it runs)
  rtl       the RTL, co-simulated with cocotb in Verilator or Icarus (one event per clock)
Every output code of every event and every trigger decision (anomaly score code > the model's threshold code)
must agree. The emulator runs twice, with different batch sizes, numba thread counts and a shuffled event order,
and must give identical bits. Input values go through the firmware's input type (its rounding and overflow);
NaN and infinities are rejected, naming the events."""

EPILOG = """\
examples:
  verify --model dnn_vae_ptq8                       certify a zoo model on 100000 generated events
  verify --model cnn_ae_qat4 --events 2000 --sim icarus --out build/verify/cnn
  verify --keras my_model.h5 --config my_hls_config.json --threshold 1234 --skip-rtl
  verify --model dnn_ae_qat8 --data /data/adc2021 --events 500000 --jobs 2
  verify --model dnn_ae_qat8 --rtl vivado_hls_project/solution1/impl/verilog
  verify --model dnn_vae_ptq8 --events 20000 --require-coverage    coverage, targeted events, mutation score

output (in --out): report.json (schema l1ad-verify-report, version 1), report.md, score_distribution.png,
layer_bit_differences.png (only when layers differ), vectors/ (input and expected output codes, hls4ml tb_data
files, EMP pattern files); with --coverage also coverage_bins.json, precision_profile.png and vectors/targeted/.
Skipped paths are reported as skipped, never as passed. Without --data the events are
synthetic (the built-in generator), and every output says so.

exit status:
  0  certified: every path that ran agrees, bit for bit, and the emulator is deterministic
  1  mismatch: the first differing event, layer and neuron are printed (binary and decimal, with types); with
     --require-coverage also a coverage bin neither hit nor proved unreachable
  2  usage or environment error (missing model, simulator or compiler; unreadable, corrupt or NaN data)"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="verify", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_argument_group("model (one of)")
    model.add_argument("--model", metavar="NAME", help="a zoo model: dnn_ae_qat8, dnn_vae_ptq8, cnn_ae_qat4, "
                       "cnn_vae_ptq8")
    model.add_argument("--keras", metavar="PATH", type=Path, help="your own Keras/QKeras model (.h5)")
    model.add_argument("--config", metavar="PATH", type=Path, help="its hls4ml configuration (JSON or YAML), with "
                       "explicit precisions; needed with --keras")
    model.add_argument("--threshold", metavar="CODE", type=int, help="trigger threshold as a raw code of the score's "
                       "type (default: the zoo model's; without one, trigger decisions are not compared)")
    data = p.add_argument_group("events")
    data.add_argument("--events", metavar="N", type=int, help=f"number of events (default {DEFAULT_EVENTS}, or the "
                      f"whole file if smaller)")
    data.add_argument("--data", metavar="DIR", type=Path, help="published ADC2021 HDF5 file, or the directory holding "
                      "it (default: the built-in generator, synthetic events)")
    data.add_argument("--process", default="background", choices=PROCESSES, help="which process to read or generate "
                      "(default background)")
    data.add_argument("--seed", type=int, default=0, help="generator seed, and seed of the determinism shuffle "
                      "(default 0)")
    paths = p.add_argument_group("paths")
    paths.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                       help="RTL simulator (default verilator)")
    paths.add_argument("--skip-csim", action="store_true", help="do not run the C-simulation (reported as skipped)")
    paths.add_argument("--skip-rtl", action="store_true", help="do not run the RTL co-simulation (reported as skipped)")
    paths.add_argument("--rtl", metavar="DIR", type=Path, help="external Verilog (*.v) with the HLS port interface, "
                       "e.g. Vivado HLS output, instead of the generated RTL")
    run = p.add_argument_group("run")
    run.add_argument("--jobs", type=int, default=1, help="shards verified at once, in threads; the paths of different "
                     "shards overlap; with --coverage also the regions of a mutant's equivalence proof examined at "
                     "once (default 1)")
    run.add_argument("--shard-size", type=int, default=DEFAULT_SHARD,
                     help=f"events per shard (default {DEFAULT_SHARD})")
    run.add_argument("--out", metavar="DIR", type=Path, help="report folder (default build/verify/report-<model>)")
    run.add_argument("--build-dir", metavar="DIR", type=Path, default=REPO_ROOT / "build" / "verify",
                     help="cache of hls4ml projects and RTL builds (default build/verify)")
    run.add_argument("--vectors", metavar="N", type=int, default=DEFAULT_VECTORS,
                     help=f"events written as test vectors (default {DEFAULT_VECTORS})")
    run.add_argument("--emp-links", metavar="L", type=int,
                     help="links of the EMP pattern files (default: one event per frame)")
    run.add_argument("--dask", metavar="ADDRESS", help="verify the shards as Dask tasks: local (one worker process per "
                     "core), local:N (N worker processes) or a running scheduler, tcp://HOST:PORT (see "
                     "verify/README_DASK.md)")
    run.add_argument("--resume", metavar="DIR", type=Path, help="with --dask: save every finished shard in DIR, and "
                     "skip the shards already saved there by an interrupted run of the same campaign")
    run.add_argument("--quiet", action="store_true", help="no progress bars or status lines")
    cover = p.add_argument_group("coverage")
    cover.add_argument("--coverage", action="store_true", help="count what the events exercised (saturations, "
                       "wraps, rounding ties, range limits, KL table clamps, scores near the threshold), generate "
                       "targeted events for what they missed, run those through every path too, and score mutants "
                       "of the model on the data alone and with the targeted events")
    cover.add_argument("--require-coverage", action="store_true", help="like --coverage, and exit 1 when a bin is "
                       "neither hit nor proved unreachable")
    cover.add_argument("--coverage-search", metavar="N", type=int, default=DEFAULT_SEARCH, help=f"events the "
                       f"targeted search may try (default {DEFAULT_SEARCH})")
    cover.add_argument("--coverage-proof-seconds", metavar="S", type=float, default=30.0, help="time limit of one "
                       "mixed-integer bound proving a bin unreachable (default 30; 0: linear programs only, quick)")
    cover.add_argument("--coverage-mutant-seconds", metavar="S", type=float, help="time limit of one mixed-integer "
                       "program proving a mutant equivalent (default: --coverage-proof-seconds; the narrower KL head "
                       "asks one per region of its latent space)")
    cover.add_argument("--coverage-focus", metavar="N", type=int, default=0, help="after the search, spend N "
                       "events on each condition still open, alone (default 0: none; the time grows with the "
                       "conditions left: ~45 s per million events of cnn_ae_qat4 on one core)")
    p.add_argument("--inject-fault", metavar="SPEC", action="append", default=[], help=argparse.SUPPRESS)
    return p


def _options(args, argv) -> Options:
    for name in ("events", "jobs", "shard_size", "emp_links", "coverage_search"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("vectors", "coverage_proof_seconds", "coverage_mutant_seconds", "coverage_focus"):
        if (getattr(args, name) or 0) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(args, name)}")
    if args.rtl is not None and args.skip_rtl:
        raise ValueError("--rtl and --skip-rtl contradict each other")
    if args.resume is not None and args.dask is None:
        raise ValueError("--resume needs --dask (e.g. --dask local:2)")
    if args.dask is not None:
        from .scaleout import cluster_address

        cluster_address(args.dask)
        if args.jobs != 1:
            raise ValueError("--jobs and --dask contradict each other: give the worker count in --dask local:N")
    label = args.model or (args.keras.stem if args.keras else "model")
    return Options(
        model=ModelSpec(args.model, args.keras, args.config, args.threshold),
        out=args.out or REPO_ROOT / "build" / "verify" / f"report-{label}",
        build_dir=args.build_dir, events=args.events, data=args.data, process=args.process, seed=args.seed,
        simulator=args.sim, skip_csim=args.skip_csim, skip_rtl=args.skip_rtl, rtl_dir=args.rtl, jobs=args.jobs,
        shard_size=args.shard_size, vectors=args.vectors, emp_links=args.emp_links,
        faults=tuple(Fault.parse(spec) for spec in args.inject_fault), progress=not args.quiet,
        command=("verify", *argv), dask=args.dask, resume=args.resume, coverage=args.coverage,
        require_coverage=args.require_coverage, coverage_search=args.coverage_search,
        coverage_proof_seconds=args.coverage_proof_seconds, coverage_mutant_seconds=args.coverage_mutant_seconds,
        coverage_focus=args.coverage_focus,
    )


def main(argv=None) -> int:
    """Run `verify`; returns (and, as a console script, exits with) 0, 1 or 2."""
    from .report import summary_table

    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    try:
        args = p.parse_args(argv)
        options = _options(args, argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, message printed)
        return int(exc.code or 0)
    except (ValueError, FaultError) as exc:
        print(f"verify: error: {exc}", file=sys.stderr)
        return 2
    try:
        result = certify(options)
    except (ModelError, DataError, BackendError, FaultError, PatternError) as exc:
        print(f"verify: error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(result.report))
    print(f"report: {result.files['json']} and {result.files['markdown']}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
