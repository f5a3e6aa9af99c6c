"""LLVM IR text for exact integer arithmetic on vectors of V events, each value in the narrowest two's-complement
lane (i16, i32, i64) that its proven Range fits: the one place the fast emulator spells LLVM instructions.

Exactness rule: add, sub, mul, shl and bitwise ops are computed modulo 2**lane, so they run in any lane that holds
their *result*'s range (operands truncated or sign-extended to it); order-dependent ops (ashr, compares, min, max,
division) run in a lane that holds every operand exactly.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from emulator.fixed_type import UnsupportedType

from .intervals import Range

LANES = (16, 32, 64)


def lane_of(r: Range) -> int:
    """Bits of the narrowest lane holding every value of r."""
    for bits in LANES:
        if -(1 << (bits - 1)) <= r.lo and r.hi < (1 << (bits - 1)):
            return bits
    raise UnsupportedType(f"an intermediate value spans [{r.lo}, {r.hi}], beyond int64")


def lane_for_bits(bits: int) -> int:
    """The narrowest lane of at least `bits` bits."""
    return next(lane for lane in LANES if lane >= bits)


def wrapped(value: int, bits: int) -> int:
    """The low `bits` bits of value as a two's-complement integer."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass(frozen=True)
class Vec:
    """V event values: the SSA register `ref` with `lane`-bit lanes, or a constant (range of one value, no ref)."""

    ref: str | None
    lane: int
    range: Range

    @classmethod
    def const(cls, value: int) -> "Vec":
        return cls(None, 0, Range.const(int(value)))

    @property
    def is_const(self) -> bool:
        return self.range.is_const

    @property
    def code(self) -> int:
        return self.range.lo

    def proven(self, r: Range) -> "Vec":
        """The same value with the range r proven elsewhere (for the lanes it is used in): both ranges hold it, so
        their intersection does; when they do not meet, no lane uses the value (any code of r will do)."""
        lo, hi = max(self.range.lo, r.lo), min(self.range.hi, r.hi)
        if lo >= hi:
            return Vec.const(lo if lo == hi else r.lo)
        return Vec(self.ref, self.lane, Range(lo, hi))


_PY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
       "shl": lambda a, b: a << b, "and": lambda a, b: a & b, "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b}


