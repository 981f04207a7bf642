"""How far a measured figure can be trusted: the host-bound rule, in one place.

Pure (no torch, no ray): the engine's summary, the analysis views and the web app all read it.
"""

from __future__ import annotations

import math

# NVML's utilization is the share of time in which any kernel ran. Under this, the GPU waited for
# the host (Python launching kernels, the data) for a tenth of the measured steps or more: the
# figure then depends on the CPU and moves from run to run (docs/DECISIONS.md, "host-bound").
GPU_BUSY_MIN_PCT = 90.0


def host_bound(gpu_util_pct: float | None) -> bool | None:
    """Whether a trial's measured steps kept the GPU busy less than GPU_BUSY_MIN_PCT of the time;
    None where utilization was not measured (CPU trials, reference rows without it)."""
    if gpu_util_pct is None or math.isnan(gpu_util_pct):
        return None
    return gpu_util_pct < GPU_BUSY_MIN_PCT
