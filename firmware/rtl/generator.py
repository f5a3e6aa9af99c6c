"""`generate_rtl(manifest, out_dir)`: one Verilog-2001 file with a pipelined, fully parallel design (II = 1).

Top-level ports follow what Vivado HLS makes of an hls4ml 1.3 io_parallel project (`#pragma HLS ARRAY_RESHAPE` on
the input, `ARRAY_PARTITION` on the outputs, `INTERFACE ap_vld` on both, block-level ap_ctrl_hs):
  ap_clk, ap_rst (synchronous, active high), ap_start, ap_done, ap_idle, ap_ready;
  input  <input>_V  [size*W-1:0] (element i in bits [i*W +: W]) and <input>_V_ap_vld   (input_style="reshaped"),
     or  <input>_<i>_V [W-1:0] for each element, no valid (input_style="partitioned", ap_none);
  output <output>_<i>_V [W-1:0] and <output>_<i>_V_ap_vld for each element of each output layer.
An event is accepted in a cycle with ap_start (and the input's ap_vld) high; its outputs, with their ap_vld and
ap_done, are high exactly `latency` cycles later. Registers follow every `pipeline`-th layer and every output
layer; a tensor read by a later stage is delayed through registers to that stage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from emulator.fixed_type import FixedType, UnsupportedType
from emulator.manifest import Manifest, ManifestError

from ..files import replace_text
from .casts import CastLibrary
from .ops import LayerBuild, generate_layer
from .verilog import FILE_HEADER, Body, Value, extended, identifier

INPUT_STYLES = ("reshaped", "partitioned")


@dataclass(frozen=True)
class PortGroup:
    """One tensor at the top level: `size` elements of `width` bits each (codes of `type`), ports named from `base`."""

    tensor: str
    base: str
    size: int
    type: FixedType

    @property
    def width(self) -> int:
        return self.type.width


@dataclass(frozen=True)
class Interface:
    """The ports of a top module, generated here or by Vivado HLS for the same hls4ml project."""

    top: str
    input: PortGroup
    outputs: tuple
    input_style: str = "reshaped"

    def __post_init__(self):
        if self.input_style not in INPUT_STYLES:
            raise ValueError(f"input_style {self.input_style!r} is not one of {', '.join(INPUT_STYLES)}")

    @property
    def input_valid(self):
        """Name of the input's ap_vld port, or None (partitioned inputs under ap_none)."""
        return f"{self.input.base}_V_ap_vld" if self.input_style == "reshaped" else None

    def input_ports(self) -> list:
        """(name, width) of the input data ports, element 0 first for partitioned inputs."""
        group = self.input
        if self.input_style == "reshaped":
            return [(f"{group.base}_V", group.size * group.width)]
        return [(f"{group.base}_{i}_V", group.width) for i in range(group.size)]

    @staticmethod
    def output_ports(group: PortGroup) -> list:
        """(data port, valid port) of each element of an output group."""
        return [(f"{group.base}_{i}_V", f"{group.base}_{i}_V_ap_vld") for i in range(group.size)]


@dataclass(frozen=True)
class RtlDesign:
    """Generated sources with their interface and timing: outputs valid `latency` cycles after the input is taken."""

    interface: Interface
    sources: tuple
    latency: int
    ii: int
    content_hash: str

    @property
    def top(self) -> str:
        return self.interface.top


def manifest_interface(manifest: Manifest, top: str = "myproject", input_style: str = "reshaped",
                       port_names: dict | None = None) -> Interface:
    """The Interface of a manifest's design; `port_names` maps tensor names to port base names (default: the
    tensor name made a Verilog identifier), e.g. {"kl": "layer13_out"} for RTL that Vivado HLS generated."""
    names = port_names or {}
    if len(manifest.inputs) != 1:
        raise UnsupportedType(f"model {manifest.name!r} has {len(manifest.inputs)} inputs "
                              f"({', '.join(t.name for t in manifest.inputs)}); the generated top level, like the "
                              f"co-simulation harness, takes one input tensor")
    spec = manifest.input
    inp = PortGroup(spec.name, names.get(spec.name, identifier(spec.name)), spec.size, spec.type)
    outputs = tuple(PortGroup(name, names.get(name, identifier(name)), manifest.layer(name).size,
                              manifest.layer(name).result) for name in manifest.outputs)
    return Interface(top, inp, outputs, input_style)


