"""Resource estimates of the generated RTL: Yosys `synth_xilinx -family xcup` (UltraScale+), out of context.

Yosys is not Vivado: its LUT mapping and DSP inference differ, so the counts are an open, reproducible estimate to
set beside the paper's Vivado HLS figures (Table III), not a sign-off. Results are cached by the design's hash.

    python -m firmware.resources                       every zoo model (minutes each; needs `apt-get install yosys`)
    python -m firmware.resources --model dnn_vae_ptq8 --pipeline 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from emulator.manifest import Manifest

from .rtl import generate_rtl

BUILD = Path("build") / "resources"
CLOCK_NS = 5.0  # the paper's 200 MHz

#: Xilinx VU9P (xcvu9p), the paper's device (Table III totals).
VU9P = {"lut": 1_182_240, "ff": 2_364_480, "dsp": 6_840, "bram36": 2_160}


class YosysError(RuntimeError):
    """Yosys is missing, failed or ran out of time; the message says which and how to fix it."""


@dataclass(frozen=True)
class Resources:
    """Cells of a synthesized design, counted the way Vivado reports utilisation."""

    lut: int
    ff: int
    dsp: int
    bram36: float
    carry8: int
    latency_cycles: int
    synth_seconds: float

    @classmethod
    def from_cells(cls, cells: dict, latency_cycles: int, synth_seconds: float) -> "Resources":
        """From Yosys' `num_cells_by_type`: LUTs include shift registers and LUT RAM, BRAM in RAMB36 units."""
        def count(*prefixes):
            return sum(n for cell, n in cells.items() if cell.startswith(prefixes))

        return cls(
            lut=count("LUT", "SRL", "RAM32", "RAM64", "RAM128", "RAM256"),
            ff=count("FD"),
            dsp=count("DSP48"),
            bram36=cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2,
            carry8=count("CARRY"),
            latency_cycles=latency_cycles,
            synth_seconds=synth_seconds,
        )

    def percent_of(self, device: dict) -> dict:
        return {key: 100.0 * getattr(self, key) / total for key, total in device.items()}


def estimate(manifest: Manifest, pipeline: int = 1, build_dir: Path = BUILD, timeout: float = 3600) -> Resources:
    """Synthesize the manifest's generated RTL with Yosys for UltraScale+ and count its cells (cached)."""
    yosys = shutil.which("yosys")
    if yosys is None:
        raise YosysError("yosys is not installed; resource estimates need it: apt-get install yosys "
                         "(Debian's 0.23 works)")
    work = Path(build_dir) / f"{manifest.content_hash[:16]}-p{pipeline}"
    design = generate_rtl(manifest, work, pipeline)
    cached = work / f"resources-{design.content_hash[:16]}.json"
    if cached.is_file():
        return Resources(**json.loads(cached.read_text()))
    stat = work / "stat.json"
    script = (f"read_verilog {design.sources[0]}; synth_xilinx -family xcup -noiopad -flatten "
              f"-top {design.top}; tee -q -o {stat} stat -json")
    started = time.perf_counter()
    try:
        done = subprocess.run([yosys, "-q", "-p", script], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise YosysError(f"yosys did not finish synthesizing {manifest.name} within {timeout:.0f} s "
                         "(raise --timeout)") from None
    if done.returncode != 0:
        raise YosysError(f"yosys failed on {manifest.name} (exit {done.returncode}):\n"
                         f"{(done.stdout + done.stderr)[-3000:]}")
    cells = json.loads(stat.read_text())["design"]["num_cells_by_type"]
    result = Resources.from_cells(cells, design.latency, time.perf_counter() - started)
    cached.write_text(json.dumps(asdict(result), indent=1) + "\n")
    return result


def format_table(rows: dict) -> str:
    """Markdown table of {model name: Resources}: counts, % of a VU9P, latency and II at 200 MHz."""
    lines = ["| model | LUT | FF | DSP | BRAM36 | LUT % | FF % | DSP % | latency | II | Yosys time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        pct = r.percent_of(VU9P)
        lines.append(f"| {name} | {r.lut:,} | {r.ff:,} | {r.dsp:,} | {r.bram36:g} | {pct['lut']:.2f} | "
                     f"{pct['ff']:.2f} | {pct['dsp']:.2f} | {r.latency_cycles} cycles = "
                     f"{r.latency_cycles * CLOCK_NS:g} ns | 1 cycle = {CLOCK_NS:g} ns | {r.synth_seconds:.0f} s |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from models.zoo import NAMES, manifest_path

    parser = argparse.ArgumentParser(prog="python -m firmware.resources", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", choices=NAMES, help="zoo model (repeatable; default: all four)")
    parser.add_argument("--manifest", action="append", type=Path, default=[], help="a manifest.json of your own model")
    parser.add_argument("--pipeline", type=int, default=1, help="layers per register stage, as in verify (default 1)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per model for Yosys (default 3600)")
    parser.add_argument("--build-dir", type=Path, default=BUILD, help=f"cache of designs and counts (default {BUILD})")
    args = parser.parse_args(argv)
    paths = [manifest_path(name) for name in (args.model or ([] if args.manifest else NAMES))] + args.manifest
    rows = {}
    try:
        for path in paths:
            manifest = Manifest.load(path)
            print(f"synthesizing {manifest.name} with yosys ...", file=sys.stderr, flush=True)
            rows[manifest.name] = estimate(manifest, args.pipeline, args.build_dir, args.timeout)
    except YosysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
