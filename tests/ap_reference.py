"""The ap_types reference: one g++ -O2 program, generated for a fixed list of types, that converts with ap_fixed.

`ApReference(quantize, requantize, to_double)` writes C++ with every needed template instantiation, compiles it
once into build/ap_reference/<hash of the sources>/ and runs batches of jobs through it: quantize (`T y = x;`),
requantize (`S s; s.range() = code; D d = s;`) and to_double (`T s; s.range() = code; s.to_double()`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from emulator.fixed_type import FixedType

REPO = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO / "build" / "ap_reference"
COMPILE = ["g++", "-O2", "-std=c++14", "-w"]
PARTS = 4  # translation units compiled in parallel


def ap_types_dir() -> Path:
    """hls4ml's copy of the Xilinx ap_types headers."""
    import hls4ml

    path = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
    if not (path / "ap_fixed.h").is_file():
        raise FileNotFoundError(f"ap_fixed.h not found in {path}")
    return path


def cpp_type(t: FixedType) -> str:
    """The full C++ spelling of t, modes included."""
    return f"ap_{'' if t.signed else 'u'}fixed<{t.width}, {t.integer}, AP_{t.rounding}, AP_{t.overflow}>"


_KERNELS = r"""
#include <ap_fixed.h>
#include <cstdint>

// Code of y as a sign-extended (signed types) or zero-extended (unsigned types) int64.
template <class T, bool SIGNED> int64_t code_of(const T& y) {
  uint64_t bits = y.range().to_uint64();
  int pad = 64 - T::width;
  return SIGNED ? (int64_t)(bits << pad) >> pad : (int64_t)bits;
}
template <class T> T from_code(int64_t code) {
  T x;
  x.range() = (ap_ulong)code;
  return x;
}
template <class T, bool SIGNED> void quantize(const void* in, void* out, long n) {
  const double* x = (const double*)in;
  int64_t* y = (int64_t*)out;
  for (long i = 0; i < n; ++i) { T v = x[i]; y[i] = code_of<T, SIGNED>(v); }
}
template <class S, class D, bool SIGNED> void requantize(const void* in, void* out, long n) {
  const int64_t* x = (const int64_t*)in;
  int64_t* y = (int64_t*)out;
  for (long i = 0; i < n; ++i) { S s = from_code<S>(x[i]); D d = s; y[i] = code_of<D, SIGNED>(d); }
}
template <class T> void to_double(const void* in, void* out, long n) {
  const int64_t* x = (const int64_t*)in;
  double* y = (double*)out;
  for (long i = 0; i < n; ++i) y[i] = from_code<T>(x[i]).to_double();
}
typedef void (*kernel)(const void*, void*, long);
"""

_MAIN = r"""
#include <cstdint>
#include <cstdio>
#include <vector>
typedef void (*kernel)(const void*, void*, long);
@DECLARATIONS@
static const kernel* const QUANTIZE[] = {@QUANTIZE@};
static const kernel* const TO_DOUBLE[] = {@TO_DOUBLE@};
static const kernel* const REQUANTIZE[] = {@REQUANTIZE@};

// argv: jobs.txt (lines "<Q|F|R> <index> <count>"), input.bin, output.bin; 8-byte words in and out.
// Entry i of a table lives in part i % PARTS at position i / PARTS.
int main(int argc, char** argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s jobs.txt input.bin output.bin\n", argv[0]); return 2; }
  FILE* jobs = fopen(argv[1], "r");
  FILE* fin = fopen(argv[2], "rb");
  FILE* fout = fopen(argv[3], "wb");
  if (!jobs || !fin || !fout) { perror("open"); return 2; }
  char kind;
  long index, count;
  std::vector<int64_t> in, out;
  while (fscanf(jobs, " %c %ld %ld", &kind, &index, &count) == 3) {
    in.resize(count + 1);
    out.resize(count + 1);
    if ((long)fread(in.data(), 8, count, fin) != count) { fprintf(stderr, "short input\n"); return 2; }
    const kernel* const* table = kind == 'Q' ? QUANTIZE : kind == 'F' ? TO_DOUBLE : kind == 'R' ? REQUANTIZE : 0;
    if (!table) { fprintf(stderr, "unknown job kind %c\n", kind); return 2; }
    table[index % @PARTS@][index / @PARTS@](in.data(), out.data(), count);
    if ((long)fwrite(out.data(), 8, count, fout) != count) { perror("write"); return 2; }
  }
  return fclose(fout) == 0 ? 0 : 2;
}
"""