def _needed_layers(manifest: Manifest) -> list:
    """The layers the outputs depend on, in manifest order."""
    needed = set(manifest.outputs)
    for layer in reversed(manifest.layers):
        if layer.name in needed:
            needed.update(layer.inputs)
    return [layer for layer in manifest.layers if layer.name in needed]


def _layer_module(name: str, layer, manifest: Manifest, ranges: dict) -> tuple:
    """Verilog of one layer's combinational module (ports x0, x1, ... and y) and its outputs' code ranges."""
    body, casts, extra = Body(), CastLibrary(), []
    inputs, types, ports = [], [], []
    for k, src in enumerate(layer.inputs):
        t = manifest.producer_type(src)
        elements = []
        for i, (lo, hi) in enumerate(ranges[src]):
            if lo == hi:
                elements.append(Value.const(lo, t.fractional))
            else:
                elements.append(Value(f"x{k}[{(i + 1) * t.width - 1}:{i * t.width}]", t.width, t.fractional,
                                      t.signed, lo, hi))
        inputs.append(elements)
        types.append(t)
        ports.append(f"  input  wire [{len(elements) * t.width - 1}:0] x{k},")
    outputs = generate_layer(LayerBuild(layer, inputs, types, body, casts, extra))
    result = layer.result
    if len(outputs) != layer.size:
        raise ManifestError(f"layer {layer.name!r}: {len(outputs)} outputs generated for shape {layer.shape}")
    codes = [extended(v if v.width == result.width else body.named(v), result.width) for v in outputs]
    text = "\n".join([
        f"// Layer {layer.name!r} ({layer.op}) -> {result}, {layer.size} elements; combinational.",
        "// Value ranges are tracked exactly, so bits that can only repeat the sign, inputs multiplied by zero",
        "// weights or constant, and the bits each cast mode ignores are never read: unread bits are expected here.",
        "/* verilator lint_off UNUSEDSIGNAL */",
        f"module {name} (",
        *ports,
        f"  output wire [{layer.size * result.width - 1}:0] y",
        ");",
        *([casts.text()] if casts.functions else []),
        *extra,
        body.text(),
        f"  assign y = {{{', '.join(reversed(codes))}}};",
        "endmodule",
        "/* verilator lint_on UNUSEDSIGNAL */",
        "",
    ])
    return text, [(v.lo, v.hi) for v in outputs]


class _Pipeline:
    """The top module's tensors: each a vector wire available from some cycle on, with delay registers on demand."""

    def __init__(self):
        self.lines = []
        self.cycle = {}
        self.vector = {}
        self.width = {}
        self._delayed = {}

    def define(self, tensor: str, vector: str, width: int, cycle: int):
        self.vector[tensor], self.width[tensor], self.cycle[tensor] = vector, width, cycle

    def register(self, source: str, name: str, width: int) -> str:
        self.lines.append(f"  reg  [{width - 1}:0] {name};")
        self.lines.append(f"  always @(posedge ap_clk) {name} <= {source};")
        return name

    def at(self, tensor: str, cycle: int) -> str:
        """The tensor's vector as seen in `cycle` (>= the cycle it is computed in): delayed through registers."""
        vector, have = self.vector[tensor], self.cycle[tensor]
        for c in range(have + 1, cycle + 1):
            key = (tensor, c)
            if key not in self._delayed:
                self._delayed[key] = self.register(vector, f"d{c}_{self.vector[tensor]}", self.width[tensor])
            vector = self._delayed[key]
        return vector


