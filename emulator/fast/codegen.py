"""Generate an LLVM module specialised to (part of) a manifest: weights as literals, casts proven no-ops dropped,
V events per SIMD vector, every value in the narrowest exact lane.

The module's entry, `emulate(inputs, outputs, first_block, n_blocks, stride)`, runs blocks of V events through
part functions called in turn: the first loads each input's rows (N, n) of int32 or int64 codes and transposes them
into one vector per element; the others run the layers (fused: values stay in registers within a part, and cross
parts through the frame, a scratch area that stays in L1/L2); each output element's V events are written to its row
of an (n, stride) int64 array. It returns how many blocks held an input code outside its type. Layers are generated
by the functions registered with `@generator(op)`; an op without one, or a layer its generator refuses
(UnsupportedType), is left to the reference kernels (emulator.fast.stages).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emulator.arith import cast_raw, type_spec
from emulator.fixed_type import FixedType, UnsupportedType
from emulator.manifest import Layer, Manifest
from emulator.plan import constant_code, exp_table_index, gather_index, im2col_index, pool_windows, scale_channel

from .casts import accumulate, aligned, cast, clamp_to_changes, make_pair, plan_accumulation, tree_sum
from .intervals import Range, union
from .vector_ir import Function, Module, Vec, lane_of

#: Events per vector: 16 int32 lanes fill an AVX-512 register (LLVM splits them on narrower machines).
VECTOR_EVENTS = 16
#: A convolution with more multiply-accumulates than this (pixels x non-zero weights) loops over its pixels.
UNROLL_MACS = 2048
#: A part function is closed after the layer that takes it past this many lines of IR.
PART_LINES = 1500
#: A multiply-accumulate layer with more int32 product steps than this is staged (SegmentCode.multiply_accumulate),
#: ACCUMULATORS outputs per part function.
STAGE_STEPS = 192
ACCUMULATORS = 12

#: Overflow modes under which a cast is monotone in its input (so inputs beyond its saturation can be clamped).
MONOTONE_OVERFLOW = ("SAT", "SAT_SYM")

GENERATORS: dict = {}


class LayerNotGenerated(UnsupportedType):
    """A layer the fast path has no code for; `layer` names it (the reference kernels run it instead)."""

    def __init__(self, layer: Layer, reason: str):
        super().__init__(f"layer {layer.name!r} ({layer.op}): {reason}")
        self.layer = layer.name


def generator(*ops: str):
    """Register `fn(g: SegmentCode, layer, inputs: list[Buffer]) -> Buffer` as the fast-path code of `ops`."""

    def wrap(fn):
        for op in ops:
            GENERATORS[op] = fn
        return fn

    return wrap


@dataclass
class Buffer:
    """A tensor's V-event vectors per element: SSA values of the current part function, or frame rows of `lane`
    bits from byte `memory` of the frame (one extra zero row after the last element, read by padding taps); with
    the proven range of every element."""

    type: FixedType
    ranges: list
    values: list | None = None
    memory: int | None = None
    lane: int = 0

    @property
    def size(self) -> int:
        return len(self.ranges)

    def value(self, f: Function, k: int) -> Vec:
        """Element k (-1 reads 0: padding)."""
        if k < 0:
            return Vec.const(0)
        if self.ranges[k].is_const:
            return Vec.const(self.ranges[k].lo)
        if self.values is not None:
            return self.values[k]
        return f.load_row(self.memory, self.lane, k, self.ranges[k])

    def span(self, rows) -> Range:
        """The union of the ranges of `rows` (-1: the zero of padding)."""
        return union(self.ranges[k] if k >= 0 else Range.const(0) for k in rows)


@dataclass(frozen=True)
class Segment:
    """Consecutive manifest layers generated together: tensors read from outside (name, type, size) and the
    tensors written for later stages or as model outputs."""

    layers: tuple
    inputs: tuple
    outputs: tuple


@dataclass
class Generated:
    """A generated module: LLVM IR text, events per vector, proven ranges and what was proven, per layer."""

    ir: str
    vector: int
    segment: Segment
    ranges: dict
    casts: dict = field(default_factory=dict)  # layer name -> (casts in its code, casts kept)
    notes: list = field(default_factory=list)


def whole_model(manifest: Manifest) -> Segment:
    return Segment(tuple(manifest.layers), tuple((t.name, t.type, t.size) for t in manifest.inputs),
                   tuple(manifest.outputs))


class SegmentCode:
    """Builds the module of one segment. Layers are generated into part functions of about PART_LINES lines each
    (LLVM's instruction scheduling grows faster than linearly with a function's straight-line length); values
    crossing parts go through the frame, a per-call scratch area. Generators use `f` (the current part),
    `module` and `manifest`."""

    def __init__(self, manifest: Manifest, segment: Segment, dtype, vector: int):
        self.manifest, self.segment, self.V = manifest, segment, vector
        self.dtype_bits = np.dtype(dtype).itemsize * 8
        self.module = Module(_function_attributes())
        self.parts = 0
        self.cast_tally = [0, 0]
        self.f = self._part()
        self.frame_bytes = 0
        self.constant_rows: list = []  # (byte offset, lane, code) written once per call
        self.notes: list = []
        self.casts: dict = {}

    def _part(self) -> Function:
        return Function(self.V, self.module, casts=self.cast_tally)

    def dry(self) -> Function:
        """A Function that only computes ranges."""
        return Function(self.V, self.module, dry=True)

    def note(self, text: str):
        self.notes.append(text)

    def in_memory(self, buf: Buffer) -> Buffer:
        """buf as frame rows (with the zero row): stored by the current part when it was SSA values."""
        if buf.memory is not None:
            return buf
        out = self.rows(buf.type, buf.ranges)
        for k in range(buf.size):
            if buf.ranges[k].is_const:
                self.constant_rows.append((out.memory, out.lane, k, buf.ranges[k].lo))
            else:
                self.f.store_row(out.memory, out.lane, k, buf.values[k])
        return out

    def rows(self, t: FixedType, ranges: list) -> Buffer:
        """New frame rows for elements with these ranges, and the zero row after them."""
        lane = lane_of(union([*ranges, Range.const(0)]))
        offset = self.frame((len(ranges) + 1) * self.V * lane // 8)
        self.constant_rows.append((offset, lane, len(ranges), 0))
        return Buffer(t, ranges, memory=offset, lane=lane)

    # ---- the module ----------------------------------------------------------------------------------
    def generate(self) -> Generated:
        seg = self.segment
        self.buffers, checks = {}, []
        for (name, t, size), j in zip(seg.inputs, range(len(seg.inputs))):
            self.buffers[name], lo, hi = self._load_input(self._pointer("%inputs", j), t, size)
            checks.append((lo, hi, t))
        self._count_bad_blocks(checks)
        outputs = {name: j for j, name in enumerate(seg.outputs)}
        for name in seg.outputs:
            if name in self.buffers:
                self._store_output(self._pointer("%outputs", outputs[name]), self.buffers[name])
        self.live = {name for layer in seg.layers for name in layer.inputs}
        self.close_part()
        for i, layer in enumerate(seg.layers):
            self.live = {name for later in seg.layers[i + 1:] for name in later.inputs}
            self.buffers[layer.name] = self._layer(layer, [self.buffers[name] for name in layer.inputs])
            if layer.name in outputs:
                self._store_output(self._pointer("%outputs", outputs[layer.name]), self.buffers[layer.name])
            if len(self.f.lines) > PART_LINES and i + 1 < len(seg.layers):
                self.close_part()
        self.close_part()
        self._main()
        ranges = {name: buf.ranges for name, buf in self.buffers.items()}
        return Generated(self.module.text(), self.V, seg, ranges, self.casts, self.notes)

    def close_part(self):
        """End the current part function (the tensors later layers read are stored to the frame first) and start
        the next one."""
        for name in self.live & self.buffers.keys():
            self.buffers[name] = self.in_memory(self.buffers[name])
        self.f.instr("ret void")
        self.module.add_function(f"void @part{self.parts}(ptr noalias %frame, ptr %inputs, ptr %outputs, "
                                 f"i64 %event0, i64 %stride, ptr noalias %bad, ptr noalias %words) noinline", self.f)
        self.parts += 1
        self.f = self._part()

    def frame(self, size: int) -> int:
        """`size` bytes of the frame, at a multiple of 64; returns their offset."""
        offset = -(-self.frame_bytes // 64) * 64
        self.frame_bytes = offset + size
        return offset

    def multiply_accumulate(self, layer: Layer, columns: list, biases: list, x_frac: int) -> Buffer:
        """The outputs res(acc(b_j) + sum acc(x*w)) of columns[j] = [(key, x, w)] (casts.plan_accumulation). A
        large exact layer is staged: its 16-bit pair vectors are stored to the frame, then each group of outputs is
        a part function of its own that reads them (its accumulators stay in registers; one long function would be
        scheduled into a mess of spills)."""
        plans = [plan_accumulation(terms, bias, x_frac, layer) for terms, bias in zip(columns, biases)]
        steps = [step for plan in plans for _, step in plan.steps]
        staged = (sum(len(plan.steps) for plan in plans) > STAGE_STEPS and all(p.kind == "dots" for p in plans)
                  and all(step.kind != "plain" for step in steps))
        if not staged:
            values = accumulate(self.f, plans, layer)
            return Buffer(layer.result, [v.range for v in values], values=values)
        out = self.rows(layer.result, [v.range for v in accumulate(self.dry(), plans, layer)])
        pairs = FramePairs(self, steps)
        for first in range(0, len(plans), ACCUMULATORS):
            self.close_part()
            values = accumulate(self.f, plans[first:first + ACCUMULATORS], layer, pairs, ACCUMULATORS)
            for j, v in enumerate(values, first):
                self.f.store_row(out.memory, out.lane, j, v)
        self.close_part()
        return out

    def _main(self):
        """emulate(): the frame and its constant rows, then the part functions on every block."""
        f = self._part()
        f.entry.append(f"  %frame = alloca i8, i64 {max(self.frame_bytes, 64)}, align 64")
        f.entry.append("  %bad = alloca i64, align 8")
        f.entry.append("  store i64 0, ptr %bad, align 8")
        for offset, lane, row, code in self.constant_rows:
            pointer = f.row_pointer(offset, lane, row)
            f.instr(f"store {f.vt(lane)} {f.splat(code, lane)}, ptr {pointer}, align {f.row_alignment(lane)}")
        with f.loop("%n_blocks") as b:
            event0 = f.emit(f"mul nuw i64 {f.emit(f'add nuw i64 %first_block, {b}', 'i')}, {self.V}", "i")
            for k in range(self.parts):
                f.instr(f"call void @part{k}(ptr %frame, ptr %inputs, ptr %outputs, i64 {event0}, i64 %stride, "
                        f"ptr %bad, ptr @words)")
        f.instr(f"ret i64 {f.emit('load i64, ptr %bad, align 8', 'i')}")
        self.module.add_function("i64 @emulate(ptr %inputs, ptr %outputs, i64 %first_block, i64 %n_blocks, "
                                 "i64 %stride)", f)

    def _layer(self, layer: Layer, inputs: list) -> Buffer:
        emit = GENERATORS.get(layer.op)
        if emit is None:
            raise LayerNotGenerated(layer, f"op {layer.op!r} has no fast-emulator generator")
        self.cast_tally[:] = [0, 0]
        try:
            out = emit(self, layer, inputs)
        except UnsupportedType as error:
            raise LayerNotGenerated(layer, str(error)) from error
        kept, seen = self.cast_tally
        self.casts[layer.name] = (seen, kept)
        lanes = "frame rows" if out.memory is not None else "registers"
        self.note(f"{layer.name} ({layer.op}): {lanes}; casts in the code: {seen}, {seen - kept} proven no-ops, "
                  f"{kept} kept")
        return out

    def _pointer(self, table: str, j: int) -> str:
        f = self.f
        slot = f"%slot{table[1:]}{j}"
        f.entry.append(f"  {slot} = getelementptr ptr, ptr {table}, i64 {j}")
        f.entry.append(f"  {slot}.p = load ptr, ptr {slot}, align 8")
        return f"{slot}.p"

    # ---- moving rows in and out ------------------------------------------------------------------------
    def _windows(self, n: int) -> list:
        """First elements of the V-wide windows covering n elements: the last one is moved back to end at n (when
        n >= V), so no row read runs past its event."""
        starts = list(range(0, n - self.V + 1, self.V))
        if n % self.V and n >= self.V:
            starts.append(n - self.V)
        return starts or [0]

    def _load_row(self, bits: int, ptr: str, n: int) -> str:
        """V elements at ptr, masked to the first n when the row is shorter than V."""
        f, vt = self.f, f"<{self.V} x i{bits}>"
        if n >= self.V:
            return f.emit(f"load {vt}, ptr {ptr}, align {bits // 8}")
        mask = "<" + ", ".join(f"i1 {'true' if i < n else 'false'}" for i in range(self.V)) + ">"
        fn = self.module.intrinsic(f"llvm.masked.load.v{self.V}i{bits}.p0", vt, ["ptr", "i32", f"<{self.V} x i1>", vt])
        return f.emit(f"call {vt} {fn}(ptr {ptr}, i32 {bits // 8}, <{self.V} x i1> {mask}, {vt} zeroinitializer)")

    def _element_pointer(self, base: str, bits: int, e: int, n: int, first: int) -> str:
        f = self.f
        event = f.emit(f"add nuw i64 %event0, {e}", "i")
        offset = f.emit(f"add nuw i64 {f.emit(f'mul nuw i64 {event}, {n}', 'i')}, {first}", "i")
        return f.emit(f"getelementptr i{bits}, ptr {base}, i64 {offset}", "p")

    def _load_input(self, ptr: str, t: FixedType, n: int):
        """Buffer of an input's V events, and the running min and max of its raw codes (in the array's width)."""
        f, bits = self.f, self.dtype_bits
        lane = lane_of(Range.of(t))
        values: list = [None] * n
        lo = hi = None
        for first in self._windows(n):
            rows = []
            for e in range(self.V):
                row = self._load_row(bits, self._element_pointer(ptr, bits, e, n, first), n)
                lo = row if lo is None else self._vector_minmax("smin", lo, row, bits)
                hi = row if hi is None else self._vector_minmax("smax", hi, row, bits)
                rows.append(row if lane == bits else f.emit(f"trunc <{self.V} x i{bits}> {row} to {f.vt(lane)}"))
            for k, column in enumerate(self._transpose(rows, lane)):
                if first + k < n:
                    values[first + k] = Vec(column, lane, Range.of(t))
        return Buffer(t, [Range.of(t)] * n, values=values), lo, hi

    def _vector_minmax(self, op: str, a: str, b: str, bits: int) -> str:
        vt = f"<{self.V} x i{bits}>"
        fn = self.module.intrinsic(f"llvm.{op}.v{self.V}i{bits}", vt, [vt, vt])
        return self.f.emit(f"call {vt} {fn}({vt} {a}, {vt} {b})")

    def _count_bad_blocks(self, checks: list):
        """Add 1 to %bad when any input code of the block lies outside its type."""
        f, bits, vt = self.f, self.dtype_bits, f"<{self.V} x i{self.dtype_bits}>"
        flags = []
        for lo, hi, t in checks:
            for op, vec, pred, limit in (("smin", lo, "slt", t.min_code), ("smax", hi, "sgt", t.max_code)):
                fn = self.module.intrinsic(f"llvm.vector.reduce.{op}.v{self.V}i{bits}", f"i{bits}", [vt])
                extreme = f.emit(f"call i{bits} {fn}({vt} {vec})")
                flags.append(f.emit(f"icmp {pred} i{bits} {extreme}, {limit}", "m"))
        any_bad = flags[0]
        for flag in flags[1:]:
            any_bad = f.emit(f"or i1 {any_bad}, {flag}", "m")
        count = f.emit("load i64, ptr %bad, align 8", "i")
        flag = f.emit(f"zext i1 {any_bad} to i64", "i")
        f.instr(f"store i64 {f.emit(f'add i64 {count}, {flag}', 'i')}, ptr %bad, align 8")

    def _store_output(self, ptr: str, buf: Buffer):
        """Write a tensor's V events into its (n, stride) int64 rows: element k of event e at k * stride + e."""
        f = self.f
        for k in range(buf.size):
            position = f.emit(f"add nuw i64 {f.emit(f'mul nuw i64 %stride, {k}', 'i')}, %event0", "i")
            f.instr(f"store <{self.V} x i64> {f.operand(buf.value(f, k), 64)}, "
                    f"ptr {f.emit(f'getelementptr i64, ptr {ptr}, i64 {position}', 'p')}, align 8")

    def _transpose(self, rows: list, lane: int) -> list:
        """The V x V transpose of V vectors by swapping off-diagonal blocks of 1, 2, 4, ... elements between rows
        i and i + B: each round a two-input shuffle per row, the first ones inside 128-bit lanes (x86: unpack,
        then 128- and 256-bit block shuffles)."""
        f, V = self.f, self.V
        vt = f.vt(lane)
        B = 1
        while B < V:
            masks = [[c + k + half * B + V * side for c in range(0, V, 2 * B) for side in (0, 1) for k in range(B)]
                     for half in (0, 1)]
            new = list(rows)
            for i in (i for i in range(V) if not i & B):
                for target, mask in zip((i, i + B), masks):
                    text = ", ".join(f"i32 {m}" for m in mask)
                    new[target] = f.emit(f"shufflevector {vt} {rows[i]}, {vt} {rows[i + B]}, <{V} x i32> <{text}>")
            rows, B = new, 2 * B
        return rows


