"""Generate the source of a numba module specialised to one manifest: weights as literals, proven-no-op casts dropped.

Layout: a block of B events at a time, every layer output stored structure-of-arrays (one row of B events per
element, `s32[row, e]` or `s64[row, e]`), so each generated `for e in range(B)` loop is SIMD over events and all
layers of a block run back to back while the block stays in cache. Each value is computed exactly in int64 by numba
and stored in the narrowest lane the interval analysis proves it fits (`I32(...)`, which LLVM turns into int32 SIMD).
Casts whose rounding or overflow the analysis cannot rule out are emitted with the semantics of `arith.cast_raw`,
specialised to the mode; WRAP_SM casts call `arith.cast_raw` itself.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import numpy as np

from emulator.arith import OVERFLOW_ID, ROUNDING_ID, cast_raw, type_spec
from emulator.fixed_type import FixedType, UnsupportedType
from emulator.manifest import Layer, Manifest
from emulator.plan import constant_code, im2col_index

from .intervals import INT32, INT64, Range, cast_range, prove_cast, union

#: Bytes of one layer's input plus output rows per event that a block may hold (about an L1 data cache).
BLOCK_BYTES = 32 * 1024
MIN_BLOCK, MAX_BLOCK = 16, 256
_LOCAL = re.compile(r"\b(e|k|p|base|dst|src|t\d+)\b")


@dataclass(frozen=True)
class Value:
    """An integer expression of the current event `e` (a temporary, a buffer element or a literal) and its range."""

    expr: str
    range: Range

    @classmethod
    def const(cls, code: int) -> "Value":
        return cls(f"({int(code)})", Range.const(code))


class Block:
    """Statements inside one `for e in range(B)` loop. A dry block only computes ranges (for per-element analysis)."""

    def __init__(self, dry: bool = False):
        self.dry = dry
        self.lines: list = []
        self._count = 0
        self.casts = [0, 0]  # [kept, seen]: casts whose rounding or overflow handling is emitted, casts in the block

    def tally(self, seen: int, kept: int):
        self.casts[0] += kept
        self.casts[1] += seen

    def let(self, expr: str, rng: Range) -> Value:
        """Bind an expression whose exact value lies in `rng` to a temporary of the narrowest lane that holds it."""
        if rng.is_const:
            return Value.const(rng.lo)
        if not rng.fits_int64:
            raise UnsupportedType(f"an intermediate value spans [{rng.lo}, {rng.hi}], beyond int64")
        return self.let_lane(expr, rng, "I32" if rng.fits_int32 else "I64")

    def let_lane(self, expr: str, rng: Range, lane: str) -> Value:
        """Bind to a temporary of a given lane: the low 32 or 64 bits of the exact value."""
        name = f"t{self._count}"
        self._count += 1
        if not self.dry:
            self.lines.append(f"{name} = {lane}({expr})")
        return Value(name, rng)

    def emit(self, line: str):
        if not self.dry:
            self.lines.append(line)


# ---- casts ---------------------------------------------------------------------------------------------
def cast(block: Block, v: Value, value_frac: int, t: FixedType) -> Value:
    """`t(v)` with v's codes on a grid of value_frac fractional bits: exactly arith.cast_raw, minus what is proven."""
    proof = prove_cast(v.range, value_frac, t)
    spec = type_spec(t)
    block.tally(1, int(proof.shift > 0 or proof.overflows) and not v.range.is_const)
    if v.range.is_const:
        return Value.const(cast_raw(v.range.lo, value_frac, *spec))
    if proof.is_identity:
        return Value(v.expr, proof.result)
    if (t.overflow == "WRAP_SM" and proof.overflows) or proof.shift >= 62:
        return block.let(f"cast_raw(I64({v.expr}), {value_frac}, {', '.join(map(str, spec))})", proof.result)
    y = v
    if proof.shift > 0:
        s = proof.shift
        floor = Range(v.range.lo >> s, v.range.hi >> s)
        y = block.let(f"{v.expr} >> {s}", floor)
        if t.rounding != "TRN":
            sticky = f"I64(({v.expr} & {(1 << (s - 1)) - 1}) != 0)" if s > 1 else "0"
            up = f"_round_up({y.expr}, ({v.expr} >> {s - 1}) & 1, {sticky}, I64({v.expr} < 0), {ROUNDING_ID[t.rounding]})"
            y = block.let(f"{y.expr} + {up}", proof.rounded)
    elif proof.shift < 0:
        y = block.let(f"{v.expr} << {-proof.shift}", proof.rounded)
    if proof.overflows:
        y = _overflow(block, y, t, proof.result)
    return Value(y.expr, proof.result)


