"""Open RTL generator: synthesizable, fully parallel, pipelined Verilog-2001 (II = 1) from a manifest alone."""