def _sources(quantize: list[FixedType], requantize: list[tuple[FixedType, FixedType]], to_double: list[FixedType],
             parts: int) -> dict[str, str]:
    """File name -> C++ text: kernels.h, one part_<k>.cpp per part (compiled in parallel) and main.cpp."""
    tables = {
        "QUANTIZE": [f"quantize<{cpp_type(t)}, {str(t.signed).lower()}>" for t in quantize],
        "TO_DOUBLE": [f"to_double<{cpp_type(t)}>" for t in to_double],
        "REQUANTIZE": [f"requantize<{cpp_type(s)}, {cpp_type(d)}, {str(d.signed).lower()}>" for s, d in requantize],
    }
    files = {"kernels.h": _KERNELS}
    # Entry i of a table goes to part i % parts; each part's table starts with a null entry, so it is never empty.
    for k in range(parts):
        body = "".join(f"extern const kernel {name}_{k}[] = {{0{''.join(f', &{e}' for e in entries[k::parts])}}};\n"
                       for name, entries in tables.items())
        files[f"part_{k}.cpp"] = f'#include "kernels.h"\n{body}'
    declarations = "".join(f"extern const kernel {name}_{k}[];\n" for name in tables for k in range(parts))
    main = _MAIN.replace("@DECLARATIONS@", declarations).replace("@PARTS@", str(parts))
    for name in tables:
        main = main.replace(f"@{name}@", ", ".join(f"{name}_{k} + 1" for k in range(parts)))
    files["main.cpp"] = main
    return files


class ApReference:
    """A compiled reference program for the types to quantize to, the (src, dst) pairs to requantize and the
    types to convert to double; a job names its conversion by its index in one of these lists."""

    def __init__(self, quantize: list[FixedType], requantize: list[tuple[FixedType, FixedType]],
                 to_double: list[FixedType]):
        self.executable = self._build(_sources(list(quantize), list(requantize), list(to_double), parts=PARTS))

    @staticmethod
    def _build(sources: dict[str, str]) -> Path:
        headers = ap_types_dir()
        text = "\0".join([*(f"{name}\0{body}" for name, body in sorted(sources.items())), *COMPILE, str(headers)])
        folder = BUILD_DIR / hashlib.sha256(text.encode()).hexdigest()[:16]
        executable = folder / "ap_reference"
        if executable.is_file():
            return executable
        folder.mkdir(parents=True, exist_ok=True)
        tag = os.getpid()
        for name, body in sources.items():  # written then renamed, so a concurrent build never reads half a file
            (folder / f"{name}.{tag}").write_text(body)
            (folder / f"{name}.{tag}").replace(folder / name)
        units = [name for name in sources if name.endswith(".cpp")]
        objects = [folder / f"{Path(name).stem}.{tag}.o" for name in units]
        compiles = [subprocess.Popen([*COMPILE, f"-I{headers}", "-c", str(folder / name), "-o", str(obj)],
                                     stderr=subprocess.PIPE, text=True) for name, obj in zip(units, objects)]
        errors = [p.communicate()[1] for p in compiles]
        errors = [err for err, p in zip(errors, compiles) if p.returncode != 0]
        partial = folder / f"ap_reference.{tag}.tmp"
        if not errors:
            link = subprocess.run([*COMPILE, *map(str, objects), "-o", str(partial)], capture_output=True, text=True)
            errors = [link.stderr] if link.returncode else []
        for o in objects:
            o.unlink(missing_ok=True)
        if errors:
            raise RuntimeError(f"building the ap_types reference in {folder} failed:\n{errors[0][-4000:]}")
        partial.replace(executable)  # atomic: concurrent sessions never run a half-written binary
        return executable

    def run(self, jobs: list[tuple[str, int, np.ndarray]]) -> list[np.ndarray]:
        """Run jobs (kind 'Q' float64 -> codes, 'R' codes -> codes, 'F' codes -> float64; index into the
        matching list; 1-D input) in one process and return their outputs in order."""
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            lines, chunks = [], []
            for kind, index, data in jobs:
                dtype = np.float64 if kind == "Q" else np.int64
                chunks.append(np.ascontiguousarray(data, dtype=dtype).reshape(-1))
                lines.append(f"{kind} {index} {chunks[-1].size}\n")
            (tmp / "jobs.txt").write_text("".join(lines))
            with open(tmp / "input.bin", "wb") as f:
                for chunk in chunks:
                    f.write(chunk.tobytes())
            run = subprocess.run([str(self.executable), str(tmp / "jobs.txt"), str(tmp / "input.bin"),
                                  str(tmp / "output.bin")], capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(f"{self.executable} failed ({run.returncode}): {run.stderr[-2000:]}")
            words = np.fromfile(tmp / "output.bin", dtype=np.int64)
        outputs, start = [], 0
        for (kind, _, _), chunk in zip(jobs, chunks):
            out = words[start:start + chunk.size]
            outputs.append(out.view(np.float64) if kind == "F" else out)
            start += chunk.size
        if start != words.size:
            raise RuntimeError(f"reference wrote {words.size} words, expected {start}")
        return outputs