def _overflow(block: Block, y: Value, t: FixedType, result: Range) -> Value:
    """Apply t's overflow mode (WRAP, SAT, SAT_ZERO, SAT_SYM) to the exact rounded code y."""
    lo, hi = t.min_code, t.max_code
    if t.overflow == "WRAP":
        if not t.signed:
            return block.let(f"{y.expr} & {hi}", result)
        if y.range.fits_int32 and t.width <= 32:
            return block.let(f"I32({y.expr} << {32 - t.width}) >> {32 - t.width}", result)
        return block.let(f"I64({y.expr} << {64 - t.width}) >> {64 - t.width}", result)
    if t.overflow == "SAT_ZERO":
        return block.let(f"{y.expr} if ({y.expr} >= {lo}) & ({y.expr} <= {hi}) else 0", result)
    if t.overflow == "SAT_SYM" and t.signed and t.width > 1:
        lo += 1
    expr = y.expr
    if y.range.lo < lo:
        expr = f"max({expr}, {lo})"
    if y.range.hi > hi:
        expr = f"min({expr}, {hi})"
    return block.let(expr, result)


def aligned(v: Value, frac: int, to_frac: int) -> Value:
    """The same value on a grid with to_frac >= frac fractional bits (as an expression)."""
    k = to_frac - frac
    if v.range.is_const:
        return Value.const(v.range.lo << k)
    return Value(f"({v.expr} << {k})" if k else v.expr, v.range.shl(k))


def tree_sum(block: Block, leaves: list, frac: int, t: FixedType) -> Value:
    """nnet::reduce with Op_add: a balanced tree, cast into `t` at every node (shape as in nnet_common.h)."""
    if len(leaves) == 1:
        return leaves[0]
    if len(leaves) == 2:
        a, b = leaves
        return cast(block, block.let(f"{a.expr} + {b.expr}", a.range + b.range), frac, t)
    left = 1
    while left * 2 < len(leaves):
        left *= 2
    a, b = tree_sum(block, leaves[:left], frac, t), tree_sum(block, leaves[left:], frac, t)
    return cast(block, block.let(f"{a.expr} + {b.expr}", a.range + b.range), frac, t)


def matmul(block: Block, terms: list, bias: int, x_frac: int, layer: Layer) -> Value:
    """hls4ml dense_latency for one output: res(acc(bias) + sum acc(x*w)) over `terms` = [(x Value, weight code)]
    in input order, zero weights left out (a zero product changes no accumulator, in every overflow mode).

    Without a possible overflow the accumulator casts vanish and the sum is one expression; a WRAP accumulator with
    exact products is summed modulo the lane and wrapped once; otherwise every cast is kept, in order."""
    w_t, b_t, acc_t = layer.types["weight"], layer.types["bias"], layer.types["accum"]
    acc_frac, prod_frac = acc_t.fractional, x_frac + w_t.fractional
    acc = Value.const(cast_raw(bias, b_t.fractional, *type_spec(acc_t)))
    k = acc_frac - prod_frac
    if k >= 0:
        total, exact = acc.range, True
        for x, w in terms:
            product = x.range.scale(w << k)
            exact &= not prove_cast(product, acc_frac, acc_t).overflows
            total = total + product
            exact &= not prove_cast(total, acc_frac, acc_t).overflows
        if exact or acc_t.overflow == "WRAP":
            const = acc.range.lo + sum(x.range.lo * (w << k) for x, w in terms if x.range.is_const)
            parts = [f"{x.expr} * {w << k}" for x, w in terms if not x.range.is_const] + [str(const)]
            block.tally(2 * len(terms), int(not exact))
            if exact:
                acc = block.let(" + ".join(parts), total)
            else:
                lane, bits = ("I32", INT32) if acc_t.width <= 32 else ("I64", INT64)
                summed = block.let_lane(" + ".join(parts), Range(*bits), lane)
                acc = _overflow(block, summed, acc_t, Range.of(acc_t))
            return cast(block, acc, acc_frac, layer.result)
    for x, w in terms:
        product = cast(block, block.let(f"{x.expr} * {w}", x.range.scale(w)), prod_frac, acc_t)
        acc = cast(block, block.let(f"{acc.expr} + {product.expr}", acc.range + product.range), acc_frac, acc_t)
    return cast(block, acc, acc_frac, layer.result)