class FramePairs:
    """The 16-bit pair vectors of staged steps: made and stored to frame rows once per block by the current part,
    loaded (once per part) by the parts that multiply them."""

    def __init__(self, g: SegmentCode, steps: list):
        unique = {}
        for step in steps:
            if step.kind in ("pair", "split"):
                unique.setdefault(step.vector_key, step)
        self.rows = {key: k for k, key in enumerate(unique)}
        self.offset = g.frame(len(unique) * g.V * 4)
        for key, step in unique.items():
            g.f.store_pair(self.offset, self.rows[key], make_pair(g.f, step))
        self._part, self._loaded = None, {}

    def vector(self, f: Function, step) -> str:
        if f is not self._part:
            self._part, self._loaded = f, {}
        key = step.vector_key
        if key not in self._loaded:
            self._loaded[key] = f.widen(f.load_pair(self.offset, self.rows[key]))
        return self._loaded[key]


def _function_attributes() -> str:
    """Let LLVM use the machine's widest vector registers for the explicit vectors."""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    width = 512 if features.get("avx512f") else 256
    return f'"min-legal-vector-width"="{width}" "prefer-vector-width"="{width}" nounwind'


def generate(manifest: Manifest, segment: Segment | None = None, dtype=np.int64,
             vector: int = VECTOR_EVENTS) -> Generated:
    """The module of `segment` (default: the whole model) for input codes of `dtype` (int32 or int64);
    UnsupportedType naming the layer when a layer cannot be generated."""
    manifest.validate()
    return SegmentCode(manifest, segment or whole_model(manifest), dtype, vector).generate()


