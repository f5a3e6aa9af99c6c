"""`CSim`: hls4ml's C-simulation of a whole batch of events in one compiled call, on raw fixed-point codes.

A generated C++ entry point loops over a contiguous int64 buffer of input codes, sets each input element's bits,
calls the project's top function and writes the raw output codes back; no value goes through a float. `trace`
collects every traced layer's output through hls4ml's `nnet::save_layer_output` hooks (double buffers, exact for
types up to 53 bits) and returns it as codes.
"""

from __future__ import annotations

import ctypes
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .hls_project import CSimError, ProjectInterface, compile_library, convert, write_project

ENTRY_FILE = "csim_entry.cpp"
MIN_EVENTS_PER_THREAD = 2000


class CSimInputError(ValueError):
    """Input codes the C-simulation cannot take (wrong shape, dtype, or outside the input type); the message says
    which."""


class CSim:
    """The compiled C-simulation of one hls4ml project, run on batches of raw input codes."""

    def __init__(self, hls_model_or_project_dir, cache_dir=None, env=None):
        """From an hls4ml ModelGraph (its project is written first) or the directory of a project written by
        firmware.hls_project.convert. `env` replaces os.environ for finding and running g++."""
        if isinstance(hls_model_or_project_dir, (str, Path)):
            self.interface = ProjectInterface.load(hls_model_or_project_dir)
        else:
            self.interface = write_project(hls_model_or_project_dir)
        self.library = compile_library(self.interface, {ENTRY_FILE: entry_source(self.interface)}, cache_dir, env)
        if not (self.library.path.parent / "weights").is_dir():
            raise CSimError(f"the weights of cached library {self.library.path} are missing; delete its directory")
        self._lib = ctypes.CDLL(str(self.library.path))
        pointers = ctypes.POINTER(ctypes.c_void_p)
        self._lib.csim_run.argtypes = [ctypes.c_int64, pointers, pointers]
        self._lib.csim_trace.argtypes = [ctypes.c_int64, pointers, pointers, pointers]
        self._lib.csim_run.restype = self._lib.csim_trace.restype = ctypes.c_int

    @classmethod
    def from_keras(cls, keras_model, hls_config: dict, build_dir, backend: str = "Vivado", **kwargs) -> "CSim":
        """Convert with firmware.hls_project.convert (tracing on) and compile."""
        return cls(convert(keras_model, hls_config, build_dir, backend), **kwargs)

    # ---- running ---------------------------------------------------------------------------------------
    def run(self, input_codes, threads: int | None = None):
        """Output codes for input codes: (N, n_in) int64 for a one-input model (a list, one per input, otherwise).
        Returns (N, n_out) int64 for a one-output model, else {output layer name: codes}. Events are shared among
        `threads` threads (default: one per available core) when the project is stateless."""
        inputs = self._inputs(input_codes)
        n = len(inputs[0])
        outputs = self._alloc(self.interface.outputs, n)

        def run_slice(bounds):
            start, stop = bounds
            self._lib.csim_run(stop - start, _pointers(inputs, start), _pointers(outputs, start))

        threads = self._threads(threads, n)
        if threads == 1:
            run_slice((0, n))
        else:
            run_slice((0, 1))  # hls4ml fills weights and lookup tables on the first call, which is not thread-safe
            edges = np.linspace(1, n, threads + 1).astype(int)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(run_slice, zip(edges[:-1], edges[1:])))
        return self._outputs(outputs)

    def trace(self, input_codes) -> dict:
        """{layer name: output codes (N, size)} for every traced layer (all layers with function calls, by hls4ml's
        names)."""
        if not self.interface.traced:
            raise CSimError("this project was written without trace hooks: convert it with "
                            "firmware.hls_project.convert, or set the layers' 'Trace' and "
                            "hls_model.config.trace_output before writing")
        inputs = self._inputs(input_codes)
        n = len(inputs[0])
        outputs = self._alloc(self.interface.outputs, n)
        traces = self._alloc(self.interface.traced, n)
        status = self._lib.csim_trace(n, _pointers(inputs), _pointers(outputs), _pointers(traces))
        if status:
            port = self.interface.traced[status - 1]
            raise CSimError(f"layer {port.name!r}: a traced value is not on the grid of {port.type}")
        return {port.name: codes for port, codes in zip(self.interface.traced, traces)}

    # ---- internals -------------------------------------------------------------------------------------
    def _threads(self, threads, n: int) -> int:
        if threads is None:
            threads = len(os.sched_getaffinity(0))
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if not self.interface.stateless:
            return 1
        return max(1, min(threads, n // MIN_EVENTS_PER_THREAD))

    def _inputs(self, input_codes) -> list:
        ports = self.interface.inputs
        if len(ports) > 1 and not isinstance(input_codes, (list, tuple)):
            raise CSimInputError(f"the model has {len(ports)} inputs ({', '.join(p.name for p in ports)}); "
                                 f"pass a list of {len(ports)} code arrays")
        arrays = [input_codes] if len(ports) == 1 else list(input_codes)
        if len(arrays) != len(ports):
            raise CSimInputError(f"the model has {len(ports)} inputs ({', '.join(p.name for p in ports)}), "
                                 f"got {len(arrays)} arrays")
        checked = [_checked_codes(a, port) for a, port in zip(arrays, ports)]
        if len({len(a) for a in checked}) != 1:
            raise CSimInputError(f"the inputs have different numbers of events: {[len(a) for a in checked]}")
        return checked

    @staticmethod
    def _alloc(ports, n: int) -> list:
        return [np.empty((n, port.size), dtype=np.int64) for port in ports]

    def _outputs(self, outputs: list):
        if len(outputs) == 1:
            return outputs[0]
        return {port.name: codes for port, codes in zip(self.interface.outputs, outputs)}


def _checked_codes(codes, port) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise CSimInputError(f"input {port.name!r}: codes must be integers (raw codes of {port.type}), "
                             f"got dtype {codes.dtype}")
    if codes.ndim < 1 or int(np.prod(codes.shape[1:])) != port.size:
        raise CSimInputError(f"input {port.name!r}: expected shape (N, {port.size}), got {codes.shape}")
    codes = np.ascontiguousarray(codes.reshape(len(codes), port.size), dtype=np.int64)
    if codes.size and (codes.min() < port.type.min_code or codes.max() > port.type.max_code):
        bad = np.flatnonzero(((codes < port.type.min_code) | (codes > port.type.max_code)).any(axis=1))
        raise CSimInputError(f"input {port.name!r}: codes outside [{port.type.min_code}, {port.type.max_code}] "
                             f"(the range of {port.type}) in events {bad[:10].tolist()}")
    return codes


def _pointers(arrays: list, first_event: int = 0):
    """A C array of pointers to row `first_event` of each (N, size) int64 array."""
    return (ctypes.c_void_p * len(arrays))(*(a.ctypes.data + int(first_event) * a.strides[0] for a in arrays))


# ---- the generated entry point --------------------------------------------------------------------------
_ENTRY = """\
// Generated by firmware/csim.py: batched C-simulation of {top} on raw int64 codes, with trace collection.
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "{top}.h"
#include "nnet_utils/nnet_helpers.h"

namespace nnet {{
bool trace_enabled = false;
std::map<std::string, void *> *trace_outputs = NULL;
size_t trace_type_size = sizeof(double);
}} // namespace nnet
{using}
namespace {{

template <int W, bool S> int64_t sign_extend(uint64_t bits) {{
    return (S && W < 64) ? (int64_t)(bits << (64 - W)) >> (64 - W) : (int64_t)bits;
}}

template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O, int N>
void set_code(ap_fixed_base<W, I, S, Q, O, N> &x, int64_t code) {{ x.range(W - 1, 0) = (uint64_t)code; }}
template <int W, bool S> void set_code(ap_int_base<W, S> &x, int64_t code) {{ x.range(W - 1, 0) = (uint64_t)code; }}

template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O, int N>
int64_t get_code(const ap_fixed_base<W, I, S, Q, O, N> &x) {{
    return sign_extend<W, S>(x.range(W - 1, 0).to_uint64());
}}
template <int W, bool S> int64_t get_code(const ap_int_base<W, S> &x) {{
    return sign_extend<W, S>(x.range(W - 1, 0).to_uint64());
}}

// One event: inputs from row e of the input buffers, outputs to row e of the output buffers.
void run_event(int64_t e, const int64_t *const *in, int64_t *const *out) {{
{declare}
{load}
    {top}({args});
{store}
}}

// Codes of n traced values of a type with frac fractional bits; false if one is off that grid.
bool to_codes(const std::vector<double> &values, int frac, int64_t *codes) {{
    for (size_t i = 0; i < values.size(); i++) {{
        double scaled = std::ldexp(values[i], frac);
        if (scaled != std::nearbyint(scaled))
            return false;
        codes[i] = (int64_t)scaled;
    }}
    return true;
}}

}} // namespace

extern "C" {{

int csim_run(int64_t n, const int64_t *const *in, int64_t *const *out) {{
    for (int64_t e = 0; e < n; e++)
        run_event(e, in, out);
    return 0;
}}

// Returns 0, or 1 + the index of a traced layer whose value was not on its type's grid.
int csim_trace(int64_t n, const int64_t *const *in, int64_t *const *out, int64_t *const *traces) {{
    // one trailing sentinel entry keeps the arrays non-empty when nothing is traced
    static const int n_traced = {n_traced};
    static const char *const names[] = {{{trace_names}""}};
    static const int sizes[] = {{{trace_sizes}0}};
    static const int fracs[] = {{{trace_fracs}0}};
    std::vector<std::vector<double>> buffers(n_traced);
    std::map<std::string, void *> outputs;
    for (int t = 0; t < n_traced; t++) {{
        buffers[t].resize(sizes[t]);
        outputs[names[t]] = buffers[t].data();
    }}
    nnet::trace_outputs = &outputs;
    nnet::trace_enabled = true;
    int status = 0;
    for (int64_t e = 0; e < n && status == 0; e++) {{
        run_event(e, in, out);
        for (int t = 0; t < n_traced && status == 0; t++)
            if (!to_codes(buffers[t], fracs[t], traces[t] + e * sizes[t]))
                status = t + 1;
    }}
    nnet::trace_enabled = false;
    nnet::trace_outputs = NULL;
    return status;
}}

}} // extern "C"
"""


def entry_source(interface: ProjectInterface) -> str:
    """The C++ entry points `csim_run` and `csim_trace` for a project."""
    declare, load, store = [], [], []
    for k, port in enumerate(interface.inputs):
        declare.append(f"    {port.type_name} in{k}[{port.size}];")
        load.append(f"    for (int i = 0; i < {port.size}; i++)\n"
                    f"        set_code(in{k}[i], in[{k}][e * {port.size} + i]);")
    for k, port in enumerate(interface.outputs):
        declare.append(f"    {port.type_name} out{k}[{port.size}];")
        store.append(f"    for (int i = 0; i < {port.size}; i++)\n"
                     f"        out[{k}][e * {port.size} + i] = get_code(out{k}[i]);")
    args = [f"in{k}" for k in range(len(interface.inputs))] + [f"out{k}" for k in range(len(interface.outputs))]
    traced = interface.traced
    return _ENTRY.format(
        top=interface.top_function,
        using=f"using namespace {interface.namespace};\n" if interface.namespace else "",
        declare="\n".join(declare), load="\n".join(load), store="\n".join(store), args=", ".join(args),
        n_traced=len(traced),
        trace_names="".join(f"{json.dumps(p.name)}, " for p in traced),
        trace_sizes="".join(f"{p.size}, " for p in traced),
        trace_fracs="".join(f"{p.type.fractional}, " for p in traced),
    )