class Function:
    """The body of one LLVM function under construction: entry-block lines (allocas), then basic blocks.
    A dry Function only computes ranges (to prove per-element ranges of code that is emitted once, in a loop)."""

    def __init__(self, V: int, module: "Module", dry: bool = False, casts: list | None = None):
        self.V = V
        self.module = module
        self.dry = dry
        self.entry: list = []
        self.lines: list = []
        self.label = "entry"
        self._count = 0
        # [kept, seen]: casts whose rounding or overflow is emitted, casts in the code (a list shared by parts)
        self.casts = [0, 0] if casts is None else casts
        self._pairs: dict = {}  # 16-bit pair vectors of the current basic block, by their halves

    # ---- plumbing ---------------------------------------------------------------------------------
    def vt(self, lane: int) -> str:
        return f"<{self.V} x i{lane}>"

    def name(self, prefix: str = "t") -> str:
        self._count += 1
        return f"%{prefix}{self._count}"

    def emit(self, rhs: str, prefix: str = "t") -> str:
        """Append `%name = rhs`, returning %name."""
        if self.dry:
            return "%dry"
        name = self.name(prefix)
        self.lines.append(f"  {name} = {rhs}")
        return name

    def instr(self, text: str):
        if not self.dry:
            self.lines.append(f"  {text}")

    def start_block(self, label: str):
        self.lines.append(f"{label}:")
        self.label = label
        self._pairs = {}

    def tally(self, seen: int, kept: int):
        self.casts[0] += kept
        self.casts[1] += seen

    def splat(self, value: int, lane: int) -> str:
        return f"splat (i{lane} {wrapped(value, lane)})"

    def operand(self, v: Vec, lane: int) -> str:
        """v as an operand of `lane` bits: exact when v's range fits the lane, else v modulo 2**lane."""
        if v.is_const:
            return self.splat(v.code, lane)
        if v.lane == lane:
            return v.ref
        op = "sext" if v.lane < lane else "trunc"
        return self.emit(f"{op} {self.vt(v.lane)} {v.ref} to {self.vt(lane)}")

    # ---- arithmetic -------------------------------------------------------------------------------
    def modular(self, op: str, a: Vec, b: Vec, result: Range, lane: int | None = None) -> Vec:
        """a `op` b (add, sub, mul, shl, and, or, xor) whose exact value lies in `result`; with `lane` given,
        computed modulo 2**lane instead (then `result` is what the caller proves of that)."""
        if a.is_const and b.is_const:
            value = _PY[op](a.code, b.code)
            return Vec.const(wrapped(value, lane) if lane else value)
        if result.is_const and lane is None:
            return Vec.const(result.lo)
        # the result's lane, or an operand's if wider: narrowing a value that meets wider ones again costs more
        # conversions than it saves
        lane = lane or max(lane_of(result), *(v.lane for v in (a, b) if not v.is_const))
        ref = self.emit(f"{op} {self.vt(lane)} {self.operand(a, lane)}, {self.operand(b, lane)}")
        return Vec(ref, lane, result)

    def add(self, a: Vec, b: Vec) -> Vec:
        if b.is_const and b.code == 0:
            return a
        if a.is_const and a.code == 0:
            return b
        return self.modular("add", a, b, a.range + b.range)

    def sub(self, a: Vec, b: Vec) -> Vec:
        if b.is_const and b.code == 0:
            return a
        return self.modular("sub", a, b, a.range - b.range)

    def mul(self, a: Vec, b: Vec) -> Vec:
        return self.modular("mul", a, b, a.range * b.range)

    def scale(self, a: Vec, k: int) -> Vec:
        """a * k: a shift when k is a power of two (LLVM finds other cheap constant multiplies itself)."""
        if k == 1:
            return a
        if k > 0 and k & (k - 1) == 0:
            return self.shl(a, k.bit_length() - 1)
        return self.mul(a, Vec.const(k))

    def square(self, a: Vec) -> Vec:
        return self.modular("mul", a, a, a.range.square())

    def shl(self, a: Vec, k: int) -> Vec:
        return a if k == 0 else self.modular("shl", a, Vec.const(k), a.range.shl(k))

    def ashr(self, a: Vec, k: int) -> Vec:
        """floor(a / 2**k), computed in a's lane (a shift by the lane width or more is the sign)."""
        r = Range(a.range.lo >> k, a.range.hi >> k)
        if a.is_const or r.is_const:
            return Vec.const(r.lo)
        if k == 0:
            return a
        k = min(k, a.lane - 1)
        return Vec(self.emit(f"ashr {self.vt(a.lane)} {a.ref}, {self.splat(k, a.lane)}"), a.lane, r)

    def low_bits(self, a: Vec, bits: int) -> Vec:
        """a & (2**bits - 1)."""
        mask = (1 << bits) - 1
        if a.range.within(0, mask):
            return a
        r = Range(0, mask) if not a.is_const else Range.const(a.code & mask)
        return self.modular("and", a, Vec.const(mask), r)

    def is_negative(self, a: Vec) -> Vec:
        """1 where a < 0, else 0."""
        if a.range.lo >= 0:
            return Vec.const(0)
        if a.range.hi < 0:
            return Vec.const(1)
        ref = self.emit(f"lshr {self.vt(a.lane)} {a.ref}, {self.splat(a.lane - 1, a.lane)}")
        return Vec(ref, a.lane, Range(0, 1))

    def negative_mask(self, a: Vec, bits: int) -> Vec:
        """2**bits - 1 where a < 0, else 0 (the sign spread over the low bits)."""
        return self.low_bits(self.ashr(a, 63), bits)

    def bitwise_not(self, a: Vec) -> Vec:
        return self.modular("xor", a, Vec.const(-1), Range(-a.range.hi - 1, -a.range.lo - 1))

    def wrap_signed(self, a: Vec, bits: int, result: Range) -> Vec:
        """The low `bits` bits of a read as two's complement."""
        lane = lane_for_bits(bits)
        ref = self.operand(a, lane)
        if bits < lane:
            k = self.splat(lane - bits, lane)
            ref = self.emit(f"ashr {self.vt(lane)} {self.emit(f'shl {self.vt(lane)} {ref}, {k}')}, {k}")
        return Vec(ref, lane, result)

    # ---- comparisons, selection ------------------------------------------------------------------
    def _common_lane(self, *values: Vec) -> int:
        return max(lane_of(v.range) for v in values)

    def compare(self, pred: str, a: Vec, b: Vec) -> str:
        """An <V x i1> mask of `a pred b` (icmp predicates: eq, ne, slt, sle, sgt, sge)."""
        lane = self._common_lane(a, b)
        return self.emit(f"icmp {pred} {self.vt(lane)} {self.operand(a, lane)}, {self.operand(b, lane)}", "m")

    def mask_op(self, op: str, a: str, b: str) -> str:
        return self.emit(f"{op} <{self.V} x i1> {a}, {b}", "m")

    def select(self, mask: str, a: Vec, b: Vec) -> Vec:
        r = a.range.union(b.range)
        if r.is_const:
            return Vec.const(r.lo)
        lane = lane_of(r)
        ref = self.emit(f"select <{self.V} x i1> {mask}, {self.vt(lane)} {self.operand(a, lane)}, "
                        f"{self.vt(lane)} {self.operand(b, lane)}")
        return Vec(ref, lane, r)

    def minmax(self, op: str, a: Vec, b: Vec) -> Vec:
        """smin or smax of a and b."""
        pick = min if op == "smin" else max
        r = Range(pick(a.range.lo, b.range.lo), pick(a.range.hi, b.range.hi))
        if r.is_const:
            return Vec.const(r.lo)
        lane = self._common_lane(a, b)
        fn = self.module.intrinsic(f"llvm.{op}.v{self.V}i{lane}", self.vt(lane), [self.vt(lane)] * 2)
        ref = self.emit(f"call {self.vt(lane)} {fn}({self.vt(lane)} {self.operand(a, lane)}, "
                        f"{self.vt(lane)} {self.operand(b, lane)})")
        return Vec(ref, lane, r)

    def clamp(self, a: Vec, lo: int, hi: int) -> Vec:
        if a.range.lo < lo:
            a = self.minmax("smax", a, Vec.const(lo))
        if a.range.hi > hi:
            a = self.minmax("smin", a, Vec.const(hi))
        return a

    def udiv(self, a: Vec, k: int) -> Vec:
        """floor(a / k) of a non-negative a."""
        r = Range(a.range.lo // k, a.range.hi // k)
        if r.is_const:
            return Vec.const(r.lo)
        lane = lane_of(a.range)
        return Vec(self.emit(f"udiv {self.vt(lane)} {self.operand(a, lane)}, {self.splat(k, lane)}"), lane, r)

    def gather(self, table: str, size: int, lane: int, index: Vec, r: Range) -> Vec:
        """table[index] per event from a constant global table of `size` `lane`-bit entries. The index is clamped
        to the table in the code even where its range is proven inside: an input code out of its type (refused
        after the call) must not read outside the table."""
        ilane = max(32, lane_of(index.range))
        vt = self.vt(ilane)
        clamped = self.operand(index, ilane)
        for op, limit in (("smax", 0), ("smin", size - 1)):
            fn = self.module.intrinsic(f"llvm.{op}.v{self.V}i{ilane}", vt, [vt, vt])
            clamped = self.emit(f"call {vt} {fn}({vt} {clamped}, {vt} {self.splat(limit, ilane)})")
        ptrs = self.emit(f"getelementptr i{lane}, ptr {table}, {vt} {clamped}")
        fn = self.module.intrinsic(f"llvm.masked.gather.v{self.V}i{lane}.v{self.V}p0", self.vt(lane),
                                   [f"<{self.V} x ptr>", "i32", f"<{self.V} x i1>", self.vt(lane)])
        ref = self.emit(f"call {self.vt(lane)} {fn}(<{self.V} x ptr> {ptrs}, i32 {lane // 8}, "
                        f"<{self.V} x i1> splat (i1 true), {self.vt(lane)} poison)")
        return Vec(ref, lane, r)

    # ---- 16-bit pairs: two multiply-accumulates per lane pair (x86: pmaddwd, or vpdpwssd with the add) ----------
    def pair(self, a: Vec, b: Vec) -> str:
        """<2V x i16> holding a and b interleaved (a of event e in lane 2e, b in 2e + 1): both ranges must fit
        int16. Made once per basic block for each (a, b)."""
        key = (a.ref, a.lane, a.range, b.ref, b.lane, b.range)
        if key not in self._pairs:
            V = self.V
            mask = ", ".join(f"i32 {x}" for i in range(V) for x in (i, V + i))
            vt = self.vt(16)
            self._pairs[key] = self.emit(f"shufflevector {vt} {self.operand(a, 16)}, {vt} {self.operand(b, 16)}, "
                                         f"<{2 * V} x i32> <{mask}>")
        return self._pairs[key]

    def split(self, x: Vec, s: int) -> str:
        """The pair (x mod 2**s, floor(x / 2**s)) of x: x * c = pair . (c, c * 2**s)."""
        return self.pair(self.low_bits(x, s), self.ashr(x, s))

    def widen(self, pair: str) -> str:
        """A pair vector sign-extended to <2V x i32>, the operand of `dot` (once per basic block)."""
        key = ("widen", pair)
        if key not in self._pairs:
            self._pairs[key] = self.emit(f"sext <{2 * self.V} x i16> {pair} to <{2 * self.V} x i32>")
        return self._pairs[key]

    def store_pair(self, offset: int, row: int, pair: str):
        """A pair vector into frame row `row` (rows of V * 4 bytes) from byte `offset`."""
        if not self.dry:
            self.instr(f"store <{2 * self.V} x i16> {pair}, ptr {self.row_pointer(offset, 32, row)}, align 64")

    def load_pair(self, offset: int, row: int) -> str:
        return self.emit(f"load <{2 * self.V} x i16>, ptr {self.row_pointer(offset, 32, row)}, align 64")

    def dot(self, pair: str, ca: int, cb: int, r: Range) -> Vec:
        """a * ca + b * cb of a widened pair (`widen`), in int32 (its exact value lies in r). The weights come
        from the module's word table at run time, so LLVM keeps the multiply a 16-bit pair dot product (x86:
        pmaddwd, or vpdpwssd with the add that follows) instead of refactoring constant multiplies."""
        V = self.V
        wide = f"<{2 * V} x i32>"
        word = self.word((ca & 0xFFFF) | ((cb & 0xFFFF) << 16))
        halves16 = self.emit(f"bitcast {self.vt(32)} {word} to <{2 * V} x i16>")
        weights = self.emit(f"sext <{2 * V} x i16> {halves16} to {wide}")
        product = self.emit(f"mul {wide} {pair}, {weights}")
        halves = [self.emit(f"shufflevector {wide} {product}, {wide} poison, <{V} x i32> "
                            f"<{', '.join(f'i32 {2 * i + k}' for i in range(V))}>") for k in (0, 1)]
        return Vec(self.emit(f"add {self.vt(32)} {halves[0]}, {halves[1]}"), 32, r)

    def word(self, value: int) -> str:
        """<V x i32> of a 32-bit word, read through %words from its own entry of the module's table: each use
        folds into its instruction as a broadcast memory operand (a word shared by several instructions would be
        kept in, and spilled from, a register)."""
        pointer = self.emit(f"getelementptr i32, ptr %words, i64 {self.module.word(value)}", "p")
        scalar = self.emit(f"load i32, ptr {pointer}, align 4", "i")
        one = self.emit(f"insertelement {self.vt(32)} poison, i32 {scalar}, i64 0")
        return self.emit(f"shufflevector {self.vt(32)} {one}, {self.vt(32)} poison, <{self.V} x i32> zeroinitializer")

    # ---- frame rows and loops ------------------------------------------------------------------------
    def row_pointer(self, offset: int, lane: int, row: int | str) -> str:
        """The address of row `row` (V lanes of `lane` bits) of the frame rows starting at byte `offset` of
        %frame, the per-call scratch every part function receives."""
        size = self.V * lane // 8
        if isinstance(row, int):
            return self.emit(f"getelementptr i8, ptr %frame, i64 {offset + row * size}", "p")
        at = self.emit(f"add nuw i64 {self.emit(f'mul nuw i64 {row}, {size}', 'i')}, {offset}", "i")
        return self.emit(f"getelementptr i8, ptr %frame, i64 {at}", "p")

    def row_alignment(self, lane: int) -> int:
        """Frame rows start at multiples of their size (buffers at multiples of 64 bytes)."""
        return min(64, self.V * lane // 8)

    def load_row(self, offset: int, lane: int, row: int | str, r: Range) -> Vec:
        if r.is_const:
            return Vec.const(r.lo)
        pointer = self.row_pointer(offset, lane, row)
        return Vec(self.emit(f"load {self.vt(lane)}, ptr {pointer}, align {self.row_alignment(lane)}"), lane, r)

    def store_row(self, offset: int, lane: int, row: int | str, v: Vec):
        if self.dry:
            return
        self.instr(f"store {self.vt(lane)} {self.operand(v, lane)}, ptr {self.row_pointer(offset, lane, row)}, "
                   f"align {self.row_alignment(lane)}")

    def load_index(self, table: str, position: str) -> str:
        """table[position] of a constant global i32 table, as an i64."""
        p = self.emit(f"getelementptr i32, ptr {table}, i64 {position}", "p")
        return self.emit(f"sext i32 {self.emit(f'load i32, ptr {p}, align 4')} to i64", "i")

    @contextmanager
    def loop(self, count: int | str):
        """`for i in range(count)` (count >= 1) around the code emitted in the with-body; yields i (an i64)."""
        if self.dry:
            yield "%dry"
            return
        head, done = self.name("loop")[1:], self.name("done")[1:]
        before = self.label
        i, following = self.name("i"), self.name("i")
        self.instr(f"br label %{head}")
        self.start_block(head)
        phi_at = len(self.lines)
        self.lines.append(None)
        yield i
        more = self.name("more")
        self.instr(f"{following} = add nuw i64 {i}, 1")
        self.instr(f"{more} = icmp ult i64 {following}, {count}")
        self.instr(f"br i1 {more}, label %{head}, label %{done}")
        self.lines[phi_at] = f"  {i} = phi i64 [ 0, %{before} ], [ {following}, %{self.label} ]"
        self.start_block(done)


class Module:
    """An LLVM module: constant tables, intrinsic declarations and functions, as text."""

    def __init__(self, attributes: str):
        self.attributes = attributes
        self.words: list = []  # the table @words
        self.globals: list = []
        self.declarations: dict = {}
        self.functions: list = []

    def table(self, values, lane: int) -> str:
        """A constant global array of `lane`-bit integers; returns its @name."""
        name = f"@T{len(self.globals)}"
        body = ", ".join(f"i{lane} {int(v)}" for v in values)
        self.globals.append(f"{name} = private unnamed_addr constant [{len(values)} x i{lane}] [{body}], align 64")
        return name

    def word(self, value: int) -> int:
        """The index of a new entry of the table @words holding a 32-bit word (part functions read the table
        through their argument %words, so LLVM cannot fold the value into its code)."""
        self.words.append(wrapped(value, 32))
        return len(self.words) - 1

    def intrinsic(self, name: str, result: str, params: list) -> str:
        self.declarations[name] = f"declare {result} @{name}({', '.join(params)})"
        return f"@{name}"

    def add_function(self, header: str, fn: Function):
        """`header` is the definition's text between `define` and the attribute group."""
        self.functions.append("\n".join([f"define {header} #0 {{", "entry:", *fn.entry, *fn.lines, "}"]))

    def text(self) -> str:
        words = ", ".join(f"i32 {w}" for w in self.words) or "i32 0"
        table = f"@words = private unnamed_addr constant [{max(len(self.words), 1)} x i32] [{words}], align 64"
        return "\n\n".join(["\n".join([*self.globals, table]), *self.functions, "\n".join(self.declarations.values()),
                            f"attributes #0 = {{ {self.attributes} }}"]) + "\n"