# ---- layer generators ----------------------------------------------------------------------------------
def _elementwise(g: SegmentCode, layer: Layer, x: Buffer, fn) -> Buffer:
    values = [fn(x.value(g.f, k)) for k in range(x.size)]
    return Buffer(layer.result, [v.range for v in values], values=values)


@generator("batchnorm")
def _batchnorm(g: SegmentCode, layer: Layer, inputs: list) -> Buffer:
    (x,) = inputs
    x_frac, s_t, b_t = x.type.fractional, layer.types["scale"], layer.types["bias"]
    frac = max(x_frac + s_t.fractional, b_t.fractional)
    channel = scale_channel(layer)
    scale, bias = layer.tensors["scale"].ravel(), layer.tensors["bias"].ravel()
    spec = type_spec(layer.result)
    values = []
    for k in range(layer.size):
        s_code = int(scale[channel[k]]) << (frac - x_frac - s_t.fractional)
        b_code = int(bias[channel[k]]) << (frac - b_t.fractional)
        # the exact value x*s + b on the coarsest grid that holds it: narrower lanes, the same cast result
        zeros = min(_trailing_zeros(s_code), _trailing_zeros(b_code))
        s_code, b_code = s_code >> zeros, b_code >> zeros
        xk = x.value(g.f, k)
        if layer.result.overflow in MONOTONE_OVERFLOW:
            xk = clamp_to_changes(g.f, xk, lambda v: cast_raw(v * s_code + b_code, frac - zeros, *spec),
                                  lambda r: r.scale(s_code) + Range.const(b_code))
        v = g.f.add(g.f.scale(xk, s_code), Vec.const(b_code))
        values.append(cast(g.f, v, frac - zeros, layer.result))
    return Buffer(layer.result, [v.range for v in values], values=values)


