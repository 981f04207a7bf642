"""The one record that travels from a trial to the store to the UI.

A ``Trial`` is frozen and versioned. It never imports torch: the store and the web app read it.
Units live in the metric names (``step_time_ms_p50``, ``tokens_per_s``, ``peak_allocated_gib``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# 2: config may hold compile as a mode name and the fields of ADDED_FIELDS; metrics may hold the
# CUDA-graph and launch-overhead figures. Version 1 records read as version 2 with those defaults.
# 3: launch_bound_pct is the idle share of the measured median step (was: of the profiled step's
# own wall time, which the profiler stretches); metrics may hold profiled_step_ms. Version 2
# records read with launch_bound_pct recomputed from their kernel time and median step
# (upgrade_launch_bound); the stored rows are left as they were written.
SCHEMA_VERSION = 3

# Configuration fields added after the first schema, with their defaults (TrialConfig's: a test
# checks they agree). A field at its default is left out of the key, so a stored row's key stays
# what it was before the field existed; a record read without one gets the default.
ADDED_FIELDS: dict[str, Any] = {
    "cuda_graph": False,
    "profile_step": True,
    "gpus_per_trial": 1,
    "finetune": "full",
    "lora_rank": 16,
    "lora_targets": "all-linear",
    "liger": False,
    "capacity_gb": None,
    "allocator": "default",
}

# Statuses a trial process itself returns.
OK, OOM, UNSUPPORTED, NONFINITE, ERROR = "ok", "oom", "unsupported", "nonfinite", "error"
# Statuses the engine assigns when a trial could not report for itself.
TIMEOUT, CRASHED, NO_GPU_TYPE, SKIPPED_OOM = "timeout", "crashed", "no_gpu_type", "skipped_oom"
STATUSES = (OK, OOM, UNSUPPORTED, NONFINITE, ERROR, TIMEOUT, CRASHED, NO_GPU_TYPE, SKIPPED_OOM)
# A resumed sweep skips keys stored with one of these. Not final: crashed (a lost node or a killed
# process may succeed next time) and no_gpu_type (the cluster may have the type next time).
FINAL_STATUSES = frozenset({OK, OOM, UNSUPPORTED, NONFINITE, ERROR, TIMEOUT, SKIPPED_OOM})

MEASURED, REFERENCE = "measured", "reference"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def trial_key(config: dict[str, Any], gpu_type: str | None, repeat: int = 0) -> str:
    """A stable hash of what was asked: the configuration, the GPU type and the repeat index.
    Fields of ADDED_FIELDS at their default are left out (keys of rows stored before them)."""
    config = {
        k: v for k, v in config.items() if not (k in ADDED_FIELDS and _same(v, ADDED_FIELDS[k]))
    }
    blob = json.dumps(
        {"config": config, "gpu_type": gpu_type, "repeat": repeat},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _same(value: Any, default: Any) -> bool:
    """Equal and of the same type (1 is not True, 0 is not False)."""
    return type(value) is type(default) and value == default


@dataclass(frozen=True)
class Trial:
    """One measured (or failed, or skipped) training configuration.

    config: the TrialConfig as a dict (what was asked).
    status: one of STATUSES.
    metrics: numbers with units in their names (ms, s, gib, per_s, w, j, mhz, pct);
        None if unmeasured.
    env: the machine and software the trial ran on (GPU, driver, versions, host, commit).
    error / error_type: the exception message and class name when status is not ok.
    gpu_type: the Ray accelerator type asked for (None: any GPU or the CPU).
    node: the Ray node (or host) the trial ran on; ray_trial_id: Tune's id.
    source: "measured" for this project's own runs, "reference" for shipped rows (see provenance).
    """

    config: dict[str, Any]
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    gpu_type: str | None = None
    repeat: int = 0
    sweep: str | None = None
    node: str | None = None
    ray_trial_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    source: str = MEASURED
    provenance: str | None = None
    key: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status: {self.status!r} is not one of {', '.join(STATUSES)}")
        if not self.key:
            object.__setattr__(self, "key", trial_key(self.config, self.gpu_type, self.repeat))

    def replace(self, **changes: Any) -> Trial:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, **kw: Any) -> str:
        return json.dumps(
            self.to_dict(), sort_keys=True, allow_nan=False, default=_json_default, **kw
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        """Read a record of this or an older schema version; a newer one is an error."""
        data = dict(data)
        # A record without a version predates versioning: version 0, not the current one.
        version = int(data.setdefault("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version: record is version {version}, this program reads "
                f"up to {SCHEMA_VERSION}; upgrade transformers-sweep"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown record field(s): {', '.join(unknown)}")
        config = data.get("config")
        if isinstance(config, dict) and "model" in config:  # a trial configuration
            data["config"] = {**ADDED_FIELDS, **config}
        if version < 3 and isinstance(data.get("metrics"), dict):
            data["metrics"] = upgrade_launch_bound(data["metrics"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Trial:
        return cls.from_dict(json.loads(text))


def upgrade_launch_bound(metrics: dict[str, Any]) -> dict[str, Any]:
    """A version-2 record's launch_bound_pct as version 3 defines it: the idle share of the
    median measured step, from the profiled step's summed kernel time (version 2 kept no busy
    union; on one stream the two are equal but for copies and memsets, which the sum leaves
    out, so the figure can read a little high). Records without the two figures are unchanged.
    Idempotent: the old figure is never read, so a version-2 record written back with the new
    one (a reference file rebuilt from version-2 rows) reads the same again."""
    kernel_ms, step_ms = metrics.get("gpu_kernel_ms_per_step"), metrics.get("step_time_ms_p50")
    if metrics.get("launch_bound_pct") is None or not isinstance(kernel_ms, (int, float)):
        return metrics
    if not isinstance(step_ms, (int, float)) or not step_ms > 0:
        return metrics
    idle = max(0.0, min(100.0, 100.0 * (1.0 - kernel_ms / step_ms)))
    return {**metrics, "launch_bound_pct": idle}


def failure_row(
    config: dict[str, Any], status: str, error: str, error_type: str, **fields: Any
) -> Trial:
    """The one builder of a row for a trial that produced no measurement of its own: the
    engine's decisions (skipped_oom, no_gpu_type, a result that never arrived), a timeout, a
    crash, an exception outside the trial function. ``fields``: any other Trial field (gpu_type,
    repeat, sweep, key, node, env, ray_trial_id...)."""
    fields.setdefault("finished_at", utc_now())
    return Trial(config=config, status=status, error=error, error_type=error_type, **fields)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Replace non-finite floats by None so that the record stays valid JSON."""
    out = {}
    for k, v in metrics.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            v = None
        out[k] = v
    return out


