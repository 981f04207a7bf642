"""What a trial's outcome is made of, for the one-GPU path and the N-GPU one alike: the failure
that names a status, CUDA's start and the memory's release, the record's metrics from raw timings,
and the record itself.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from sweep.plan.config import TrialConfig
from sweep.results.memory_model import oom_figures
from sweep.results.record import ERROR, NO_GPU_TYPE, OOM, UNSUPPORTED, Trial, clean_metrics, utc_now
from sweep.trial import metrics as M
from sweep.trial.hardware import peak_tflops
from sweep.trial.profile import profile_metrics

log = logging.getLogger(__name__)


class Unsupported(Exception):
    """The configuration cannot run here (fp16 on a CPU, flash attention not installed...)."""


class NoCuda(Exception):
    """A GPU was asked for (device cuda, or Ray gave the trial a GPU) but this process sees no
    CUDA device: not a property of the configuration, so not a final result."""


# How torch's CPU allocator words a failed host allocation ("DefaultCPUAllocator: can't allocate
# memory: you tried to allocate N bytes", "... not enough memory ...").
_CPU_ALLOCATOR_MARKS = ("DefaultCPUAllocator", "can't allocate memory", "alloc_cpu")


def is_oom(exc: BaseException) -> bool:
    """Whether the GPU ran out of memory: the status that prunes larger batches. A failed host
    allocation is an error, not oom: the batch did not outgrow the GPU."""
    import torch

    text = str(exc)
    if any(m in text for m in _CPU_ALLOCATOR_MARKS):
        return False
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # cuBLAS/cuDNN/Triton/bitsandbytes report a failed allocation as a plain RuntimeError.
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in text
    )


def classify(exc: BaseException) -> str:
    """The status an exception names: unsupported, no_gpu_type (not final), oom or error."""
    if isinstance(exc, Unsupported):
        return UNSUPPORTED
    if isinstance(exc, NoCuda):
        return NO_GPU_TYPE
    return OOM if is_oom(exc) else ERROR


def start_cuda(device_type: str, timings: dict[str, float]) -> None:
    """Initialise CUDA now, timed apart (it would otherwise land in whatever touches it first)."""
    if device_type != "cuda":
        return
    import torch

    t0 = time.perf_counter()
    torch.cuda.init()
    timings["time_cuda_init_s"] = time.perf_counter() - t0


def release(device_type: str | None, compiled: bool) -> None:
    """Free what the trial held. Never raises: after a failed CUDA-graph capture the device can
    refuse further calls, and the record must still come back."""
    gc.collect()
    try:
        import torch

        if device_type == "cuda":
            torch.cuda.empty_cache()  # a capacity_gb cap ends after this (capacity.uncap)
        if compiled:
            torch._dynamo.reset()
    except Exception as exc:
        log.warning("releasing the trial's memory failed: %s", exc)


def derive_metrics(
    config: TrialConfig,
    raw,
    params: dict[str, int],
    flops: int | None,
    gpu_name: str | None,
    device_total_gib: float | None,
) -> dict[str, Any]:
    """Raw timings and counts -> the record's metrics. Pure apart from its inputs."""
    from sweep.plan.catalog import get_spec

    steps, phases = M.phase_split_ms(raw.rows_ms, raw.phase_names)
    out: dict[str, Any] = M.summarize_ms(steps)
    out["steps_measured"] = len(steps)
    out["step_time_cv"] = M.cv(out["step_time_ms_mean"], out["step_time_ms_std"])
    lightning = config.harness == "lightning"
    for name, values in phases.items():
        key = {"other": "data" if lightning else "other", "hooks": "other"}.get(name, name)
        out[f"{key}_ms_p50"] = M.percentile(values, 50)
    out.update(M.throughput(config.batch_size, config.seq_len, out["step_time_ms_p50"]))
    out["warmup_steps"] = raw.warmup_steps
    out["warmup_s"] = raw.warmup_s
    out["measure_s"] = raw.measure_s
    out.update(params)
    spec = get_spec(config.model)
    train = config.mode == "train"
    frozen = params["n_matmul_params"] - params.get(
        "n_matmul_params_trainable", params["n_matmul_params"]
    )
    per_token = M.analytic_flops_per_token(
        params["n_matmul_params"],
        spec.num_layers,
        spec.hidden_size,
        config.seq_len,
        train,
        n_frozen=frozen,
    )
    out["flops_per_step_analytic"] = per_token * config.tokens_per_step
    out["model_flops_per_token"] = per_token
    out["flops_per_step"] = flops
    out["tflops_per_s"] = M.achieved_tflops(flops, out["step_time_ms_p50"])
    out["peak_tflops"] = peak_tflops(gpu_name, config.precision) if gpu_name else None
    out["mfu"] = M.mfu(out["tflops_per_s"], out["peak_tflops"])
    analytic_tflops = M.achieved_tflops(out["flops_per_step_analytic"], out["step_time_ms_p50"])
    out["mfu_analytic"] = M.mfu(analytic_tflops, out["peak_tflops"])
    gib = 2**30
    out["peak_allocated_gib"] = raw.peak_allocated_bytes / gib if raw.peak_allocated_bytes else None
    out["peak_reserved_gib"] = raw.peak_reserved_bytes / gib if raw.peak_reserved_bytes else None
    out["device_total_gib"] = device_total_gib
    out.update(raw.nvml)
    tokens = config.tokens_per_step * len(steps)
    out["joules_per_token"] = M.joules_per_token(raw.nvml.get("energy_j"), tokens)
    if raw.losses:
        out["loss_first"], out["loss_last"] = raw.losses[0], raw.losses[-1]
        out["loss_mean"] = sum(raw.losses) / len(raw.losses)
        # JSON has no NaN: a non-finite step's loss is null (the status says nonfinite)
        out["losses"] = [round(x, 6) if finite([x]) else None for x in raw.losses]
    out["graph_captured"] = 1 if raw.graph_captured else 0
    out["graph_capture_s"] = raw.graph_capture_s
    out.update(profile_metrics(raw.profile, out["step_time_ms_p50"]))
    return out


def finite(losses: list[float]) -> bool:
    """Every measured step's loss is a finite number."""
    return all(x == x and abs(x) != float("inf") for x in losses)


def trial_record(
    config: TrialConfig,
    status: str,
    metrics: dict[str, Any],
    env: dict[str, Any],
    error: str | None,
    error_type: str | None,
    started: str,
    sweep: str | None,
    gpu_type: str | None,
    repeat: int,
) -> Trial:
    """The record a trial process returns (one GPU or N), finished now, on the node ``env``
    names; an oom record keeps where the allocator stood (``oom_figures`` of its error)."""
    if status == OOM and error:
        metrics = {**metrics, **oom_figures(error)}
    return Trial(
        config=config.to_dict(),
        status=status,
        metrics=clean_metrics(metrics),
        env=env,
        error=error,
        error_type=error_type,
        gpu_type=gpu_type,
        repeat=repeat,
        sweep=sweep,
        node=env.get("hostname"),
        started_at=started,
        finished_at=utc_now(),
    )