# ---- buffers and the generated module --------------------------------------------------------------------
@dataclass
class Buffer:
    """A layer's output rows in the scratch array `array` (s32 or s64), from row `offset`, with per-element ranges."""

    array: str
    offset: int
    type: FixedType
    ranges: list
    block: int

    @property
    def size(self) -> int:
        return len(self.ranges)

    def row(self, k) -> str:
        """Element k (an int or a runtime index expression) of event e: rows of B events in a flat scratch array, so
        that LLVM sees constant distances between rows and vectorizes over e."""
        if isinstance(k, int):
            return f"{self.array}[{(self.offset + k) * self.block} + e]"
        return f"{self.array}[({self.offset} + {k}) * {self.block} + e]"

    def value(self, k: int) -> Value:
        """Element k as a Value: a literal when its range is one code."""
        if self.ranges[k].is_const:
            return Value.const(self.ranges[k].lo)
        return Value(self.row(k), self.ranges[k])

    def span(self, rows) -> Range:
        return union(self.ranges[k] for k in rows)


@dataclass
class Generated:
    """A generated module: source text, block size, the proven range of every layer output, and what was proven."""

    source: str
    block: int
    ranges: dict
    casts: dict = field(default_factory=dict)  # layer name -> (casts in its code, casts kept)
    notes: list = field(default_factory=list)


def _trailing_zeros(code: int) -> int:
    """Trailing zero bits of a code; 0 has as many as any other (1024 stands for 'all')."""
    return (code & -code).bit_length() - 1 if code else 1024


def lane_of(t: FixedType) -> str:
    return "s32" if t.min_code >= -(1 << 31) and t.max_code < (1 << 31) else "s64"