def _trailing_zeros(code: int) -> int:
    """Trailing zero bits of a code; 0 has as many as any other (1024 stands for 'all')."""
    return (code & -code).bit_length() - 1 if code else 1024


@generator("relu", "leaky_relu")
def _rectifier(g: SegmentCode, layer: Layer, inputs: list) -> Buffer:
    (x,) = inputs
    alpha, alpha_frac = (layer.params["alpha"], layer.types["param"].fractional) if layer.op == "leaky_relu" else (0, 0)
    f, x_frac, res = g.f, x.type.fractional, layer.result
    spec = type_spec(res)

    def rectify(v: Vec) -> Vec:
        parts = []
        if v.range.hi > 0:
            parts.append(cast(f, v.proven(Range(max(v.range.lo, 1), v.range.hi)), x_frac, res))
        if v.range.lo <= 0:
            negative = v.proven(Range(v.range.lo, min(v.range.hi, 0)))
            if res.overflow in MONOTONE_OVERFLOW:  # the positive lanes take the other part of the select
                negative = clamp_to_changes(f, negative, lambda n: cast_raw(n * alpha, x_frac + alpha_frac, *spec),
                                            lambda r: r.scale(alpha))
            parts.append(cast(f, f.scale(negative, alpha), x_frac + alpha_frac, res))
        if len(parts) == 1:
            return parts[0]
        return f.select(f.compare("sgt", v, Vec.const(0)), *parts)

    return _elementwise(g, layer, x, rectify)


