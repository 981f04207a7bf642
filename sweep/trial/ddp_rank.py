"""One rank of an N-GPU trial: DistributedDataParallel over the trial's workload, measured like a
one-GPU trial, plus the two communication figures of the node.

Each rank builds the same workload (same seed: the same weights and the same synthetic batch on
every GPU, ``batch_size`` per GPU), wraps the model in ``DistributedDataParallel`` and runs the
native loop's steps inside the same ``MeasurementWindow``. On CUDA rank r takes ``cuda:r`` of the
GPUs Ray gave the trial and talks NCCL; on the CPU the ranks talk gloo.

NVML readings (power, energy, utilization, clocks) are rank 0's GPU's, like the environment;
``joules_per_token`` divides that GPU's energy by its own tokens, so it stays a per-GPU figure, as
are ``tflops_per_s`` and ``mfu`` (the FLOPs of one GPU's batch against one GPU's peak).

Communication figures, each timed apart from the measured steps:
- ``allreduce_busbw_gb_s``: an nccl-tests-style all-reduce of one large buffer, run before the
  model is built (the memory is free, and it opens the communicator so that the first step does
  not): bus bandwidth = bytes * 2(n-1)/n / time (nccl-tests' PERFORMANCE.md).
- ``allreduce_ms_per_step``: the gradients' all-reduce on its own, in DDP's bucket sizes, after
  the measured steps. Timed apart rather than through a comm hook because DDP overlaps the
  all-reduce with the backward: a hook sees only when a bucket's work was queued and finished,
  overlapped with compute, and synchronizing inside it would change the step being measured.
  This is the time the same bytes take without overlap: how much the step could lose to
  communication at worst.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from sweep.plan.config import TrialConfig
from sweep.trial import metrics as M
from sweep.trial.harness import native_stepper
from sweep.trial.harnesses import check
from sweep.trial.measure import MAX_STEPS, RawTiming, measure
from sweep.trial.outcome import NoCuda, derive_metrics, finite, start_cuda
from sweep.trial.window import synchronize
from sweep.trial.workload import build_workload, resolve_device, step_flops

# A collective that waits longer than this raises in the ranks still alive (gloo), or is aborted
# by NCCL's watchdog: a rank that hangs without dying is bounded even without the trial's timeout.
COLLECTIVE_TIMEOUT_S = float(os.environ.get("TSWEEP_DDP_COLLECTIVE_TIMEOUT_S", "300"))
# Bus-bandwidth buffer: 256 MiB on GPUs (past the size where NVLink all-reduce bandwidth levels
# off in nccl-tests), 8 MiB on the CPU (gloo over loopback; a test must stay fast).
BENCH_BYTES = {"cuda": 256 * 2**20, "cpu": 8 * 2**20}
BENCH_ITERS = {"cuda": 20, "cpu": 5}
# DDP's defaults (torch.nn.parallel.DistributedDataParallel: bucket_cap_mb=25, and a first
# bucket of dist._DEFAULT_FIRST_BUCKET_BYTES = 1 MiB so that communication starts early).
BUCKET_CAP_BYTES = 25 * 2**20
FIRST_BUCKET_BYTES = 2**20


def bucket_sizes(
    param_bytes: list[int], cap: int = BUCKET_CAP_BYTES, first_cap: int = FIRST_BUCKET_BYTES
) -> list[int]:
    """Bytes of each gradient bucket, DDP's way: parameters in reverse order (the order the
    backward produces their gradients), a bucket closed once it reaches its cap; the first
    bucket's cap is smaller."""
    buckets, current, limit = [], 0, first_cap
    for nbytes in reversed(param_bytes):
        current += nbytes
        if current >= limit:
            buckets.append(current)
            current, limit = 0, cap
    if current:
        buckets.append(current)
    return buckets


def _timed_all_reduce_s(tensors: list[torch.Tensor], device_type: str, iters: int) -> float:
    """Seconds per round of all-reducing ``tensors`` one after the other, ranks started
    together, median of ``iters`` rounds after one warm-up round."""
    for t in tensors:
        dist.all_reduce(t)
    synchronize(device_type)
    rounds = []
    for _ in range(iters):
        dist.barrier()
        synchronize(device_type)
        t0 = time.perf_counter()
        for t in tensors:
            dist.all_reduce(t)
        synchronize(device_type)
        rounds.append(time.perf_counter() - t0)
    return M.percentile(rounds, 50)


def bus_bandwidth(device: torch.device, world: int) -> dict[str, float]:
    """The node's all-reduce bus bandwidth (GB/s) over one buffer of BENCH_BYTES."""
    nbytes = BENCH_BYTES[device.type]
    x = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    seconds = _timed_all_reduce_s([x], device.type, BENCH_ITERS[device.type])
    del x
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the buffer must not sit in the trial's reserved peak
    return {
        "allreduce_bench_bytes": nbytes,
        "allreduce_bench_ms": seconds * 1000.0,
        "allreduce_busbw_gb_s": M.bus_bandwidth_gb_s(nbytes, seconds, world),
    }


