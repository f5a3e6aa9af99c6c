"""cocotb test for firmware.rtl.harness: start the clock, reset, and wait until the harness has every output.

The harness itself streams the events and records the outputs; Python does nothing per cycle. COSIM_MAX_CYCLES
bounds the wait (the test fails if the design has not produced every output by then).
"""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

PERIOD_NS = 10


@cocotb.test()
async def stream_all_events(dut):
    """Reset for two cycles, then wait for `done`."""
    max_cycles = int(os.environ["COSIM_MAX_CYCLES"])
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await with_timeout(RisingEdge(dut.done), max_cycles * PERIOD_NS, "ns")
