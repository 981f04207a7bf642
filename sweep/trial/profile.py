"""Launch overhead: one step profiled after the measured ones (``profile_step``).

``torch.profiler`` with CUDA activity only (CUPTI records every kernel, copy and set on the GPU;
no CPU operator tracing, which would slow the host down and inflate the very gaps measured). The
step's wall time is the host's, from a synchronized start to a synchronized end. The arithmetic
(kernel count, summed kernel time, the share of the wall time with no GPU work) is pure, in
``sweep.trial.metrics``; this module only reads the profiler's events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sweep.trial import metrics as M

log = logging.getLogger(__name__)

KERNEL = "kernel"  # kineto's activity type of a GPU kernel
# what counts as the GPU working: kernels, copies and memsets
BUSY_ACTIVITIES = (KERNEL, "gpu_memcpy", "gpu_memset")


@dataclass(frozen=True)
class StepProfile:
    """One profiled step. Times in ms (intervals on the profiler's clock) and s."""

    kernels: int
    kernel_ms: float  # summed kernel durations (overlaps counted twice)
    busy_intervals_ms: tuple[tuple[float, float], ...]
    wall_ms: float
    profile_s: float
    attention_kernels: int | None = None  # fused attention kernels (``fused_attention_kernels``)


def activity(e: Any) -> str:
    """Kineto's activity type of an event: ``activity_type()`` where torch has it (2.13), else
    from the name of a GPU event (torch 2.11's events have no activity type: docs/DECISIONS.md,
    "the profiled step on torch 2.11"; copies and sets are named "Memcpy ..." and "Memset ...",
    everything else on the GPU is a kernel)."""
    if hasattr(e, "activity_type"):
        return str(e.activity_type())
    if getattr(e, "is_user_annotation", lambda: False)():
        return "gpu_user_annotation"
    name = e.name()
    if name.startswith("Memcpy"):
        return "gpu_memcpy"
    if name.startswith("Memset"):
        return "gpu_memset"
    return KERNEL


def gpu_work(events: Iterable[Any]) -> tuple[int, float, list[tuple[float, float]]]:
    """(kernel count, summed kernel ms, busy intervals in ms) from kineto events (objects with
    ``device_type()``, ``name()``, ``start_ns()``, ``duration_ns()``, and ``activity_type()``
    where torch has it): the GPU's events only."""
    from torch.profiler import DeviceType

    kernels, kernel_ms, busy = 0, 0.0, []
    for e in events:
        if e.device_type() != DeviceType.CUDA:
            continue
        kind = activity(e)
        if kind not in BUSY_ACTIVITIES:
            continue
        start_ms, dur_ms = e.start_ns() / 1e6, e.duration_ns() / 1e6
        busy.append((start_ms, start_ms + dur_ms))
        if kind == KERNEL:
            kernels += 1
            kernel_ms += dur_ms
    return kernels, kernel_ms, busy


# Name fragments of the fused attention kernels scaled_dot_product_attention can pick:
# FlashAttention ("pytorch_flash::flash_fwd_kernel"), the memory-efficient kernel
# ("fmha_cutlassF_..."), cuDNN's ("cudnn_generated_fort_native_sdpa", "..._flash_fprop_...").
# The math path has none of them.
FUSED_ATTENTION_MARKS = ("flash", "fmha", "sdpa", "efficient_attention")


def fused_attention_kernels(events: Iterable[Any]) -> int:
    """GPU kernels of the step that are fused attention kernels: none in a step whose attention
    ran on the math path (materialised score matrices), as it may under CUDA-graph capture; a
    graphed row with none where its eager twin has some did not measure the same kernels."""
    from torch.profiler import DeviceType

    count = 0
    for e in events:
        if e.device_type() != DeviceType.CUDA or activity(e) != KERNEL:
            continue
        name = e.name().lower() if hasattr(e, "name") else ""
        count += any(mark in name for mark in FUSED_ATTENTION_MARKS)
    return count


def profile_metrics(p: StepProfile | None, step_ms: float | None = None) -> dict[str, Any]:
    """The record's launch-overhead metrics; empty where no step was profiled.

    ``launch_bound_pct`` is the share of a measured step (``step_ms``: the measured steps'
    median) in which no GPU work ran: the profiled step's busy time against it. Not against the
    profiled step's own wall time (kept as ``profiled_step_ms``), which the profiler stretches
    while the kernels' sum stays the same (docs/DECISIONS.md, "launch-bound against the measured
    step, not the profiled one", has the figures). The profiled wall is the fallback where no
    measured step time is given."""
    if p is None:
        return {}
    wall = step_ms if step_ms is not None and step_ms > 0 else p.wall_ms
    return {
        "kernels_per_step": p.kernels,
        "gpu_kernel_ms_per_step": p.kernel_ms,
        "launch_bound_pct": M.launch_bound_pct(p.busy_intervals_ms, wall),
        "profiled_step_ms": p.wall_ms,
        "profile_s": p.profile_s,
        **(
            {"fused_attention_kernels_per_step": p.attention_kernels}
            if p.attention_kernels is not None
            else {}
        ),
    }


def profile_one_step(step: Callable[[], Any]) -> StepProfile | None:
    """Run ``step`` once under the profiler, on the current CUDA device. None (and a warning)
    where the profiler saw no kernel: CUPTI unavailable (a container without the rights) must
    not read as a step that is all launch overhead."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        s0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - s0) * 1000.0
    events = list(prof.profiler.kineto_results.events())
    kernels, kernel_ms, busy = gpu_work(events)
    profile_s = time.perf_counter() - t0
    if kernels == 0:
        log.warning("the profiled step recorded no kernel (is CUPTI usable here?); left empty")
        return None
    attention = fused_attention_kernels(events)
    return StepProfile(kernels, kernel_ms, tuple(busy), wall_ms, profile_s, attention)


def maybe_profile(w, step: Callable[[], Any]) -> StepProfile | None:
    """The profiled step of a trial whose ``profile_step`` is on, on a GPU; None otherwise (the
    CPU has no kernels to count). A profiler failure leaves the fields empty: the measured steps
    are already taken and stay valid."""
    if not w.config.profile_step or w.device.type != "cuda":
        return None
    try:
        return profile_one_step(step)
    except Exception as exc:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            raise
        log.warning("the profiled step failed (%s: %s); launch overhead left empty", type(exc), exc)
        return None
