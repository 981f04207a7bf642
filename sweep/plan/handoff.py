"""What the engine tells a trial's process besides its configuration: environment variables set
by the worker or the fork server (sweep/engine/) and read by the trial (sweep/trial/), which
cannot import each other. Everything a trial measures is in its TrialConfig; these only say how
its process was started. (An earlier trial's FLOP count is passed as an argument of the trial
function, not here.)
"""

from __future__ import annotations

import os

# Set by the engine in a trial's process when Ray gave the trial a GPU: the trial must then
# measure on that GPU (device auto never falls back to the CPU), and a trial that finds no CUDA
# there is a non-final row, run again by a resume.
REQUIRE_GPU_ENV = "TSWEEP_REQUIRE_GPU"
# Set by the fork server's trial process: the process exits right after the trial, so the trial
# skips releasing its memory (the process's end frees it) and the process skips Python's teardown.
TRIAL_EXITS_ENV = "TSWEEP_TRIAL_EXITS"
# Set by the fork server's trial process when it was pinned to its share of the node's cores
# (pin_cpus): the ranks of an N-GPU trial then split that share between them.
PINNED_ENV = "TSWEEP_PINNED"
# "0" turns off the per-trial shortcuts above and the environment cache (benchmarks/
# sweep_overhead.py measures the trial process before and after them side by side).
SHORTCUTS_ENV = "TSWEEP_TRIAL_SHORTCUTS"


def shortcuts_on() -> bool:
    return os.environ.get(SHORTCUTS_ENV, "1") != "0"
