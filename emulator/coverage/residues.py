"""Ties at the result cast of a dense or convolution layer that reads the model input through element-local
layers, settled exactly by residues.

With products cast onto the accumulator's grid and an accumulator that wraps (or never overflows), the value the
result cast rounds is bias + sum of the product codes, modulo the accumulator's width; whether it is a tie depends
only on that sum mod 2**shift (shift: the bits the cast drops). Each product is a function of one input code, so the
residues each term can take come from running the chain over every input code, and those of the sum follow term by
term. A tie outside them is proved unreachable; inside them, the codes that make it are read back term by term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.emulator import Emulator
from emulator.manifest import Manifest
from emulator.plan import im2col_index

from .intervals import Enclosure, cast_codes, in_range
from .preimages import SWEEP_LIMIT, element_sources

MAX_SHIFT = 16
"""Most bits a result cast may drop for its sums' residues to be tracked (2**MAX_SHIFT of them per element)."""
_CHUNK = 1 << 14


def settle_ties(manifest: Manifest, chain: list, bin_ids, enclosure: Enclosure) -> tuple:
    """({bin id: event}, {bin id: proof}) for the `result` tie bins among `bin_ids` of the dense or convolution
    layer ending `chain` (the layers from the model input, see `stimuli._input_chain`); bins it cannot settle (other
    bins, sums that are not exact modulo 2**shift, an input too wide to run through) are in neither."""
    layer = chain[-1]
    ties = [b for b in bin_ids if b.startswith(f"{layer.name}/result/") and b.endswith("/tie")]
    sites = enclosure.sites[layer.name]
    shift = sites["result"].site.source_frac - sites["result"].site.type.fractional
    if not ties or not 0 < shift <= MAX_SHIFT or not _exact_sums(sites, shift):
        return {}, {}
    terms = _Terms(manifest, chain, sites)
    if terms.codes is None:
        return {}, {}
    found, proofs = {}, {}
    modulus, half = 1 << shift, 1 << (shift - 1)
    for bin_id in ties:
        element = int(bin_id.split("/")[2])
        offset, choices = terms.of(element, modulus)
        if choices is None:
            continue
        reachable = _reachable(offset, [p.residues for p in choices], modulus)
        if reachable[-1][half]:
            found[bin_id] = _event(manifest, choices, reachable, half, modulus)
        else:
            proofs[bin_id] = _proof(len(choices), int(reachable[-1].sum()), shift)
    return found, proofs


def _proof(products: int, residues: int, shift: int) -> str:
    return (f"residues: the value the result cast rounds is the bias plus {products} products that vary, each of one "
            f"input on the accumulator's grid; over every code each input can hold (exhaustive) it is one of "
            f"{residues} residues mod 2^{shift}, never the tie 2^{shift - 1}")


def _exact_sums(sites: dict, shift: int) -> bool:
    """The value the result cast rounds is bias + the product codes modulo a multiple of 2**shift."""
    bias, product, accum, result = (sites[name] for name in ("bias", "product", "accum", "result"))
    acc_t = accum.site.type
    wraps = acc_t.overflow == "WRAP" and acc_t.width >= shift
    return ((wraps or bool(in_range(accum).all())) and product.site.type.fractional == acc_t.fractional
            and bias.site.type.fractional == acc_t.fractional and result.site.source_frac == acc_t.fractional)


@dataclass(frozen=True)
class _Product:
    """One product that varies: the residues it can take (a mask over 0..modulus-1), an input code giving each, and
    the input element it is a function of."""

    residues: np.ndarray
    code: np.ndarray
    element: int


class _Terms:
    """The products of a dense or convolution layer: which input element each reads, and every code it can hold."""

    def __init__(self, manifest: Manifest, chain: list, sites: dict):
        layer = chain[-1]
        self.layer, self.sites = layer, sites
        index = (np.arange(layer.params["n_in"]).reshape(1, -1) if layer.op == "dense"
                 else im2col_index(layer.params, padded=True))
        self.index = index
        self.weight = layer.tensors["weight"].reshape(index.shape[1], -1)
        self.source, self.codes, self.first = _input_codes(manifest, chain[:-1], layer.inputs[0])

    def of(self, element: int, modulus: int) -> tuple:
        """(the constant part of the sum mod `modulus`, the `_Product`s of `element` that vary); None for the
        products when two of them read one input element."""
        n_out = self.weight.shape[1]
        pixel, filt = divmod(element, n_out)
        bias, product = self.sites["bias"].site, self.sites["product"].site
        b = int(cast_codes(self.layer.tensors["bias"].ravel()[filt:filt + 1], bias.source_frac, bias.type)[0])
        offset, products = b % modulus, []
        for tap, src in enumerate(self.index[pixel]):
            w = int(self.weight[tap, filt])
            held = self.codes[src] if src >= 0 else np.zeros(1, np.int64)
            values = cast_codes(w * held, product.source_frac, product.type) % modulus
            if src < 0 or self.source[src] < 0 or len(np.unique(values)) == 1:
                offset = (offset + int(values[0])) % modulus
                continue
            residues, code = np.zeros(modulus, dtype=bool), np.zeros(modulus, np.int64)
            residues[values], code[values] = True, self.first[src]  # an input code that gives each residue
            products.append(_Product(residues, code, int(self.source[src])))
        if len({p.element for p in products}) < len(products):
            return offset, None
        return offset, products


def _input_codes(manifest: Manifest, layers: list, tensor: str) -> tuple:
    """(input element each element of `tensor` is a function of (-1: a constant), the distinct codes each element
    holds over every input code, the first input code giving each); codes None when the input has too many codes."""
    t = manifest.input.type
    if t.max_code - t.min_code + 1 > SWEEP_LIMIT:
        return None, None, None
    every = np.arange(t.min_code, t.max_code + 1, dtype=np.int64)
    if not layers:
        n = manifest.input.size
        return np.arange(n), [every] * n, [every] * n
    _, source = element_sources(manifest)[tensor]
    sub = Manifest(f"{manifest.name}:{tensor}", manifest.inputs, layers, [tensor])
    emulator = Emulator(sub)
    held = []
    for begin in range(0, len(every), _CHUNK):
        codes = every[begin:begin + _CHUNK]
        held.append(emulator.predict_codes(np.repeat(codes[:, None], manifest.input.size, axis=1)).code)
    held = np.concatenate(held).reshape(len(every), -1)
    distinct = [np.unique(column, return_index=True) for column in held.T]
    return source, [codes for codes, _ in distinct], [every[first] for _, first in distinct]


def _reachable(offset: int, residue_sets: list, modulus: int) -> list:
    """The residues mod `modulus` the partial sums can take: [after the constant part, after each product]."""
    reach = np.zeros(modulus, dtype=bool)
    reach[offset] = True
    out = [reach]
    for residues in residue_sets:
        after = np.zeros(modulus, dtype=bool)
        for r in np.flatnonzero(residues):
            after |= np.roll(reach, r)
            if after.all():
                break
        reach = after
        out.append(reach)
    return out


def _event(manifest: Manifest, choices: list, reachable: list, target: int, modulus: int) -> np.ndarray:
    """Input codes whose products sum to `target` mod `modulus`, chosen from the last product back."""
    event = np.zeros(manifest.input.size, dtype=np.int64)
    for k in range(len(choices) - 1, -1, -1):
        product = choices[k]
        r = next(int(r) for r in np.flatnonzero(product.residues) if reachable[k][(target - r) % modulus])
        event[product.element] = product.code[r]
        target = (target - r) % modulus
    return event
