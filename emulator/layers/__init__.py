"""Layer families beyond the paper's set, one module each: the manifest op, its hls4ml exporter, its planner and
numba kernels, registered on import (imported by the `emulator` package)."""

from . import activations, convolution, merge, pooling, quantizers, softmax  # noqa: F401
