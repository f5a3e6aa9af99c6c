"""Placeholder for the `verify` command; the lead engineer replaces it with the real CLI."""

import argparse


def main(argv=None):
    """Parse arguments and exit 2: the certification command is not implemented yet."""
    parser = argparse.ArgumentParser(prog="verify", description="Certify bit-exactness of an L1 anomaly-detection "
                                     "encoder across emulator, HLS C-simulation and RTL (under construction).")
    parser.add_argument("--model", help="model name from the zoo, e.g. dnn_vae_ptq8")
    parser.parse_args(argv)
    parser.exit(2, "verify: under construction\n")
