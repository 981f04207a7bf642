"""allocator: PyTorch's CUDA caching allocator with expandable segments, as a trial option.

Near a card's limit the default allocator fails by fragmentation: a request larger than any free
block fails although PyTorch holds more than that reserved free (on an H100, Llama-3.2-1B LoRA at
48,128 tokens: 23.00 GiB asked, 23.29 GiB reserved free; docs/RESULTS.md, 2026-12-07). With
``expandable_segments:True`` a segment grows in place by mapping more pages, so reserved stays
within a fraction of a GiB of allocated and what fits no longer depends on the allocator's history;
on that H100 it cost about 4% of the speed. It is the knob users set through
``PYTORCH_CUDA_ALLOC_CONF``; here it is a field (``allocator: expandable``) so that a sweep can
measure both.

The setting is made at run time, before the model is built, through torch's allocator-settings
call (``torch._C._accelerator_setAllocatorSettings``; in older torch
``torch.cuda.memory._set_allocator_settings``): a trial process has allocated nothing by then, and
segments made afterwards follow it. ``restore`` turns it off again when the trial ends, so that the
next trial in the same process (a test's) starts from the default. What the allocator then reports
as its settings goes into the record's env (``cuda_alloc_conf``).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from sweep.plan.config import TrialConfig

EXPANDABLE_ON = "expandable_segments:True"
EXPANDABLE_OFF = "expandable_segments:False"


def check(config: TrialConfig, device_type: str) -> str | None:
    """Why expandable segments cannot run here (naming the field), or None."""
    if device_type != "cuda":
        return "allocator: expandable segments are a CUDA allocator's (this trial runs on the CPU)"
    if config.gpus_per_trial > 1:
        return "allocator: expandable is set in the trial's process (use gpus_per_trial 1)"
    if _setter() is None:
        import torch

        return f"allocator: this torch ({torch.__version__}) has no allocator-settings call"
    return None


def _setter():
    import torch

    setter = getattr(torch._C, "_accelerator_setAllocatorSettings", None)
    if setter is not None:
        return setter
    return getattr(torch.cuda.memory, "_set_allocator_settings", None)


def settings() -> str | None:
    """The allocator's settings as it reports them (None where this torch cannot say)."""
    import torch

    getter = getattr(torch._C, "_accelerator_getAllocatorSettings", None)
    return getter() if getter is not None else None


def _set(value: str) -> None:
    with warnings.catch_warnings():  # torch 2.13 deprecates the older name, which still works
        warnings.simplefilter("ignore", FutureWarning)
        _setter()(value)


def expand(config: TrialConfig, device_type: str, env: dict[str, Any], facts: dict) -> None:
    """Turn expandable segments on for this process, before the model is built; what the
    allocator then says its settings are into ``env``."""
    _set(EXPANDABLE_ON)
    env["cuda_alloc_conf"] = settings() or EXPANDABLE_ON


def environment_conf() -> str | None:
    """The allocator settings the process was given: PYTORCH_CUDA_ALLOC_CONF, or its newer name
    PYTORCH_ALLOC_CONF (None: neither is set)."""
    return os.environ.get("PYTORCH_ALLOC_CONF") or os.environ.get("PYTORCH_CUDA_ALLOC_CONF")


def _from_environment() -> str:
    """The setting the process started with: what the environment's allocator settings say of
    expandable segments, off where they say nothing."""
    conf = environment_conf() or ""
    parts = {p.split(":", 1)[0].strip(): p.partition(":")[2].strip() for p in conf.split(",")}
    return EXPANDABLE_ON if parts.get("expandable_segments") == "True" else EXPANDABLE_OFF


def restore(config: TrialConfig) -> None:
    """Expandable segments back to what the process started with (the next trial in the same
    process starts from it). Nothing where CUDA never started (the trial was refused before)."""
    import torch

    if torch.cuda.is_initialized():
        _set(_from_environment())