# The metrics a trial reports, with their meaning. Units are in the names.
METRICS: dict[str, str] = {
    "step_time_ms_p50": "median time of one training step (forward+backward+optimizer), ms",
    "step_time_ms_p10": "10th percentile step time, ms",
    "step_time_ms_p90": "90th percentile step time, ms",
    "step_time_ms_mean": "mean step time, ms",
    "step_time_ms_std": "standard deviation of step time, ms",
    "step_time_cv": "coefficient of variation of step time (std / mean)",
    "steps_measured": "number of measured steps (after warm-up)",
    "forward_ms_p50": "median forward time (loss included), ms",
    "backward_ms_p50": "median backward time, ms",
    "optimizer_ms_p50": "median optimizer step (with zero_grad and grad-scaler), ms",
    "data_ms_p50": "median time waiting for the batch (Lightning harness), ms",
    "other_ms_p50": "median time of the step not in a named phase (hooks, framework), ms",
    "sequences_per_s": "sequences per second, from the median step time (all GPUs of an N-GPU "
    "trial)",
    "tokens_per_s": "tokens per second (batch x seq_len / median step time; x N for an N-GPU "
    "trial, whose batch is per GPU)",
    "warmup_steps": "warm-up steps run before measuring (excluded)",
    "warmup_s": "seconds spent in warm-up (compilation, first optimizer step)",
    "setup_s": "seconds to build the model, optimizer and inputs",
    "measure_s": "wall seconds of the measured steps",
    "trial_s": "wall seconds of the whole trial in its process",
    "flops_per_step": "FLOPs of one step counted by torch FlopCounterMode",
    "flops_per_step_analytic": "model FLOPs of one step: per token 6N trainable + 4N frozen +"
    " 12*L*d*T (training; no recomputation), or 2N + 4*L*d*T (inference)",
    "model_flops_per_token": "model FLOPs per token (flops_per_step_analytic / tokens per step)",
    "mfu_analytic": "MFU from the model FLOPs (flops_per_step_analytic) over the datasheet peak",
    "flops_count_failed": "1 where torch's FLOP counter raised on the step (flops_per_step empty)",
    "flops_not_counted": "1 on an emulated card's row (capacity_gb): what fits, never a speed, so "
    "no FLOP count (flops_per_step empty; the model FLOPs stand)",
    "tflops_per_s": "achieved TFLOP/s (counted FLOPs / median step time)",
    "peak_tflops": "datasheet dense peak TFLOP/s of the GPU for the precision (None if unknown)",
    "mfu": "model FLOPs utilization: achieved / peak (None if the peak is unknown)",
    "n_params": "parameters of the model",
    "n_params_nonembedding": "parameters outside the embeddings",
    "n_matmul_params": "parameters used in matrix products (the N of 6N)",
    "n_params_trainable": "parameters that train (all of them, or the adapters of lora/qlora)",
    "n_matmul_params_trainable": "matrix-product parameters that train",
    "weights_gib": "bytes of the weights (parameters, 4-bit statistics, buffers), GiB",
    "gradients_gib": "bytes of every trainable parameter's gradient, GiB",
    "optimizer_state_gib": "bytes of the optimizer's state in torch's allocator, GiB",
    "optimizer_state_paged_gib": "bytes of an optimizer state in paged (unified) memory, GiB",
    "activations_other_gib": "the peak less weights, gradients and optimizer state: a lower"
    " bound of what activations, logits and workspace took at the peak, GiB",
    "loss_mean": "mean loss of the measured steps",
    "losses": "the loss of every measured step, in order (null where not finite)",
    "peak_allocated_gib": "torch peak allocated memory during the measured steps, GiB; where"
    " the step replays CUDA graphs, the peak of their capture too (cuda_graph: their pool holds"
    " it through the replays), and under compile reduce-overhead or max-autotune at least the"
    " measured peak plus the bytes their private pools reserve (the allocator shows a replayed"
    " cudagraph tree's tensors as free)",
    "peak_reserved_gib": "torch peak reserved (cached) memory during the measured steps, GiB",
    "nvml_peak_used_gib": "peak device memory used seen by NVML (context included), GiB",
    "device_total_gib": "device memory, GiB",
    "oom_request_gib": "oom rows: the allocation that failed, GiB (PyTorch's message)",
    "oom_allocated_gib": "oom rows: what PyTorch had allocated when it failed, GiB",
    "oom_cached_gib": "oom rows: what PyTorch held reserved but unallocated when it failed (its "
    "cache, split blocks included), GiB",
    "nvml_total_gib": "device memory as NVML counts it, GiB: more than device_total_gib by the "
    "region the driver keeps for itself, which NVML's used memory (nvml_peak_used_gib) includes",
    "gpu_util_pct_mean": "NVML GPU utilization, mean over measured steps, %",
    "mem_util_pct_mean": "NVML memory-controller utilization, mean, %",
    "sm_clock_mhz_mean": "SM clock, mean, MHz",
    "power_w_mean": "board power, mean, W",
    "temperature_c_max": "GPU temperature, max, C",
    "energy_j": "energy over the measured steps (NVML total-energy counter), J",
    "joules_per_token": "energy / tokens processed in the measured steps, J",
    "nvml_samples": "NVML readings taken during the measured steps",
    "throttle_reasons": "NVML clock throttle reasons seen (names, comma-separated)",
    "loss_first": "loss of the first measured step",
    "loss_last": "loss of the last measured step",
    "max_batch_size": "largest batch that fits (max-batch search rows only)",
    "max_seq_len": "longest sequence that fits, tokens, to max-seq's resolution (max-seq search "
    "rows only)",
    "capacity_cap_gib": "capacity_gb rows: what the allocator may reserve in the measured steps, "
    "GiB (the emulated card less what the driver keeps and what the process holds outside the "
    "allocator after the warm-up)",
    "outside_allocator_gib": "capacity_gb rows: device memory the process holds outside PyTorch's "
    "allocator after the warm-up, GiB (the context, the kernels the warm-up loaded, library "
    "handles): what the second cap takes away",
    "cuda_context_gib": "capacity_gb rows: device memory in use right after CUDA's start, GiB "
    "(the context, measured on the running GPU)",
    "driver_reserved_gib": "capacity_gb rows: what the driver keeps of the emulated card, GiB "
    "(the running card's share: its size as sold less what it shows)",
    "predicted_limit_batch": "max-batch probes: the largest batch the memory line predicted to fit "
    "when the probe was asked",
    "predicted_limit_seq": "max-seq probes: the longest sequence the memory model predicted to "
    "fit when the probe was asked, tokens",
    "predicted_peak_gib": "max-batch probes: the peak the memory line predicted for the batch, GiB",
    "prediction_error_pct": "max-batch probes: (predicted - measured peak) / measured, %",
    "graph_captured": "1 if the measured steps were CUDA-graph replays (cuda_graph), else 0",
    "graph_capture_s": "seconds to capture the step's CUDA graphs (after the warm-up; apart)",
    "kernels_per_step": "GPU kernels of one profiled step after the measured ones",
    "gpu_kernel_ms_per_step": "summed kernel time of the profiled step, ms",
    "launch_bound_pct": "share of the measured median step with no GPU work running: 100 x "
    "(1 - the profiled step's busy time (the union of kernel, memcpy and memset intervals) / "
    "step_time_ms_p50), %",
    "profiled_step_ms": "wall time of the profiled step, ms (the profiler stretches it: longer "
    "than the measured steps)",
    "profile_s": "wall seconds of the profiled step, the profiler's start and parse included",
    "fused_attention_kernels_per_step": "fused attention kernels (flash, memory-efficient, "
    "cuDNN) in the profiled step; 0 where attention ran on the math path",
    # N-GPU trials (gpus_per_trial > 1, DDP; sweep/trial/ddp.py):
    "world_size": "GPUs (DDP ranks) of the trial",
    "sequences_per_s_per_gpu": "N-GPU trials: sequences per second of one GPU",
    "tokens_per_s_per_gpu": "N-GPU trials: tokens per second of one GPU",
    "step_time_ms_p50_max_rank": "N-GPU trials: the slowest rank's median step time, ms (the "
    "step times above are rank 0's)",
    "rank_step_skew_pct": "N-GPU trials: (slowest - fastest rank's median step) / fastest, %",
    "allreduce_busbw_gb_s": "N-GPU trials: all-reduce bus bandwidth of the node (one buffer, "
    "nccl-tests' bytes x 2(n-1)/n / time), GB/s",
    "allreduce_bench_bytes": "N-GPU trials: the bus-bandwidth buffer, bytes",
    "allreduce_bench_ms": "N-GPU trials: one all-reduce of the bus-bandwidth buffer, ms",
    "allreduce_ms_per_step": "N-GPU trials: the gradients' all-reduce alone (DDP's bucket sizes, "
    "no overlap with the backward), ms per step",
    "grad_allreduce_bytes": "N-GPU trials: gradient bytes all-reduced per step",
    "grad_buckets": "N-GPU trials: DDP gradient buckets per step",
    # The trial process's time budget: where its seconds went besides warm-up and measuring.
    "time_fork_s": "seconds from the worker starting the trial's process to the process running",
    "time_cuda_init_s": "seconds to initialise CUDA in the trial's process",
    "time_env_s": "seconds to capture the environment (GPU facts; the software once per server)",
    "time_flops_s": "seconds to count the step's FLOPs (absent where an earlier count was reused)",
    "flops_reused": "1 if flops_per_step scales an earlier trial's count for the same shape",
    "time_release_s": "seconds to release the trial's memory (0 in a process about to exit)",
    "time_exit_s": "seconds from the record's arrival to the trial's process being gone",
    "time_process_s": "wall seconds of the trial's process as its worker saw it, start to end",
    # Reference rows from the 2020 project, whose instruments differ (see their provenance):
    "nvml_mean_used_gib": "mean of nvidia-smi memory.used samples (context and cache), GiB; "
    "not a peak",
    "forward_ms_host_mean": "forward by host timers without GPU sync, mean, ms",
    "backward_ms_host_mean": "backward by host timers without GPU sync, mean, ms",
    "optimizer_ms_host_mean": "optimizer by host timers without GPU sync, mean, ms",
    "other_ms_host_mean": "framework hooks by host timers, mean, ms",
    "sequences_per_s_wall": "sequences per second over the whole run's wall time, warm-up included",
    "train_duration_s": "wall seconds of the whole training run",
}

