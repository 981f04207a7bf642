"""capacity_gb: a smaller card emulated on a bigger one by capping PyTorch's allocator.

A card of N GB (as sold, binary: sweep/results/memory_model.py) leaves a program less than N GiB:
the driver keeps a share of it (an H200 "141 GB" shows 139.8 GiB) and the CUDA context takes its
part of what is shown. The cap is what such a card would leave to the allocator: N GiB less the
running card's driver share, less the context measured right after CUDA's start on this GPU;
``torch.cuda.set_per_process_memory_fraction`` then makes the allocator raise out-of-memory where
that card would. What fits is that card's; the speed is still this GPU's, so the record says where
it was emulated (env ``emulated_on``) and the read side never shows it as a card's speed.

The context measured at CUDA's start is not all a card loses outside the allocator: the kernels
a step loads lazily (CUDA_MODULE_LOADING=LAZY, torch's default) and the libraries' handles come in
the first step: on the H200 0.514 GiB at the start, 0.749 after a Llama-3.2-1B LoRA warm-up step
(2026-12-07, docs/RESULTS.md). So the cap is set twice:
at the start, and again after the warm-up (``recap``), from what is then held outside the
allocator, with the allocator's cache emptied first so that the measured steps grow their memory
under the final cap. With no warm-up step, nothing has loaded yet: the second cap is the first.

The arithmetic is pure (``allocator_cap`` in sweep/results/memory_model.py, where the engine
estimates a capped card before its first probe, tested with invented numbers); ``check`` and
``cap_allocator`` read the GPU (torch imported inside, as the other transforms do).
"""

from __future__ import annotations

from typing import Any

from sweep.plan.config import TrialConfig
from sweep.plan.fixed_memory import weights_bytes
from sweep.results.memory_model import GIB, allocator_cap, card_size_gb


def check(config: TrialConfig, device_type: str) -> str | None:
    """Why the cap cannot run here (naming the field), or None."""
    if device_type != "cuda":
        return "capacity_gb: the allocator cap needs a CUDA GPU"
    if config.gpus_per_trial > 1:
        return "capacity_gb: the cap emulates one card (use gpus_per_trial 1)"
    import torch

    shown = torch.cuda.get_device_properties(0).total_memory
    card = card_size_gb(shown)
    if config.capacity_gb > card:
        name = torch.cuda.get_device_name(0)
        return (
            f"capacity_gb: {config.capacity_gb:g} GB is more than this GPU has ({name}, "
            f"{card:g} GB): the cap can only emulate a smaller card"
        )
    return None


def _held() -> tuple[int, int, int]:
    """(bytes this process holds outside the allocator, the card's shown total, bytes the
    allocator reserves). Outside: in a fresh trial process the context; in a process that ran
    steps before (a test's), not the allocator's cache it kept from them."""
    import torch

    free, total = torch.cuda.mem_get_info()
    reserved = torch.cuda.memory_reserved()
    return max(total - free - reserved, 0), total, reserved


def cap_allocator(
    config: TrialConfig, device_type: str, env: dict[str, Any], facts: dict[str, Any]
) -> None:
    """Cap this process's allocator to the emulated card, before the model is built; the
    record's figures into ``facts`` (its metrics, whatever the status), ``emulated_on`` into
    ``env``. A model whose weights alone exceed the cap is out of memory at setup, said so."""
    import torch

    outside, total, _reserved = _held()
    cap = allocator_cap(config.capacity_gb, total, outside)
    env["emulated_on"] = env.get("gpu_name") or torch.cuda.get_device_name(0)
    facts["capacity_cap_gib"] = cap.cap_bytes / GIB
    facts["cuda_context_gib"] = cap.context_bytes / GIB
    facts["driver_reserved_gib"] = cap.driver_reserved_bytes / GIB
    weights = weights_bytes(config)
    if cap.cap_bytes <= 0:
        raise torch.OutOfMemoryError(
            f"capacity_gb: out of memory at setup: a {config.capacity_gb:g} GB card leaves "
            f"nothing to PyTorch once the driver's {cap.driver_reserved_bytes / GIB:.2f} GiB and "
            f"the CUDA context's {cap.context_bytes / GIB:.2f} GiB are held"
        )
    if weights is not None and weights > cap.cap_bytes:
        raise torch.OutOfMemoryError(
            f"capacity_gb: out of memory at setup: the weights alone take "
            f"{weights / GIB:.2f} GiB, more than the {cap.cap_bytes / GIB:.2f} GiB "
            f"a {config.capacity_gb:g} GB card leaves to PyTorch"
        )
    torch.cuda.set_per_process_memory_fraction(cap.fraction)


def recap(config: TrialConfig, facts: dict[str, Any]) -> None:
    """After the warm-up: cap the allocator again, to the emulated card less what this process now
    holds outside the allocator (the context, the kernels the warm-up loaded, library handles);
    out of memory where what the allocator must keep is already more than that."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    outside, total, reserved = _held()
    cap = allocator_cap(config.capacity_gb, total, outside)
    facts["outside_allocator_gib"] = outside / GIB
    facts["capacity_cap_gib"] = cap.cap_bytes / GIB
    if reserved > cap.cap_bytes:
        left = max(cap.cap_bytes, 0) / GIB
        raise torch.OutOfMemoryError(
            f"capacity_gb: out of memory after the warm-up: the allocator keeps "
            f"{reserved / GIB:.2f} GiB between steps, more than the {left:.2f} GiB a "
            f"{config.capacity_gb:g} GB card leaves once {outside / GIB:.2f} GiB are held "
            "outside it"
        )
    torch.cuda.set_per_process_memory_fraction(cap.fraction)


def uncap(config: TrialConfig) -> None:
    """The cap lifted once the trial has ended (the process's next trial, a test's, runs on the
    whole card). Nothing where CUDA never started (the trial was refused before its cap)."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.set_per_process_memory_fraction(1.0)
