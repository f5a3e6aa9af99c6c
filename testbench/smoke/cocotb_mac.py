"""cocotb test for smoke/mac.v: streams random vectors one per clock and checks every output.

Run inside a simulator through testbench.simulators; SMOKE_MAC_VECTORS sets how many vectors are streamed.
"""

import os
import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

LATENCY = 2
VALID_PROBABILITY = 0.8


def wrap_signed(value, width):
    """Two's-complement wrap of an integer to `width` bits."""
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def random_signed(rng, width):
    """Uniform random integer in the signed range of `width` bits."""
    return rng.randrange(-(1 << (width - 1)), 1 << (width - 1))


def expected_mac(a, b, acc_in, acc_width):
    """Reference model of one MAC output: acc_in + a * b wrapped to acc_width bits."""
    return wrap_signed(acc_in + a * b, acc_width)


async def reset(dut):
    """Hold rst for two clocks with in_valid low, then release it on a falling edge."""
    dut.rst.value = 1
    dut.in_valid.value = 0
    dut.a.value = 0
    dut.b.value = 0
    dut.acc_in.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def mac_matches_model_every_cycle(dut):
    """Every cycle, out_valid and (when valid) out equal the model of the input sampled LATENCY clocks before."""
    a_width, b_width, acc_width = len(dut.a), len(dut.b), len(dut.acc_in)
    n_vectors = int(os.environ["SMOKE_MAC_VECTORS"])
    rng = random.Random(int(os.environ.get("SMOKE_MAC_SEED", "1")))

    Clock(dut.clk, 10, unit="ns").start()
    await reset(dut)

    in_flight = deque([None] * LATENCY, maxlen=LATENCY)
    stimuli = [
        (random_signed(rng, a_width), random_signed(rng, b_width), random_signed(rng, acc_width))
        if rng.random() < VALID_PROBABILITY else None
        for _ in range(n_vectors)
    ]
    checked = 0
    for cycle, vector in enumerate(stimuli + [None] * LATENCY):
        await FallingEdge(dut.clk)
        dut.in_valid.value = int(vector is not None)
        a, b, acc_in = vector if vector is not None else (0, 0, 0)
        dut.a.value = a
        dut.b.value = b
        dut.acc_in.value = acc_in
        await RisingEdge(dut.clk)
        await ReadOnly()
        in_flight.append(vector)
        expected = in_flight[0]
        assert int(dut.out_valid.value) == int(expected is not None), (
            f"cycle {cycle}: out_valid={dut.out_valid.value}, expected {int(expected is not None)}"
        )
        if expected is not None:
            want = expected_mac(*expected, acc_width)
            got = dut.out.value.to_signed()
            assert got == want, f"cycle {cycle}: a, b, acc_in = {expected}: out={got}, expected {want}"
            checked += 1
    assert checked == sum(vector is not None for vector in stimuli) > 0
