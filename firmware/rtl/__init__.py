"""Open RTL generator: synthesizable, fully parallel, pipelined Verilog-2001 (II = 1) from a manifest alone."""

from .generator import Interface, PortGroup, RtlDesign, generate_rtl, manifest_interface

__all__ = ["Interface", "PortGroup", "RtlDesign", "generate_rtl", "manifest_interface"]

from . import ops_activations, ops_quantizers, ops_structure  # noqa: E402,F401  (registers the generators of those ops)
