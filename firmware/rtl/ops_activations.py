"""Verilog generators of the activations (emulator.layers.activations and .softmax), fully parallel, II = 1.

Tables become ROM functions (case statements over the indices the inputs can reach), one per table and layer; the
index arithmetic is the emulator's (the exact product x * N, C divisions by the power-of-two divisors, clamps, or
the top bits of a code for the latency and stable softmax), and every cast is the kernels' cast in their order.
"""

from __future__ import annotations

from emulator.layers.activations import EXPONENTIAL_DIVISOR, hard_grid
from emulator.layers.softmax import LEGACY_EXP_DIVISOR, LEGACY_INV_DIVISOR, slices
from emulator.plan import constant_code
from emulator.tables import address_bits

from .exact import add, clamped, divided, product, scaled
from .ops import LayerBuild, generator, rom_name, table_rom, tree_sum
from .ops_structure import chosen, greater
from .verilog import Value, extended


# ---- tables ------------------------------------------------------------------------------------------------
class Rom:
    """A table of the layer read at Value indices; `declare()` adds its function for the indices read."""

    def __init__(self, build: LayerBuild, tensor: str, type_key: str):
        self.build, self.tensor, self.type = build, tensor, build.layer.types[type_key]
        self.table = build.layer.tensors[tensor].ravel()
        self.index_width = max(address_bits(self.table.size), 1)
        self.first, self.last = self.table.size, -1

    def read(self, index: Value) -> Value:
        """table[index], as a Value of the table's type."""
        t = self.type
        if index.constant:
            code = int(self.table[index.code])
            return Value.const(code, t.fractional)
        self.first, self.last = min(self.first, index.lo), max(self.last, index.hi)
        codes = self.table[index.lo:index.hi + 1]
        return self.build.body.value("t", f"{rom_name(self.tensor)}({extended(index, self.index_width)})", t.width,
                                     t.fractional, t.signed, int(codes.min()), int(codes.max()))

    def declare(self):
        if self.last >= 0:
            table_rom(self.build, self.tensor, self.type, self.index_width, self.first, self.last)


def table_index(build: LayerBuild, x: Value, size: int, divisor: int, offset: int) -> Value:
    """clamp(int(x * size / divisor) + offset, 0, size - 1), the kernels' table_position: C divisions of the exact
    product's code by the power-of-two divisor and by 2**frac, both towards zero."""
    body, shift = build.body, abs(divisor).bit_length() - 1
    scaled_code = scaled(body, x, size, 0, 0)
    if x.frac >= 0:
        position = divided(body, scaled_code, 1 << (shift + x.frac))
    else:
        position = scaled(body, divided(body, scaled_code, 1 << shift), 1 << -x.frac, 0, 0)
    position = scaled(body, position, -1 if divisor < 0 else 1, offset, 0)
    return clamped(body, position, 0, size - 1)


def top_bits(build: LayerBuild, v: Value, width: int, bits: int) -> Value:
    """softmax_idx_from_real_val: the `bits` most significant of v's `width`-bit code, as an unsigned index."""
    shift, mask = width - bits, (1 << width) - 1
    if v.constant:
        return Value.const((v.code & mask) >> shift, 0)
    crosses = v.lo < 0 <= v.hi
    lo, hi = (0, (1 << bits) - 1) if crosses else ((v.lo & mask) >> shift, (v.hi & mask) >> shift)
    v = build.body.named(v)
    return Value(v.bits(width - 1, shift), bits, 0, False, lo, hi)


def _negative(build: LayerBuild, x: Value) -> str:
    """1-bit expression: x < 0."""
    return greater(build.body, Value.const(0, x.frac), x)


# ---- element-wise ------------------------------------------------------------------------------------------
@generator("sigmoid", "tanh", "softplus", "softsign")
def _lookup(build):
    layer, rom = build.layer, Rom(build, "table", "table")
    p = layer.params
    outputs = [build.cast(rom.read(table_index(build, x, rom.table.size, p["divisor"], p["offset"])), layer.result, "y")
               for x in build.inputs[0]]
    rom.declare()
    return outputs


@generator("elu", "selu")
def _exponential_unit(build):
    layer, rom = build.layer, Rom(build, "table", "table")
    outputs = []
    for x in build.inputs[0]:
        if layer.op == "elu":
            positive = x
            scale, scale_frac = layer.params["alpha"], layer.types["param"].fractional
        else:
            positive = scaled(build.body, x, layer.params["lambda"], 0, x.frac + layer.types["lambda"].fractional)
            scale, scale_frac = 1, 0
        entry = rom.read(table_index(build, x, rom.table.size, EXPONENTIAL_DIVISOR, 0))
        negative = scaled(build.body, entry, scale, 0, entry.frac + scale_frac)
        outputs.append(chosen(build.body, _negative(build, x), build.cast(negative, layer.result, "y"),
                              build.cast(positive, layer.result, "y")))
    rom.declare()
    return outputs


@generator("thresholded_relu")
def _thresholded_relu(build):
    layer = build.layer
    theta = Value.const(layer.params["theta"], layer.types["param"].fractional)
    zero = Value.const(0, layer.result.fractional)
    return [chosen(build.body, greater(build.body, x, theta), build.cast(x, layer.result, "y"), zero)
            for x in build.inputs[0]]