@generator("linear", "reshape", "zeropad2d", "upsampling2d")
def _gather(g: SegmentCode, layer: Layer, inputs: list) -> Buffer:
    (x,) = inputs
    values = [cast(g.f, x.value(g.f, int(k)), x.type.fractional, layer.result) for k in gather_index(layer)]
    return Buffer(layer.result, [v.range for v in values], values=values)


@generator("dense")
def _dense(g: SegmentCode, layer: Layer, inputs: list) -> Buffer:
    (x,) = inputs
    w, b = layer.tensors["weight"].reshape(x.size, -1), layer.tensors["bias"].ravel()
    g.note(f"{layer.name}: {np.count_nonzero(w)} of {w.size} weights non-zero")
    inputs = [x.value(g.f, i) for i in range(x.size)]
    columns = [[(i, inputs[i], int(w[i, j])) for i in range(x.size)] for j in range(w.shape[1])]
    return g.multiply_accumulate(layer, columns, [int(v) for v in b], x.type.fractional)


@generator("conv2d")
def _conv2d(g: SegmentCode, layer: Layer, inputs: list) -> Buffer:
    """Unrolled over pixels when small (padding taps vanish), else one loop over pixels with the taps of each
    filter as literals, reading its input from frame rows."""
    (x,) = inputs
    index = im2col_index(layer.params, padded=True)
    n_pix, n_taps = index.shape
    w, b = layer.tensors["weight"].reshape(n_taps, -1), layer.tensors["bias"].ravel()
    n_filt, x_frac = w.shape[1], x.type.fractional
    g.note(f"{layer.name}: {np.count_nonzero(w)} of {w.size} weights non-zero")

    def pixel(read) -> list:
        """The n_filt columns [(tap, x, w)] of one pixel whose tap t holds read(t)."""
        return [[(t, read(t), int(w[t, filt])) for t in range(n_taps)] for filt in range(n_filt)]

    biases = [int(v) for v in b]
    if n_pix * np.count_nonzero(w) <= UNROLL_MACS:
        columns = []
        for p in range(n_pix):
            taps = [x.value(g.f, int(k)) for k in index[p]]
            columns += pixel(taps.__getitem__)
        return g.multiply_accumulate(layer, columns, biases * n_pix, x_frac)

    def outputs(f: Function, read) -> list:
        plans = [plan_accumulation(column, bias, x_frac, layer) for column, bias in zip(pixel(read), biases)]
        return accumulate(f, plans, layer)

    dry = g.dry()
    ranges = [y.range for p in range(n_pix) for y in outputs(dry, lambda t: x.value(dry, int(index[p, t])))]
    x, out, f = g.in_memory(x), g.rows(layer.result, ranges), g.f
    rows = g.module.table(np.where(index >= 0, index, x.size).ravel(), 32)
    used = np.flatnonzero(w.any(axis=1))
    with f.loop(n_pix) as p:
        first_tap = f.emit(f"mul nuw i64 {p}, {n_taps}", "i")
        taps = {}
        for t in used:
            row = f.load_index(rows, f.emit(f"add nuw i64 {first_tap}, {t}", "i"))
            taps[t] = f.load_row(x.memory, x.lane, row, x.span(index[:, t]))
        first_out = f.emit(f"mul nuw i64 {p}, {n_filt}", "i")
        for filt, y in enumerate(outputs(f, lambda t: taps.get(t, Vec.const(0)))):
            f.store_row(out.memory, out.lane, f.emit(f"add nuw i64 {first_out}, {filt}", "i"), y)
    return out