def generate_rtl(manifest: Manifest, out_dir, pipeline: int = 1, top: str = "myproject",
                 input_style: str = "reshaped", port_names: dict | None = None) -> RtlDesign:
    """Write `<out_dir>/<top>.v` implementing the manifest bit for bit; registers after every `pipeline` layers
    (0: only at the outputs). Returns the design with its latency in clock cycles (II is always 1)."""
    manifest.validate()
    if not isinstance(pipeline, int) or pipeline < 0:
        raise ValueError(f"pipeline must be a non-negative integer (layers per register stage), got {pipeline!r}")
    interface = manifest_interface(manifest, identifier(top), input_style, port_names)
    spec = manifest.input
    ranges = {spec.name: [(spec.type.min_code, spec.type.max_code)] * spec.size}
    modules, instances = [], _Pipeline()
    instances.define(spec.name, "x_input", spec.size * spec.type.width, 0)
    layers = _needed_layers(manifest)
    for number, layer in enumerate(layers, start=1):
        name = f"{interface.top}_{identifier(layer.name)}"
        text, ranges[layer.name] = _layer_module(name, layer, manifest, ranges)
        modules.append(text)
        cycle = max(instances.cycle[src] for src in layer.inputs)
        width = layer.size * layer.result.width
        wire = f"t_{identifier(layer.name)}"
        ports = ", ".join(f".x{k}({instances.at(src, cycle)})" for k, src in enumerate(layer.inputs))
        instances.lines.append(f"  wire [{width - 1}:0] {wire};")
        instances.lines.append(f"  {name} u_{identifier(layer.name)} ({ports}, .y({wire}));")
        if (pipeline and number % pipeline == 0) or layer.name in manifest.outputs:
            instances.define(layer.name, instances.register(wire, f"r_{identifier(layer.name)}", width), width,
                             cycle + 1)
        else:
            instances.define(layer.name, wire, width, cycle)
    latency = max(instances.cycle[name] for name in manifest.outputs)
    text = FILE_HEADER + "\n".join(modules) + _top_module(interface, instances, latency)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{interface.top}.v"
    if not path.is_file() or path.read_text() != text:
        replace_text(path, text)  # a simulator of another process may be reading the old one
    digest = hashlib.sha256(text.encode()).hexdigest()
    return RtlDesign(interface, (path,), latency, 1, digest)


def _top_module(interface: Interface, tensors: _Pipeline, latency: int) -> str:
    group = interface.input
    ports = ["  input  wire ap_clk,", "  input  wire ap_rst,", "  input  wire ap_start,",
             "  output wire ap_done,", "  output wire ap_idle,", "  output wire ap_ready,"]
    ports += [f"  input  wire [{width - 1}:0] {name}," for name, width in interface.input_ports()]
    if interface.input_valid:
        ports.append(f"  input  wire {interface.input_valid},")
    body = []
    for out in interface.outputs:
        vector = tensors.at(out.tensor, latency)
        for i, (data, valid) in enumerate(interface.output_ports(out)):
            ports += [f"  output wire [{out.width - 1}:0] {data},", f"  output wire {valid},"]
            body += [f"  assign {data} = {vector}[{(i + 1) * out.width - 1}:{i * out.width}];",
                     f"  assign {valid} = valid_pipe[{latency - 1}];"]
    ports[-1] = ports[-1].rstrip(",")
    accept = f"ap_start & {interface.input_valid}" if interface.input_valid else "ap_start"
    inputs = [name for name, _ in interface.input_ports()]
    shift = "accept" if latency == 1 else f"{{valid_pipe[{latency - 2}:0], accept}}"
    return "\n".join([
        f"// Top level: {group.size} inputs of {group.type}, outputs {', '.join(o.tensor for o in interface.outputs)};",
        f"// latency {latency} cycles, one new event every cycle.",
        f"module {interface.top} (",
        *ports,
        ");",
        f"  wire accept = {accept};",
        f"  wire [{group.size * group.width - 1}:0] x_input = {{{', '.join(reversed(inputs))}}};",
        f"  reg  [{latency - 1}:0] valid_pipe;",
        "  always @(posedge ap_clk) begin",
        f"    if (ap_rst) valid_pipe <= {latency}'b0;",
        f"    else valid_pipe <= {shift};",
        "  end",
        "  assign ap_ready = accept;",
        f"  assign ap_done = valid_pipe[{latency - 1}];",
        "  assign ap_idle = ~ap_start & ~(|valid_pipe);",
        *tensors.lines,
        *body,
        "endmodule",
        "",
    ])
