"""cocotb test for a combinational bank of casts: apply every code of the input `x`, record the concatenated `y`.

Environment: CAST_BANK_OUT is the .npy file that receives the (2**width(x), width(y)/8 rounded up) bytes of y,
little-endian, one row per input code in increasing order of x's bit pattern.
"""

import os

import cocotb
import numpy as np
from cocotb.triggers import Timer


@cocotb.test()
async def record_every_input(dut):
    """Drive x through all its bit patterns and save y after each settles."""
    n_in, n_out = len(dut.x), len(dut.y)
    n_bytes = (n_out + 7) // 8
    rows = np.zeros((1 << n_in, n_bytes), dtype=np.uint8)
    for pattern in range(1 << n_in):
        dut.x.value = pattern
        await Timer(1, unit="ns")
        rows[pattern] = np.frombuffer(int(dut.y.value).to_bytes(n_bytes, "little"), dtype=np.uint8)
    np.save(os.environ["CAST_BANK_OUT"], rows)