@generator("avgpool2d")
def _avgpool2d(g: SegmentCode, layer: Layer, inputs: list) -> Buffer:
    """acc = acc(acc + x) over the window's cells in order, then C division by the count, then res."""
    (x,) = inputs
    f, acc_t, res = g.f, layer.types["accum"], layer.result
    x_frac, acc_frac = x.type.fractional, acc_t.fractional
    frac = max(x_frac, acc_frac)
    windows, counts = pool_windows(layer.params)
    values = []
    for cells, count in zip(windows, counts):
        acc = Vec.const(0)
        for cell in cells[cells >= 0]:
            total = f.add(aligned(f, acc, acc_frac, frac), aligned(f, x.value(f, int(cell)), x_frac, frac))
            acc = cast(f, total, frac, acc_t)
        values.append(cast(f, _divide_toward_zero(f, acc, int(count)), acc_frac, res))
    return Buffer(res, [v.range for v in values], values=values)


def _divide_toward_zero(f: Function, acc: Vec, count: int) -> Vec:
    """C integer division acc / count (count > 0)."""
    if acc.range.lo >= 0:
        return f.udiv(acc, count)
    negative = f.compare("slt", acc, Vec.const(0))
    magnitude = f.select(negative, f.sub(Vec.const(0), acc), acc).proven(Range(0, max(-acc.range.lo, acc.range.hi)))
    quotient = f.udiv(magnitude, count)
    return f.select(negative, f.sub(Vec.const(0), quotient), quotient)