class _Generator:
    def __init__(self, manifest: Manifest):
        manifest.validate()
        self.manifest = manifest
        self.rows = {"s32": 0, "s64": 0}
        self.buffers: dict = {}
        self.tables: list = []
        self.init: list = []  # statements run once per chunk (constant rows)
        self.body: list = []  # statements run per block
        self.notes: list = []
        self._blocks: list = []
        self.casts: dict = {}

    # ---- helpers -----------------------------------------------------------------------------------
    def buffer(self, t: FixedType, ranges: list) -> Buffer:
        array = lane_of(t)
        buf = Buffer(array, self.rows[array], t, ranges, self.block)
        self.rows[array] += len(ranges)
        return buf

    def new_block(self) -> Block:
        """A block of emitted statements, counted in the current layer's cast tally."""
        block = Block()
        self._blocks.append(block)
        return block

    def table(self, values) -> str:
        name = f"T{len(self.tables)}"
        self.tables.append((name, np.asarray(values, dtype=np.int64)))
        return name

    def loop(self, block: Block, outer: str | None = None, setup: tuple = ()):
        """Append `for e in range(B)` with the block's statements, optionally inside a runtime loop `outer` whose
        body starts with the `setup` statements. Each loop gets its own variable names (numba's SSA pass is slow
        on names defined in many places)."""
        n = len(self.body)
        rename = functools.partial(_LOCAL.sub, lambda m: f"{m.group(0)}_{n}")
        lines = []
        if outer:
            lines += [outer, *("    " + line for line in setup)]
        lines.append("    " * bool(outer) + "for e in range(B):")
        lines += ["    " * (1 + bool(outer)) + line for line in block.lines]
        self.body.extend("    " + rename(line) for line in lines)

    # ---- layers ------------------------------------------------------------------------------------
    def generate(self) -> Generated:
        spec = self.manifest.input
        t = spec.type
        self.block = self._block_size()
        self.input = self.buffer(t, [Range.of(t)] * spec.size)
        self.buffers[spec.name] = self.input
        for layer in self.manifest.layers:
            emit = getattr(self, "_" + layer.op, None)
            if emit is None:
                raise UnsupportedType(f"layer {layer.name!r}: op {layer.op!r} has no fast-emulator generator")
            self._blocks = []
            out = emit(layer, [self.buffers[name] for name in layer.inputs])
            self.buffers[layer.name] = out
            kept, seen = (sum(b.casts[i] for b in self._blocks) for i in (0, 1))
            self.casts[layer.name] = (seen, kept)
            lanes = "int32" if out.array == "s32" else "int64"
            self.notes.append(f"{layer.name} ({layer.op}): {lanes} output; casts in the code: {seen}, "
                              f"{seen - kept} proven no-ops, {kept} kept")
        ranges = {name: buf.ranges for name, buf in self.buffers.items()}
        return Generated(self._source(self.block), self.block, ranges, self.casts, self.notes)

    def _block_size(self) -> int:
        """The largest power of two in [MIN_BLOCK, MAX_BLOCK] whose widest layer (input and output) fits BLOCK_BYTES."""
        tensors = [(self.manifest.input.type, self.manifest.input.size)] + [(l.result, l.size) for l in self.manifest.layers]
        widest = 2 * max((4 if lane_of(t) == "s32" else 8) * size for t, size in tensors)
        block = MAX_BLOCK
        while block > MIN_BLOCK and block * widest > BLOCK_BYTES:
            block //= 2
        return block

    def _elementwise(self, layer: Layer, x: Buffer, fn) -> Buffer:
        """y[k] = fn(block, x_k) for every element in one runtime loop over rows; ranges per element (dry runs)."""
        ranges = [fn(Block(dry=True), x.value(k)).range for k in range(x.size)]
        out = self.buffer(layer.result, ranges)
        block = self.new_block()
        y = fn(block, block.let(x.row("k"), x.span(range(x.size))))
        block.emit(f"{out.row('k')} = {y.expr}")
        self.loop(block, f"for k in range({x.size}):")
        return out

    def _batchnorm(self, layer: Layer, inputs: list) -> Buffer:
        (x,) = inputs
        x_frac, s_t, b_t = x.type.fractional, layer.types["scale"], layer.types["bias"]
        frac = max(x_frac + s_t.fractional, b_t.fractional)
        n_filt = layer.params.get("n_filt", -1)
        scale, bias = layer.tensors["scale"].ravel(), layer.tensors["bias"].ravel()
        values, block = [], self.new_block()
        for k in range(layer.size):
            c = k % n_filt if n_filt > 0 else k
            s_code = int(scale[c]) << (frac - x_frac - s_t.fractional)
            b_code = int(bias[c]) << (frac - b_t.fractional)
            # the exact value x*s + b on the coarsest grid that holds it: narrower lanes, same cast result
            zeros = min(_trailing_zeros(s_code), _trailing_zeros(b_code))
            s_code, b_code = s_code >> zeros, b_code >> zeros
            xk = x.value(k)
            v = block.let(f"{xk.expr} * {s_code} + {b_code}" if b_code else f"{xk.expr} * {s_code}",
                          xk.range.scale(s_code) + Range.const(b_code))
            values.append(cast(block, v, frac - zeros, layer.result))
        return self._store(layer, block, values)

    def _store(self, layer: Layer, block: Block, values: list) -> Buffer:
        """A buffer for per-element values computed in one block; constant elements are written once per chunk."""
        out = self.buffer(layer.result, [v.range for v in values])
        for k, v in enumerate(values):
            if v.range.is_const:
                self.init.append(f"{out.array}[{out.offset + k} * B:{out.offset + k + 1} * B] = {v.range.lo}")
            else:
                block.emit(f"{out.row(k)} = {v.expr}")
        self.loop(block)
        return out

    def _relu(self, layer: Layer, inputs: list) -> Buffer:
        return self._activation(layer, inputs[0], 0, 0)

    def _leaky_relu(self, layer: Layer, inputs: list) -> Buffer:
        return self._activation(layer, inputs[0], layer.params["alpha"], layer.types["param"].fractional)

    def _activation(self, layer: Layer, x: Buffer, alpha: int, alpha_frac: int) -> Buffer:
        x_frac, res = x.type.fractional, layer.result

        def fn(block: Block, v: Value) -> Value:
            parts = []
            if v.range.hi > 0:
                parts.append(cast(block, Value(v.expr, Range(max(v.range.lo, 1), v.range.hi)), x_frac, res))
            if v.range.lo <= 0:
                negative = Range(v.range.lo, min(v.range.hi, 0))
                product = block.let(f"{v.expr} * {alpha}", negative.scale(alpha))
                parts.append(cast(block, product, x_frac + alpha_frac, res))
            if len(parts) == 1:
                return parts[0]
            return block.let(f"{parts[0].expr} if {v.expr} > 0 else {parts[1].expr}", parts[0].range.union(parts[1].range))

        return self._elementwise(layer, x, fn)

    def _gather(self, layer: Layer, x: Buffer, index: np.ndarray) -> Buffer:
        """y[k] = res(x[index[k]]), 0 where index[k] < 0: a view when that is the identity, else copied rows."""
        x_frac, res = x.type.fractional, layer.result
        inside = [k for k in range(len(index)) if index[k] >= 0]
        span = x.span(index[inside]) if inside else Range.const(0)
        ranges = [cast_range(x.ranges[i], x_frac, res) if i >= 0 else Range.const(0) for i in index]
        if prove_cast(span, x_frac, res).is_identity and np.array_equal(index, np.arange(x.size)) \
                and lane_of(res) == x.array:
            self.notes.append(f"{layer.name}: identity, no copy")
            return Buffer(x.array, x.offset, res, ranges, self.block)
        out = self.buffer(res, ranges)
        for k in range(len(index)):
            if index[k] < 0:
                self.init.append(f"{out.array}[{out.offset + k} * B:{out.offset + k + 1} * B] = 0")
        if inside:
            dst, src = self.table(inside), self.table(index[inside])
            block = self.new_block()
            y = cast(block, block.let(x.row("src"), span), x_frac, res)
            block.emit(f"{out.row('dst')} = {y.expr}")
            self.loop(block, f"for k in range({len(inside)}):", (f"dst = {dst}[k]", f"src = {src}[k]"))
        return out

    def _linear(self, layer, inputs):
        return self._gather(layer, inputs[0], np.arange(layer.size))

    _reshape = _linear

    def _zeropad2d(self, layer, inputs):
        p = layer.params
        index = np.full((p["out_height"], p["out_width"], p["n_chan"]), -1, dtype=np.int64)
        source = np.arange(p["in_height"] * p["in_width"] * p["n_chan"]).reshape(p["in_height"], p["in_width"], -1)
        index[p["pad_top"]:p["pad_top"] + p["in_height"], p["pad_left"]:p["pad_left"] + p["in_width"]] = source
        return self._gather(layer, inputs[0], index.ravel())

    def _upsampling2d(self, layer, inputs):
        p = layer.params
        source = np.arange(p["in_height"] * p["in_width"] * p["n_chan"]).reshape(p["in_height"], p["in_width"], -1)
        index = source.repeat(p["height_factor"], axis=0).repeat(p["width_factor"], axis=1)
        return self._gather(layer, inputs[0], index.ravel())

    # ---- dense and convolution ----------------------------------------------------------------------
    def _dense(self, layer: Layer, inputs: list) -> Buffer:
        (x,) = inputs
        w, b = layer.tensors["weight"].reshape(x.size, -1), layer.tensors["bias"].ravel()
        values, block = [], self.new_block()
        for j in range(w.shape[1]):
            terms = [(x.value(i), int(w[i, j])) for i in range(x.size) if w[i, j] != 0]
            values.append(matmul(block, terms, int(b[j]), x.type.fractional, layer))
        self._note_matmul(layer, w)
        return self._store(layer, block, values)

    def _conv2d(self, layer: Layer, inputs: list) -> Buffer:
        """One runtime loop over output pixels per filter, the filter's non-zero taps as literals."""
        (x,) = inputs
        index = im2col_index(layer.params)
        n_pix, n_taps = index.shape
        base = index[:, 0] - index[0, 0]
        offsets = index[0] - index[0, 0]
        assert np.array_equal(index, base[:, None] + offsets[None, :] + index[0, 0])
        w, b = layer.tensors["weight"].reshape(n_taps, -1), layer.tensors["bias"].ravel()
        n_filt = w.shape[1]
        ranges = [None] * (n_pix * n_filt)
        bases = self.table(base + index[0, 0])
        out = self.buffer(layer.result, [Range.const(0)] * (n_pix * n_filt))
        for f in range(n_filt):
            taps = [t for t in range(n_taps) if w[t, f] != 0]
            for p in range(n_pix):
                terms = [(x.value(int(index[p, t])), int(w[t, f])) for t in taps]
                ranges[p * n_filt + f] = matmul(Block(dry=True), terms, int(b[f]), x.type.fractional, layer).range
            block = self.new_block()
            terms = [(Value(x.row(f"base + {int(offsets[t])}"), x.span(index[:, t])), int(w[t, f])) for t in taps]
            y = matmul(block, terms, int(b[f]), x.type.fractional, layer)
            block.emit(f"{out.row(f'p * {n_filt} + {f}')} = {y.expr}")
            self.loop(block, f"for p in range({n_pix}):", (f"base = {bases}[p]",))
        out.ranges = ranges
        self._note_matmul(layer, w)
        return out

    def _note_matmul(self, layer: Layer, w: np.ndarray):
        self.notes.append(f"{layer.name}: {np.count_nonzero(w)} of {w.size} weights non-zero")

    # ---- pooling ------------------------------------------------------------------------------------
    def _avgpool2d(self, layer: Layer, inputs: list) -> Buffer:
        (x,) = inputs
        p = layer.params
        acc_t, res = layer.types["accum"], layer.result
        frac = max(x.type.fractional, acc_t.fractional)
        windows, counts = [], []
        for oh in range(p["out_height"]):
            for ow in range(p["out_width"]):
                for f in range(p["n_filt"]):
                    cells = []
                    for kh in range(p["pool_height"]):
                        for kw in range(p["pool_width"]):
                            r = oh * p["stride_height"] + kh - p["pad_top"]
                            c = ow * p["stride_width"] + kw - p["pad_left"]
                            if 0 <= r < p["in_height"] and 0 <= c < p["in_width"]:
                                cells.append((r * p["in_width"] + c) * p["n_filt"] + f)
                    windows.append(cells)
                    counts.append(p["pool_height"] * p["pool_width"] if p.get("count_pad") else len(cells))

        def pool(block: Block, cells: list, count: int) -> Value:
            acc = Value.const(0)
            for cell in cells:
                total = aligned(acc, acc_t.fractional, frac).expr + " + " + aligned(cell, x.type.fractional, frac).expr
                rng = aligned(acc, acc_t.fractional, frac).range + aligned(cell, x.type.fractional, frac).range
                acc = cast(block, block.let(total, rng), frac, acc_t)
            q = block.let(f"abs(I64({acc.expr})) // {count}", Range(0, max(abs(acc.range.lo), abs(acc.range.hi)) // count))
            signed = block.let(f"{q.expr} if {acc.expr} >= 0 else -{q.expr}",
                               Range(-(max(-acc.range.lo, 0) // count), max(acc.range.hi, 0) // count))
            return cast(block, signed, acc_t.fractional, res)

        ranges = [pool(Block(dry=True), [x.value(c) for c in cells], n) for cells, n in zip(windows, counts)]
        out = self.buffer(res, [v.range for v in ranges])
        groups = {}
        for o, (cells, n) in enumerate(zip(windows, counts)):
            groups.setdefault((len(cells), n), []).append(o)
        for (n_cells, n), outputs in groups.items():
            cells = np.array([windows[o] for o in outputs], dtype=np.int64).reshape(len(outputs), n_cells)
            dst, win = self.table(outputs), self.table(cells)
            block = self.new_block()
            values = [Value(x.row(f"{win}[k, {t}]"), x.span(cells[:, t])) for t in range(n_cells)]
            y = pool(block, values, n)
            block.emit(f"{out.row(f'{dst}[k]')} = {y.expr}")
            self.loop(block, f"for k in range({len(outputs)}):")
        return out

    # ---- anomaly-score heads ------------------------------------------------------------------------
    def _kl_divergence(self, layer: Layer, inputs: list) -> Buffer:
        mean, logvar = inputs
        p = layer.params
        acc_t, table_t, res = layer.types["accum"], layer.types["exp_table"], layer.result
        acc_frac, lv_frac, m_frac = acc_t.fractional, logvar.type.fractional, mean.type.fractional
        table = layer.tensors["exp_table"].ravel().astype(np.int64)
        table_scale = p["table_size"] // (2 * p["exp_range"])
        shift, scale = max(lv_frac, 0), table_scale << max(-lv_frac, 0)
        offset, last = p["exp_range"] * table_scale, len(table) - 1
        one = constant_code(1.0, logvar.type)
        f2 = max(table_t.fractional, acc_frac)
        name = self.table(table)
        block, leaves = self.new_block(), []
        for i in range(p["n_in"]):
            m, lv = mean.value(i), logvar.value(i)
            m = block.let(m.expr, m.range)
            lv = block.let(lv.expr, lv.range)
            sq = cast(block, block.let(f"{m.expr} * {m.expr}", m.range.square()), 2 * m_frac, acc_t)
            k = cast(block, block.let(f"{one} + {lv.expr}", Range.const(one) + lv.range), lv_frac, acc_t)
            lo_idx = min(max(((lv.range.lo * scale) >> shift) + offset, 0), last)
            hi_idx = min(max(((lv.range.hi * scale) >> shift) + offset, 0), last)
            idx = block.let(f"min(max((({lv.expr} * {scale}) >> {shift}) + {offset}, 0), {last})", Range(lo_idx, hi_idx))
            used = table[lo_idx:hi_idx + 1]
            exp = block.let(f"{name}[{idx.expr}]", Range(int(used.min()), int(used.max())))
            a, t = aligned(k, acc_frac, f2), aligned(exp, table_t.fractional, f2)
            k = cast(block, block.let(f"{a.expr} - {t.expr}", a.range - t.range), f2, acc_t)
            leaves.append(cast(block, block.let(f"{k.expr} - {sq.expr}", k.range - sq.range), acc_frac, acc_t))
        total = tree_sum(block, leaves, acc_frac, acc_t)
        inv_n = constant_code(1.0 / p["n_in"], acc_t)
        total = cast(block, block.let(f"{total.expr} * {inv_n}", total.range.scale(inv_n)), 2 * acc_frac, acc_t)
        half = constant_code(-0.5, res)
        y = cast(block, block.let(f"{total.expr} * {half}", total.range.scale(half)), res.fractional + acc_frac, res)
        return self._store(layer, block, [y])

    def _mse(self, layer: Layer, inputs: list) -> Buffer:
        ref, rec = inputs
        diff_t, sq_t, acc_t = layer.types["diff"], layer.types["square"], layer.types["accum"]
        frac = max(ref.type.fractional, rec.type.fractional)
        block, leaves = self.new_block(), []
        for i in range(layer.params["n_in"]):
            a, b = aligned(rec.value(i), rec.type.fractional, frac), aligned(ref.value(i), ref.type.fractional, frac)
            d = cast(block, block.let(f"{a.expr} - {b.expr}", a.range - b.range), frac, diff_t)
            d = block.let(d.expr, d.range)
            s = cast(block, block.let(f"{d.expr} * {d.expr}", d.range.square()), 2 * diff_t.fractional, sq_t)
            leaves.append(cast(block, s, sq_t.fractional, acc_t))
        total = tree_sum(block, leaves, acc_t.fractional, acc_t)
        inv_n = constant_code(1.0 / layer.params["n_in"], acc_t)
        mean = cast(block, block.let(f"{total.expr} * {inv_n}", total.range.scale(inv_n)), 2 * acc_t.fractional, acc_t)
        return self._store(layer, block, [cast(block, mean, acc_t.fractional, layer.result)])

    # ---- the module -------------------------------------------------------------------------------------
    def _source(self, block: int) -> str:
        outputs = [self.buffers[name] for name in self.manifest.outputs]
        out_args = ", ".join(f"out{k}" for k in range(len(outputs)))
        t = self.manifest.input.type
        lines = [
            f'"""Generated by emulator.fast.codegen for manifest {self.manifest.name!r}. Do not edit."""',
            "import numba as nb",
            "import numpy as np",
            "from emulator import arith",
            "",
            "I32, I64 = np.int32, np.int64",
            "# arith's own functions, compiled as separate functions that LLVM inlines (numba IR inlining is slow)",
            "_round_up = nb.njit(arith._round_up.py_func)",
            "cast_raw = nb.njit(arith.cast_raw.py_func)",
            f"B = {block}",
            f"ROWS32, ROWS64 = {max(self.rows['s32'], 1)}, {max(self.rows['s64'], 1)}",
            f"N_IN = {self.input.size}",
            f"LO, HI = {t.min_code}, {t.max_code}",
        ]
        for name, values in self.tables:
            lines.append(f"{name} = np.array({values.tolist()}, dtype=np.int64).reshape({values.shape})")
        lines += [
            "",
            "",
            "@nb.njit(cache=True, boundscheck=False, error_model='numpy')",
            "def init(s32, s64):",
            "    pass",
            *("    " + line for line in self.init),
            "",
            "",
            "@nb.njit(cache=True, boundscheck=False, error_model='numpy')",
            f"def block(x, start, n, s32, s64, {out_args}):",
            '    """Events start..start+n-1 (n <= B) of x through every layer; returns 1 if an input code is out of range."""',
            "    low, high = LO, HI",
            "    for e in range(n):",
            "        for i in range(N_IN):",
            "            v = x[start + e, i]",
            "            low = min(low, v)",
            "            high = max(high, v)",
            f"            {self.input.row('i')} = v",
            *self.body,
        ]
        for k, buf in enumerate(outputs):
            lines += ["    for e in range(n):"]
            lines += [f"        out{k}[start + e, {j}] = {buf.row(j)}" for j in range(buf.size)]
        lines += [
            "    return 1 if (low < LO) | (high > HI) else 0",
            "",
            "",
            "@nb.njit(cache=True, parallel=True)",
            f"def run(x, chunks, {out_args}):",
            '    """Every event of x, split into `chunks` contiguous parts run in parallel; returns the number of blocks',
            '    with an input code out of range."""',
            "    n_events = x.shape[0]",
            "    per = ((n_events + chunks - 1) // chunks + B - 1) // B * B",
            "    bad = np.zeros(chunks, dtype=np.int64)",
            "    for c in nb.prange(chunks):",
            "        s32 = np.zeros(ROWS32 * B, dtype=np.int32)",
            "        s64 = np.zeros(ROWS64 * B, dtype=np.int64)",
            "        init(s32, s64)",
            "        first, stop = c * per, min(n_events, (c + 1) * per)",
            "        for start in range(first, stop, B):",
            f"            bad[c] += block(x, start, min(B, stop - start), s32, s64, {out_args})",
            "    return bad.sum()",
            "",
        ]
        return "\n".join(lines)


def generate(manifest: Manifest) -> Generated:
    """The specialised module source for `manifest`, with its proven ranges; UnsupportedType if it cannot be made."""
    return _Generator(manifest).generate()