ENV_KEYS = (
    "device",
    "gpu_name",
    "gpu_uuid",
    "gpu_memory_total_gib",
    "compute_capability",
    "driver_version",
    "cuda_version",
    "cudnn_version",
    "power_limit_w",
    "torch_version",
    "transformers_version",
    "lightning_version",
    "ray_version",
    "python_version",
    "cpu_model",
    "hostname",
    "git_commit",
)

_TOP = (
    "key",
    "status",
    "source",
    "sweep",
    "gpu_type",
    "repeat",
    "node",
    "ray_trial_id",
    "started_at",
    "finished_at",
    "error_type",
    "error",
    "provenance",
    "schema_version",
)


def flatten(trial: Trial) -> dict[str, Any]:
    """One flat row for a DataFrame: top-level fields, config fields and metrics by their own
    names (they do not collide), environment as ``env.<key>``, and ``gpu``: the GPU's name, or
    "cpu" for CPU trials."""
    row: dict[str, Any] = {k: getattr(trial, k) for k in _TOP}
    row.update(trial.config)
    row.update(trial.metrics)
    for k, v in trial.env.items():
        row[f"env.{k}"] = v
    # rows the engine makes itself (skipped_oom, crashed) carry no environment: use the config
    on_cpu = trial.env.get("device", trial.config.get("device")) == "cpu"
    row["gpu"] = trial.env.get("gpu_name") or ("cpu" if on_cpu else trial.gpu_type)
    return row
