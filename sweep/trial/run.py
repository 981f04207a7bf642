"""One trial: build the workload, warm up, measure, and return a ``Trial`` record.

``run_trial`` never raises. Out of memory, an unsupported option, a non-finite loss or any
other failure comes back as a record with that status, the error kept and the GPU's memory
released, so that a sweep can go on in the same process. Which harness measures is the table in
sweep/trial/harnesses.py; what a record is made of, sweep/trial/outcome.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any

from sweep.plan.config import TrialConfig
from sweep.plan.handoff import TRIAL_EXITS_ENV, shortcuts_on
from sweep.results.record import ERROR, NONFINITE, OK, Trial, utc_now
from sweep.trial.outcome import (
    classify,
    derive_metrics,
    finite,
    release,
    start_cuda,
    trial_record,
)

log = logging.getLogger(__name__)


def _measure(
    config: TrialConfig,
    device_type: str,
    env: dict[str, Any],
    timings: dict,
    flops_per_sequence: int | None,
    facts: dict[str, Any],
):
    from sweep.trial.harnesses import check, harness_for
    from sweep.trial.memory import memory_parts
    from sweep.trial.transforms import after_warmup_all, prepare_all
    from sweep.trial.window import synchronize
    from sweep.trial.workload import build_workload, step_flops

    check(config, device_type)
    prepare_all(config, device_type, env, facts)  # the allocator cap: before the model exists
    t0 = time.perf_counter()
    w = build_workload(config, device_type)
    w.after_warmup = after_warmup_all(config, facts)
    synchronize(device_type)
    setup_s = time.perf_counter() - t0
    # Counted before the run: Lightning's teardown moves the model back to the CPU.
    flops = step_flops(w, flops_per_sequence if shortcuts_on() else None, timings)
    raw = harness_for(config).run(w, env.get("gpu_uuid"))
    out = derive_metrics(
        config, raw, w.params, flops, env.get("gpu_name"), env.get("gpu_memory_total_gib")
    )
    out["setup_s"] = setup_s
    out.update(memory_parts(w.model, w.optimizer, raw.peak_allocated_bytes))
    return out, finite(raw.losses)


def run_trial(
    config: TrialConfig,
    *,
    sweep: str | None = None,
    gpu_type: str | None = None,
    repeat: int = 0,
    flops_per_sequence: int | None = None,
) -> Trial:
    """Measure one configuration in this process (an N-GPU one in N ranks it forks: see
    sweep/trial/ddp.py). Always returns a record; never raises.

    ``flops_per_sequence``: an earlier trial's FLOP count per sequence of this workload's shape
    (the worker passes it; the count is exactly linear in the batch), used instead of counting."""
    from sweep.trial.harnesses import harness_for

    if harness_for(config).ranks:
        from sweep.trial.ddp import run_ddp_trial

        with contextlib.redirect_stdout(sys.stderr):
            return run_ddp_trial(
                config,
                sweep=sweep,
                gpu_type=gpu_type,
                repeat=repeat,
                flops_per_sequence=flops_per_sequence,
            )
    from sweep.trial.env import capture
    from sweep.trial.workload import resolve_device

    started = utc_now()
    t0 = time.perf_counter()
    env: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    status, error, error_type = OK, None, None
    device_type = None
    timings: dict[str, float] = {}
    facts: dict[str, Any] = {}  # what the preparations set up (the cap): kept whatever the status
    # Libraries print to stdout; the trial command keeps stdout for the record alone.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            device_type = resolve_device(config)
            start_cuda(device_type, timings)
            t_env = time.perf_counter()
            env = capture(device_type)
            timings["time_env_s"] = time.perf_counter() - t_env
            metrics, ok = _measure(config, device_type, env, timings, flops_per_sequence, facts)
            if not ok:
                status, error = NONFINITE, "a measured step's loss was NaN or infinite"
        except Exception as exc:  # every failure is a result, not a crash
            status = classify(exc)
            error, error_type = f"{exc}"[:4000], type(exc).__name__
            if status == ERROR:
                log.exception("trial failed: %s", config)
            del exc  # drop the traceback's frames, which hold the model and its tensors
        finally:
            from sweep.trial.transforms import restore_all

            t_release = time.perf_counter()
            if not (os.environ.get(TRIAL_EXITS_ENV) == "1" and shortcuts_on()):
                release(device_type, bool(config.compile))
            restore_all(config)  # what a preparation changed in this process (cap, allocator)
            timings["time_release_s"] = time.perf_counter() - t_release
    if status == OK:
        metrics.update(timings)
    metrics.update(facts)
    metrics["trial_s"] = time.perf_counter() - t0
    return trial_record(
        config, status, metrics, env, error, error_type, started, sweep, gpu_type, repeat
    )
