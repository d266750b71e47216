"""Unit tests of the trainer: pure functions and in-process fits on small data (no servers)."""

import os

# Spinning OpenMP workers make small fits 10x slower on a shared 2-core machine (see modelops_pipelines.cli).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
