"""Hypothesis profiles: `ci` (set by .ci/run) draws the same examples on every run, so that a run of main is
reproducible; elsewhere each run draws new ones, and a failure prints the example to replay."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
