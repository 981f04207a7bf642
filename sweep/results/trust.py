"""How far a measured figure can be trusted: the host-bound rule, in one place.

Pure (no torch, no ray): the engine's summary, the analysis views and the web app all read it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# NVML's utilization is the share of time in which any kernel ran. Under this, the GPU waited for
# the host (Python launching kernels, the data) for a tenth of the measured steps or more: the
# figure then depends on the CPU and moves from run to run (docs/DECISIONS.md, "host-bound").
GPU_BUSY_MIN_PCT = 90.0
# The same rule read from the profiled step: a step whose wall time had no GPU work running for
# more than this share waited on the host (kernel launches) that long.
LAUNCH_BOUND_MAX_PCT = 100.0 - GPU_BUSY_MIN_PCT


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def host_bound(
    gpu_util_pct: float | Mapping[str, Any] | None, launch_bound_pct: float | None = None
) -> bool | None:
    """Whether a trial's steps waited on the host: its profiled step had no GPU work running for
    more than LAUNCH_BOUND_MAX_PCT of its wall time where that was measured, else NVML kept the
    GPU busy less than GPU_BUSY_MIN_PCT of the measured steps. None where neither was measured
    (CPU trials, reference rows without them).

    Called with a row's metrics (a mapping with ``launch_bound_pct`` and ``gpu_util_pct_mean``),
    or with the two numbers (``host_bound(gpu_util_pct, launch_bound_pct=None)``)."""
    if isinstance(gpu_util_pct, Mapping):
        row = gpu_util_pct
        gpu_util_pct = row.get("gpu_util_pct_mean")
        if launch_bound_pct is None:
            launch_bound_pct = row.get("launch_bound_pct")
    launch = _number(launch_bound_pct)
    if launch is not None:
        return launch > LAUNCH_BOUND_MAX_PCT
    util = _number(gpu_util_pct)
    if util is None:
        return None
    return util < GPU_BUSY_MIN_PCT
