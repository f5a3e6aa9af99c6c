"""What bounds the fast emulator: the memory ceiling, the compute ceiling and the instruction count per event.

    python -m benchmarks.ceiling [--model dnn_vae_ptq8] [--events 4194304] [--threads 1 2]

For one zoo model and int32 and int64 input codes, at each thread count:
  read ceiling      a generated kernel that only reads every input code and writes one int64 per event (the
                    traffic of the real kernel, no arithmetic): events/s that memory bandwidth allows;
  kernel, streaming the generated kernel on events read from memory (no Python, no output conversion);
  kernel, in cache  the same on 4096 events that stay in L2: events/s that the arithmetic allows;
and the generated code's static instruction count per event (from LLVM's assembly of the same module), next to
the model's arithmetic (non-zero multiply-accumulates per event).
"""

from __future__ import annotations

import argparse
import collections
import re

import numba
import numpy as np

from benchmarks.timing import human, load_average, measure
from models.zoo import ZOO_DIR

CACHE_EVENTS = 4096


def read_only_ir(n_in: int, bits: int, V: int) -> str:
    """emulate() that ORs together all V * n_in input codes of each block and stores V int64 results."""
    vt = f"<{V} x i{bits}>"
    lines = [f"define i64 @emulate(ptr %inputs, ptr %outputs, i64 %first_block, i64 %n_blocks, i64 %stride) {{",
             "entry:", "  %x = load ptr, ptr %inputs, align 8", "  %out = load ptr, ptr %outputs, align 8",
             "  br label %loop", "loop:", "  %b = phi i64 [ 0, %entry ], [ %next, %loop ]",
             "  %block = add i64 %first_block, %b", f"  %event0 = mul i64 %block, {V}",
             f"  %start = mul i64 %event0, {n_in}"]
    acc = f"zeroinitializer"
    for k in range(n_in):  # V * n_in contiguous codes as n_in vectors of V
        lines += [f"  %o{k} = add i64 %start, {k * V}", f"  %p{k} = getelementptr i{bits}, ptr %x, i64 %o{k}",
                  f"  %v{k} = load {vt}, ptr %p{k}, align {bits // 8}", f"  %a{k} = or {vt} {acc}, %v{k}"]
        acc = f"%a{k}"
    wide = acc if bits == 64 else "%wide"
    if bits != 64:
        lines.append(f"  %wide = sext {vt} {acc} to <{V} x i64>")
    lines += ["  %q = getelementptr i64, ptr %out, i64 %event0", f"  store <{V} x i64> {wide}, ptr %q, align 8",
              "  %next = add i64 %b, 1", "  %more = icmp ult i64 %next, %n_blocks",
              "  br i1 %more, label %loop, label %done", "done:", "  ret i64 0", "}"]
    return "\n".join(lines) + "\n"


def rate(kernel, codes: np.ndarray, V: int, events: int):
    """timing.Rate of kernel over `events` events of `codes` (wrapping around when codes holds fewer)."""
    from emulator.fast.fast_emulator import run_blocks

    out = np.empty((1, len(codes)), dtype=np.int64)
    calls = max(1, events // len(codes))

    def run():
        for _ in range(calls):
            run_blocks(kernel, [codes], [out], len(codes) // V, V)

    return measure(run, calls * len(codes), repeat=5)


def instruction_counts(ir: str) -> dict:
    """{mnemonic: count} of the optimised module's assembly, over its part functions."""
    import llvmlite.binding as llvm

    from emulator.fast.compiled import OPT_LEVEL, _target_machine

    tm = _target_machine()
    module = llvm.parse_assembly(ir)
    module.triple, module.data_layout = tm.triple, str(tm.target_data)
    passes = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=OPT_LEVEL))
    passes.getModulePassManager().run(module, passes)
    counts, inside = collections.Counter(), False
    for line in tm.emit_assembly(module).splitlines():
        if re.match(r"^part\d+:", line):
            inside = True
        elif re.match(r"^[A-Za-z_][\w.]*:", line):
            inside = False
        elif inside and line.startswith("\t") and not line.startswith("\t."):
            counts[line.split()[0]] += 1
    return counts


def main(argv=None):
    from emulator import Manifest
    from emulator.fast import FastEmulator
    from emulator.fast.compiled import Kernel
    from emulator.fast.fast_emulator import kernel_of
    from models.data.generator import generate

    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dnn_vae_ptq8")
    parser.add_argument("--events", type=int, default=1 << 22)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)

    manifest = Manifest.load(ZOO_DIR / args.model / "manifest.json")
    fast = FastEmulator(manifest)
    n_in = manifest.input.size
    codes = fast.quantize_inputs(generate("background", args.events, 2).reshape(args.events, n_in))
    macs = sum(int(np.count_nonzero(layer.tensors["weight"])) * (layer.size // layer.tensors["weight"].shape[-1])
               for layer in manifest.layers if "weight" in layer.tensors)
    print(f"# benchmarks.ceiling {args.model}: {args.events} events of {n_in} codes; {macs} non-zero "
          f"multiply-accumulates per event; {load_average()}")
    for dtype in (np.int32, np.int64):
        x = np.ascontiguousarray(codes, dtype=dtype)
        generated = fast.generated(0, dtype)
        V = generated.vector
        kernel, reader = kernel_of(generated.ir), Kernel(read_only_ir(n_in, x.itemsize * 8, V))
        counts = instruction_counts(generated.ir)
        vector_ops = sum(c for op, c in counts.items() if op.startswith("v"))
        print(f"## {np.dtype(dtype).name} codes ({x.itemsize * n_in} bytes per event): "
              f"{sum(counts.values()) / V:.0f} instructions per event ({vector_ops / V:.0f} vector), "
              f"top: {', '.join(f'{op} {c / V:.1f}' for op, c in counts.most_common(6))}")
        for threads in args.threads:
            numba.set_num_threads(threads)
            read = rate(reader, x, V, args.events)
            stream = rate(kernel, x, V, args.events)
            cached = rate(kernel, x[:CACHE_EVENTS], V, args.events)
            print(f"{threads} thread(s), events/s (per CPU-second): read ceiling {human(read.per_s)} "
                  f"({human(read.per_cpu_s)}, {read.per_s * x.itemsize * n_in / 1e9:.1f} GB/s); kernel streaming "
                  f"{human(stream.per_s)} ({human(stream.per_cpu_s)}); kernel in cache {human(cached.per_s)} "
                  f"({human(cached.per_cpu_s)})", flush=True)
    print(f"# end: {load_average()}")


if __name__ == "__main__":
    main()