@generator("kl_divergence")
def _kl_divergence(g: SegmentCode, layer: Layer, inputs: list) -> Buffer:
    mean, logvar = inputs
    f, p = g.f, layer.params
    acc_t, table_t, res = layer.types["accum"], layer.types["exp_table"], layer.result
    acc_frac, lv_frac, m_frac = acc_t.fractional, logvar.type.fractional, mean.type.fractional
    table = layer.tensors["exp_table"].ravel().astype(np.int64)
    scale, shift, offset = exp_table_index(layer, g.manifest)
    last, one = len(table) - 1, constant_code(1.0, logvar.type)
    f2 = max(table_t.fractional, acc_frac)
    table_lane = lane_of(Range(int(table.min()), int(table.max())))
    name = g.module.table(table, table_lane)
    leaves = []
    for i in range(p["n_in"]):
        m, lv = mean.value(f, i), logvar.value(f, i)
        sq = cast(f, f.square(m), 2 * m_frac, acc_t)
        k = cast(f, f.add(Vec.const(one), lv), lv_frac, acc_t)
        index = f.clamp(f.add(f.ashr(f.scale(lv, scale), shift), Vec.const(offset)), 0, last)
        if index.is_const:
            exp = Vec.const(int(table[index.code]))
        else:
            used = table[index.range.lo:index.range.hi + 1]
            exp = f.gather(name, len(table), table_lane, index, Range(int(used.min()), int(used.max())))
        k = cast(f, f.sub(aligned(f, k, acc_frac, f2), aligned(f, exp, table_t.fractional, f2)), f2, acc_t)
        leaves.append(cast(f, f.sub(k, sq), acc_frac, acc_t))
    total = tree_sum(f, leaves, acc_frac, acc_t)
    total = cast(f, f.scale(total, constant_code(1.0 / p["n_in"], acc_t)), 2 * acc_frac, acc_t)
    y = cast(f, f.scale(total, constant_code(-0.5, res)), res.fractional + acc_frac, res)
    return Buffer(res, [y.range], values=[y])


@generator("mse")
def _mse(g: SegmentCode, layer: Layer, inputs: list) -> Buffer:
    ref, rec = inputs
    f = g.f
    diff_t, sq_t, acc_t = layer.types["diff"], layer.types["square"], layer.types["accum"]
    frac = max(ref.type.fractional, rec.type.fractional)
    leaves = []
    for i in range(layer.params["n_in"]):
        a = aligned(f, rec.value(f, i), rec.type.fractional, frac)
        d = cast(f, f.sub(a, aligned(f, ref.value(f, i), ref.type.fractional, frac)), frac, diff_t)
        s = cast(f, f.square(d), 2 * diff_t.fractional, sq_t)
        leaves.append(cast(f, s, sq_t.fractional, acc_t))
    total = tree_sum(f, leaves, acc_t.fractional, acc_t)
    mean = cast(f, f.scale(total, constant_code(1.0 / layer.params["n_in"], acc_t)), 2 * acc_t.fractional, acc_t)
    y = cast(f, mean, acc_t.fractional, layer.result)
    return Buffer(layer.result, [y.range], values=[y])
