"""One trial: build the workload, warm up, measure, and return a ``Trial`` record.

``run_trial`` never raises. Out of memory, an unsupported option, a non-finite loss or any
other failure comes back as a record with that status, the error kept and the GPU's memory
released, so that a sweep can go on in the same process.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import sys
import time
from typing import Any

from sweep.plan.config import (
    FLOPS_PER_SEQUENCE_ENV,
    TRIAL_EXITS_ENV,
    TrialConfig,
    shortcuts_on,
)
from sweep.results.record import (
    ERROR,
    NO_GPU_TYPE,
    NONFINITE,
    OK,
    OOM,
    UNSUPPORTED,
    Trial,
    clean_metrics,
    utc_now,
)
from sweep.trial import metrics as M
from sweep.trial.hardware import peak_tflops
from sweep.trial.profile import profile_metrics

log = logging.getLogger(__name__)


# How torch's CPU allocator words a failed host allocation ("DefaultCPUAllocator: can't allocate
# memory: you tried to allocate N bytes", "... not enough memory ...").
_CPU_ALLOCATOR_MARKS = ("DefaultCPUAllocator", "can't allocate memory", "alloc_cpu")


def _is_oom(exc: BaseException) -> bool:
    """Whether the GPU ran out of memory: the status that prunes larger batches. A failed host
    allocation is an error, not oom: the batch did not outgrow the GPU."""
    import torch

    text = str(exc)
    if any(m in text for m in _CPU_ALLOCATOR_MARKS):
        return False
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # cuBLAS/cuDNN/Triton report a failed allocation as a plain RuntimeError.
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in text
    )


def derive_metrics(
    config: TrialConfig,
    raw,
    params: dict[str, int],
    flops: int | None,
    gpu_name: str | None,
    device_total_gib: float | None,
) -> dict[str, Any]:
    """Raw timings and counts -> the record's metrics. Pure apart from its inputs."""
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
    spec_layers, spec_hidden = _layers_hidden(config)
    train = config.mode == "train"
    out["flops_per_step_analytic"] = (
        M.analytic_flops_per_token(
            params["n_matmul_params"], spec_layers, spec_hidden, config.seq_len, train
        )
        * config.tokens_per_step
    )
    out["flops_per_step"] = flops
    out["tflops_per_s"] = M.achieved_tflops(flops, out["step_time_ms_p50"])
    out["peak_tflops"] = peak_tflops(gpu_name, config.precision) if gpu_name else None
    out["mfu"] = M.mfu(out["tflops_per_s"], out["peak_tflops"])
    gib = 2**30
    out["peak_allocated_gib"] = raw.peak_allocated_bytes / gib if raw.peak_allocated_bytes else None
    out["peak_reserved_gib"] = raw.peak_reserved_bytes / gib if raw.peak_reserved_bytes else None
    out["device_total_gib"] = device_total_gib
    out.update(raw.nvml)
    tokens = config.tokens_per_step * len(steps)
    out["joules_per_token"] = M.joules_per_token(raw.nvml.get("energy_j"), tokens)
    if raw.losses:
        out["loss_first"], out["loss_last"] = raw.losses[0], raw.losses[-1]
    out["graph_captured"] = 1 if raw.graph_captured else 0
    out["graph_capture_s"] = raw.graph_capture_s
    out.update(profile_metrics(raw.profile, out["step_time_ms_p50"]))
    return out


def _layers_hidden(config: TrialConfig) -> tuple[int, int]:
    from sweep.plan.catalog import get_spec

    spec = get_spec(config.model)
    return spec.num_layers, spec.hidden_size


def _release(device_type: str | None, compiled: bool) -> None:
    """Free what the trial held. Never raises: after a failed CUDA-graph capture the device can
    refuse further calls, and the record must still come back."""
    gc.collect()
    try:
        import torch

        if device_type == "cuda":
            torch.cuda.empty_cache()
        if compiled:
            torch._dynamo.reset()
    except Exception as exc:
        log.warning("releasing the trial's memory failed: %s", exc)