def grad_allreduce(model: torch.nn.Module, device: torch.device) -> dict[str, float]:
    """The gradients' all-reduce alone, per step: every DDP bucket's bytes in the gradients'
    own dtype (bf16 under bf16-true; DDP buckets each dtype apart), one buffer per dtype the
    size of its largest bucket reused for all (no second copy of the gradients)."""
    by_dtype: dict[torch.dtype, list[int]] = {}
    for p in model.parameters():
        if p.requires_grad:
            by_dtype.setdefault(p.dtype, []).append(p.numel() * p.element_size())
    views, sizes = [], []
    for dtype, param_bytes in by_dtype.items():
        these = bucket_sizes(param_bytes)
        size = torch.empty((), dtype=dtype).element_size()
        buf = torch.zeros(max(these) // size, dtype=dtype, device=device)
        views += [buf[: s // size] for s in these]
        sizes += these
    seconds = _timed_all_reduce_s(views, device.type, 5)
    return {
        "allreduce_ms_per_step": seconds * 1000.0,
        "grad_allreduce_bytes": sum(sizes),
        "grad_buckets": len(sizes),
    }


class RanksAgree:
    """The loop's rule for a rank: ``steps`` steps, then, with ``min_measure_s``, rank 0 decides
    after each further ``steps`` whether to go on and broadcasts it, so that every rank runs the
    same number of steps (DDP's all-reduce needs all of them)."""

    def __init__(self, steps: int, min_measure_s: float, device: torch.device) -> None:
        self.steps, self.min_measure_s, self.device = steps, min_measure_s, device
        self.target = steps

    def __call__(self, n: int, elapsed_s: float) -> bool:
        if n < self.target:
            return True
        if self.min_measure_s <= 0 or n >= MAX_STEPS:
            return False
        more = torch.tensor([int(elapsed_s < self.min_measure_s)], device=self.device)
        dist.broadcast(more, 0)
        if not int(more.item()):
            return False
        self.target = min(n + self.steps, MAX_STEPS)
        return True


def run_steps(w, uuid: str | None) -> RawTiming:
    """The native loop's measurement on every rank: the ranks open their windows together and
    agree on the number of steps; every rank profiles one step (the step all-reduces)."""
    stepper = native_stepper(w)
    stepper.before_window = dist.barrier
    stepper.go_on = RanksAgree(w.config.steps, w.config.min_measure_s, w.device)
    return measure(w, stepper, uuid)


def rank_trial(
    rank: int,
    world: int,
    config: TrialConfig,
    store_path: str,
    flops_per_sequence: int | None = None,
) -> dict[str, Any]:
    """Run this rank's share of the trial; returns its metrics (rank 0: with the environment and
    the FLOP count, ``flops_per_sequence`` times the batch where given). Raises on failure: the
    caller turns it into a status."""
    from torch.nn.parallel import DistributedDataParallel

    from sweep.trial.env import capture

    timings: dict[str, float] = {}
    device_type = resolve_device(config)
    if device_type == "cuda":
        visible = torch.cuda.device_count()
        if visible < world:
            raise NoCuda(f"gpus_per_trial: {world} GPUs asked for, {visible} visible here")
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(max(1, torch.get_num_threads() // world))  # the ranks share cores
    start_cuda(device_type, timings)
    env = capture(device_type) if rank == 0 else {}
    check(config, device_type)
    device = torch.device(device_type, rank) if device_type == "cuda" else torch.device("cpu")
    dist.init_process_group(
        "nccl" if device_type == "cuda" else "gloo",
        init_method=f"file://{store_path}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
        device_id=device if device_type == "cuda" else None,  # binds NCCL to cuda:rank
    )
    comm = bus_bandwidth(device, world)
    t0 = time.perf_counter()
    w = build_workload(config, device_type)
    synchronize(device_type)
    setup_s = time.perf_counter() - t0
    # counted on the bare model, before DDP registers its gradient hooks; rank 0 only
    flops = step_flops(w, flops_per_sequence, timings) if rank == 0 else None
    ddp = DistributedDataParallel(w.model, device_ids=[rank] if device_type == "cuda" else None)
    w.run_model = torch.compile(ddp, mode=config.compile_mode) if config.compile else ddp
    raw = run_steps(w, env.get("gpu_uuid"))
    comm.update(grad_allreduce(w.model, device))
    out = derive_metrics(
        config, raw, w.params, flops, env.get("gpu_name"), env.get("gpu_memory_total_gib")
    )
    out.update(comm)
    out["setup_s"] = setup_s
    out.update(timings)
    return {"rank": rank, "metrics": out, "env": env, "finite": finite(raw.losses)}
