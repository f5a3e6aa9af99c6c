"""Stream events from an HDF5 file through the fast emulator in chunks, with peak memory that does not grow.

    python -m benchmarks.stream_h5 [--model dnn_vae_ptq8] [--events 8388608] [--chunk 262144] [--file PATH]

The file (float32 events (N, n_in), written once from the data generator's background stream and reused) is read
one chunk at a time; each chunk is quantized to the input type and emulated; the score codes are reduced to a count
above the model's threshold and a SHA-256 digest, so nothing is kept per event. Peak resident memory (ru_maxrss) is
reported after the first eighth of the events and at the end: with memory independent of the event count they agree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import time
from pathlib import Path

import h5py
import numpy as np

from benchmarks.timing import load_average
from models.zoo import ZOO_DIR

BUILD = Path(__file__).resolve().parents[1] / "build" / "benchmarks"
DATASET = "events"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_events(path: Path, n_events: int, n_in: int, chunk: int, seed: int = 2) -> None:
    """Write n_events background events of the generator's stream as float32 (n_events, n_in), chunk by chunk."""
    from models.data.generator import stream

    partial = path.with_suffix(".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(partial, "w") as handle:
        data = handle.create_dataset(DATASET, shape=(n_events, n_in), dtype=np.float32,
                                     chunks=(min(chunk, n_events), n_in))
        start = 0
        for events in stream("background", n_events, chunk, seed):
            data[start:start + len(events)] = events.reshape(len(events), n_in)
            start += len(events)
        handle.attrs["seed"] = seed
    partial.replace(path)


def stream_file(path: Path, emulator, chunk: int, threshold: int | None) -> dict:
    """Read, quantize and emulate every chunk; returns counts, digest, timings and the peak memory along the way."""
    digest, above, n_done = hashlib.sha256(), 0, 0
    read_s = quantize_s = emulate_s = 0.0
    rss_at_eighth = None
    start = time.perf_counter()
    with h5py.File(path, "r") as handle:
        data = handle[DATASET]
        n_events = len(data)
        buffer = np.empty((chunk, data.shape[1]), dtype=np.float32)
        for first in range(0, n_events, chunk):
            n = min(chunk, n_events - first)
            t0 = time.perf_counter()
            data.read_direct(buffer, np.s_[first:first + n], np.s_[0:n])
            t1 = time.perf_counter()
            codes = emulator.quantize_inputs(buffer[:n])
            t2 = time.perf_counter()
            scores = emulator.predict_codes(codes).code.ravel()
            t3 = time.perf_counter()
            read_s, quantize_s, emulate_s = read_s + t1 - t0, quantize_s + t2 - t1, emulate_s + t3 - t2
            digest.update(np.ascontiguousarray(scores, dtype="<i8").tobytes())
            if threshold is not None:
                above += int(np.count_nonzero(scores > threshold))
            n_done += n
            if rss_at_eighth is None and n_done >= n_events // 8:
                rss_at_eighth = peak_rss_mib()
    total = time.perf_counter() - start
    return {"events": n_done, "above_threshold": above, "score_codes_sha256": digest.hexdigest(),
            "seconds": {"total": total, "read": read_s, "quantize": quantize_s, "emulate": emulate_s},
            "events_per_s": {"end_to_end": n_done / total, "emulate": n_done / emulate_s},
            "peak_rss_mib": {"after_first_eighth": rss_at_eighth, "at_end": peak_rss_mib()}}


def main(argv=None):
    from emulator import Emulator, Manifest

    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream_h5", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dnn_vae_ptq8")
    parser.add_argument("--zoo-dir", type=Path, default=ZOO_DIR)
    parser.add_argument("--events", type=int, default=1 << 23)
    parser.add_argument("--chunk", type=int, default=1 << 18)
    parser.add_argument("--file", type=Path, default=None, help="HDF5 file of float events (written if missing)")
    args = parser.parse_args(argv)

    model_dir = args.zoo_dir / args.model
    manifest = Manifest.load(model_dir / "manifest.json")
    path = args.file or BUILD / f"stream-{args.events}x{manifest.input.size}.h5"
    if not path.exists():
        t0 = time.perf_counter()
        write_events(path, args.events, manifest.input.size, args.chunk)
        print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
    metadata = model_dir / "metadata.json"
    threshold = json.loads(metadata.read_text())["threshold"]["code"] if metadata.exists() else None
    emulator = Emulator(manifest).fast()
    emulator.predict_codes(np.zeros((1, manifest.input.size), dtype=np.int64))  # load the compiled kernel first
    rss_before = peak_rss_mib()
    result = stream_file(path, emulator, args.chunk, threshold)
    result.update(model=args.model, file=str(path), chunk=args.chunk, peak_rss_before_streaming_mib=rss_before)
    print(json.dumps(result, indent=1))
    print(f"# {load_average()}")


if __name__ == "__main__":
    main()