@generator("prelu")
def _prelu(build):
    layer = build.layer
    alpha, alpha_frac = layer.tensors["param"].ravel(), layer.types["param"].fractional
    outputs = []
    for x, a in zip(build.inputs[0], alpha.tolist()):
        scaled_down = build.cast(scaled(build.body, x, a, 0, x.frac + alpha_frac), layer.result, "y")
        outputs.append(chosen(build.body, greater(build.body, x, Value.const(0, x.frac)),
                              build.cast(x, layer.result, "y"), scaled_down))
    return outputs


@generator("hard_sigmoid", "hard_tanh")
def _hard(build):
    layer = build.layer
    slope_t, shift_t = layer.types["slope"], layer.types["shift"]
    frac = hard_grid(build.input_types[0], slope_t, shift_t)
    outputs = []
    for x in build.inputs[0]:
        m = layer.params["slope"] << (frac - x.frac - slope_t.fractional)
        s = clamped(build.body, scaled(build.body, x, m, layer.params["shift"] << (frac - shift_t.fractional), frac),
                    0, 1 << frac)
        if layer.op == "hard_tanh":
            s = scaled(build.body, s, 2, -(1 << frac), frac)
        outputs.append(build.cast(s, layer.result, "y"))
    return outputs


@generator("binary_tanh")
def _binary_tanh(build):
    result = build.layer.result
    minus, plus = (Value.const(constant_code(v, result), result.fractional) for v in (-1.0, 1.0))
    return [chosen(build.body, _negative(build, x), minus, plus) for x in build.inputs[0]]


# ---- softmax -----------------------------------------------------------------------------------------------
def per_slice(build: LayerBuild, softmax) -> list:
    """The outputs of `softmax(group) -> [output Value of each element of the slice]` over every slice, in element
    order."""
    outputs = [None] * build.layer.size
    for group in slices(build.layer).tolist():
        for k, y in zip(group, softmax(group)):
            outputs[k] = y
    return outputs


@generator("softmax_latency", "softmax_stable")
def _table_softmax(build):
    layer, x, x_t = build.layer, build.inputs[0], build.input_types[0]
    t = layer.types
    exp_rom, inv_rom = Rom(build, "exp_table", "exp_table"), Rom(build, "inv_table", "inv_table")
    exp_bits, inv_bits = address_bits(exp_rom.table.size), address_bits(inv_rom.table.size)

    def softmax(group):
        if layer.op == "softmax_stable":
            largest = x[group[0]]
            for k in group[1:]:
                largest = chosen(build.body, greater(build.body, x[k], largest), x[k], largest)
            norm_t = t["inp_norm"]
            indices = [top_bits(build, build.cast(add(build.body, largest, x[k], subtract=True), norm_t, "d"),
                                norm_t.width, exp_bits) for k in group]
        else:
            indices = [top_bits(build, x[k], x_t.width, exp_bits) for k in group]
        terms = [build.cast(exp_rom.read(index), t["accum"], "e") for index in indices]
        total = build.cast(tree_sum(build, terms, t["accum"]), t["inv_inp"], "s")
        inverse = inv_rom.read(top_bits(build, total, t["inv_inp"].width, inv_bits))
        return [build.cast(product(build.body, term, inverse), layer.result, "y") for term in terms]

    outputs = per_slice(build, softmax)
    exp_rom.declare()
    inv_rom.declare()
    return outputs


@generator("softmax_legacy")
def _legacy_softmax(build):
    layer, x = build.layer, build.inputs[0]
    table_t = layer.types["table"]
    exp_rom, inv_rom = Rom(build, "exp_table", "table"), Rom(build, "inv_table", "table")
    n_exp, n_inv = exp_rom.table.size, inv_rom.table.size
    offset = (LEGACY_EXP_DIVISOR // 2 * n_exp) // LEGACY_EXP_DIVISOR
    one = Value.const(constant_code(1.0, table_t), table_t.fractional)

    def normalised(group, i):
        total = Value.const(0, table_t.fractional)
        for j in group:
            if i == j:
                term = one
            else:
                difference = add(build.body, x[j], x[i], subtract=True)
                term = exp_rom.read(table_index(build, difference, n_exp, LEGACY_EXP_DIVISOR, offset))
            total = build.cast(add(build.body, total, term), table_t, "e")
        return build.cast(inv_rom.read(table_index(build, total, n_inv, LEGACY_INV_DIVISOR, 0)), layer.result, "y")

    outputs = per_slice(build, lambda group: [normalised(group, i) for i in group])
    exp_rom.declare()
    inv_rom.declare()
    return outputs


@generator("softmax_argmax")
def _argmax_softmax(build):
    layer, x = build.layer, build.inputs[0]
    one = Value.const(constant_code(1.0, layer.result), layer.result.fractional)
    zero = Value.const(0, layer.result.fractional)

    def first_maximum(group, position):
        k = group[position]
        wins = [greater(build.body, x[k], x[j]) for j in group[:position]]
        wins += [f"~{greater(build.body, x[j], x[k])}" for j in group[position + 1:]]
        return chosen(build.body, _all(wins), one, zero)

    return per_slice(build, lambda group: [first_maximum(group, p) for p in range(len(group))])


def _all(conditions: list) -> str:
    """1-bit AND of conditions, with constants folded."""
    conditions = [{"~1'b0": "1'b1", "~1'b1": "1'b0"}.get(c, c) for c in conditions]
    if "1'b0" in conditions:
        return "1'b0"
    rest = [c for c in conditions if c != "1'b1"]
    return "(" + " & ".join(rest) + ")" if rest else "1'b1"