def _flops(w, timings: dict[str, float]) -> int | None:
    """The step's FLOPs: an earlier trial's count per sequence for this shape, scaled to this
    batch, where the worker passed one (FLOPS_PER_SEQUENCE_ENV); counted otherwise."""
    from sweep.trial.workload import count_flops

    known = os.environ.get(FLOPS_PER_SEQUENCE_ENV) if shortcuts_on() else None
    if known:
        timings["flops_reused"] = 1
        return int(known) * w.config.batch_size
    t0 = time.perf_counter()
    flops = count_flops(w)
    timings["time_flops_s"] = time.perf_counter() - t0
    timings["flops_reused"] = 0
    return flops


def _measure(config: TrialConfig, device_type: str, env: dict[str, Any], timings: dict):
    from sweep.trial.harness import run_lightning, run_native
    from sweep.trial.workload import build_workload, check_support

    check_support(config, device_type)
    if config.cuda_graph:
        from sweep.trial.graph import check_graph_support

        check_graph_support(config, device_type)
    t0 = time.perf_counter()
    w = build_workload(config, device_type)
    from sweep.trial.window import synchronize

    synchronize(device_type)
    setup_s = time.perf_counter() - t0
    # Counted before the run: Lightning's teardown moves the model back to the CPU.
    flops = _flops(w, timings)
    if config.cuda_graph:
        from sweep.trial.graph import run_graphed as run
    else:
        run = run_lightning if config.harness == "lightning" else run_native
    raw = run(w, env.get("gpu_uuid"))
    out = derive_metrics(
        config, raw, w.params, flops, env.get("gpu_name"), env.get("gpu_memory_total_gib")
    )
    out["setup_s"] = setup_s
    finite = all(math.isfinite(x) for x in raw.losses)
    return out, finite


def _start_cuda(device_type: str, timings: dict[str, float]) -> None:
    """Initialise CUDA now, timed apart (it would otherwise land in whatever touches it first)."""
    if device_type != "cuda":
        return
    import torch

    t0 = time.perf_counter()
    torch.cuda.init()
    timings["time_cuda_init_s"] = time.perf_counter() - t0


def run_trial(
    config: TrialConfig, *, sweep: str | None = None, gpu_type: str | None = None, repeat: int = 0
) -> Trial:
    """Measure one configuration in this process (an N-GPU one in N ranks it forks: see
    sweep/trial/ddp.py). Always returns a record; never raises."""
    if config.gpus_per_trial > 1:
        from sweep.trial.ddp import run_ddp_trial

        with contextlib.redirect_stdout(sys.stderr):
            return run_ddp_trial(config, sweep=sweep, gpu_type=gpu_type, repeat=repeat)
    from sweep.trial.env import capture
    from sweep.trial.workload import NoCuda, Unsupported, resolve_device

    started = utc_now()
    t0 = time.perf_counter()
    env: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    status, error, error_type = OK, None, None
    device_type = None
    timings: dict[str, float] = {}
    # Libraries print to stdout; the trial command keeps stdout for the record alone.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            device_type = resolve_device(config)
            _start_cuda(device_type, timings)
            t_env = time.perf_counter()
            env = capture(device_type)
            timings["time_env_s"] = time.perf_counter() - t_env
            metrics, finite = _measure(config, device_type, env, timings)
            if not finite:
                status, error = NONFINITE, "a measured step's loss was NaN or infinite"
        except Unsupported as exc:
            status, error, error_type = UNSUPPORTED, str(exc), "Unsupported"
        except NoCuda as exc:  # not final: a resume runs it again once CUDA works there
            status, error, error_type = NO_GPU_TYPE, str(exc), "NoCuda"
        except Exception as exc:  # every failure is a result, not a crash
            status = OOM if _is_oom(exc) else ERROR
            error, error_type = f"{exc}"[:4000], type(exc).__name__
            if status == ERROR:
                log.exception("trial failed: %s", config)
            del exc  # drop the traceback's frames, which hold the model and its tensors
        finally:
            t_release = time.perf_counter()
            if not (os.environ.get(TRIAL_EXITS_ENV) == "1" and shortcuts_on()):
                _release(device_type, bool(config.compile))
            timings["time_release_s"] = time.perf_counter() - t_release
    if status == OK:
        metrics.update(timings)
    metrics["trial_s"] = time.perf_counter() - t0
    return trial_record(
        config, status, metrics, env, error, error_type, started, sweep, gpu_type, repeat
    )


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
    names."""
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
