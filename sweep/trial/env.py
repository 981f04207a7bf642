"""The environment a trial ran on, captured automatically (every field optional)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from typing import Any

from sweep.trial.allocator import environment_conf


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_commit() -> str | None:
    """The project's commit: ``TSWEEP_GIT_COMMIT`` when set (a copy of the tree without its
    .git, as on a lent GPU machine), else ``git rev-parse`` in a checkout, else None."""
    if os.environ.get("TSWEEP_GIT_COMMIT"):
        return os.environ["TSWEEP_GIT_COMMIT"][:12]
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def software() -> dict[str, Any]:
    """The node's software, captured once per process (the fork server calls it at start-up, so
    every trial process it forks inherits the answer; a git subprocess and a dozen package
    lookups per trial are not measurement)."""
    from sweep.plan.handoff import shortcuts_on

    if not shortcuts_on():
        return _software()
    global _SOFTWARE
    if _SOFTWARE is None:
        _SOFTWARE = _software()
    return dict(_SOFTWARE)


_SOFTWARE: dict[str, Any] | None = None


def _software() -> dict[str, Any]:
    return {
        "python_version": platform.python_version(),
        "torch_version": _version("torch"),
        "transformers_version": _version("transformers"),
        "lightning_version": _version("pytorch-lightning") or _version("lightning"),
        "ray_version": _version("ray"),
        "cpu_model": cpu_model(),
        "hostname": socket.gethostname(),
        "git_commit": git_commit(),
    }


def gpu_facts(device_index: int = 0) -> dict[str, Any]:
    """GPU facts from torch and NVML for the trial's CUDA device (after CUDA_VISIBLE_DEVICES)."""
    import torch

    props = torch.cuda.get_device_properties(device_index)
    uuid = str(getattr(props, "uuid", "") or "") or None
    if uuid and not uuid.startswith("GPU-"):
        uuid = f"GPU-{uuid}"
    facts: dict[str, Any] = {
        "gpu_name": props.name,
        "gpu_uuid": uuid,
        "gpu_memory_total_gib": props.total_memory / 2**30,
        "compute_capability": f"{props.major}.{props.minor}",
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version(),
        "num_gpus_visible": torch.cuda.device_count(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        # the user's allocator settings (expandable segments change what fits: the allocator field)
        "pytorch_cuda_alloc_conf": environment_conf(),
    }
    from sweep.trial.telemetry import nvml_handle_for_uuid

    nv, handle = nvml_handle_for_uuid(uuid)
    if nv is not None:
        try:
            facts["driver_version"] = nv.nvmlSystemGetDriverVersion()
        except Exception:
            pass
        if handle is not None:
            try:
                facts["power_limit_w"] = nv.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
            except Exception:
                pass
            try:
                facts["sm_clock_max_mhz"] = nv.nvmlDeviceGetMaxClockInfo(handle, nv.NVML_CLOCK_SM)
                facts["mem_clock_max_mhz"] = nv.nvmlDeviceGetMaxClockInfo(handle, nv.NVML_CLOCK_MEM)
            except Exception:
                pass
    return facts


def capture(device_type: str) -> dict[str, Any]:
    env = {"device": device_type, **software()}
    if device_type == "cuda":
        env.update(gpu_facts(0))
    return env
