"""Trial functions that stand in for sweep.trial.run:run_trial in engine tests (no torch).

Each takes a TrialConfig and returns a Trial, as run_trial does. The engine imports them in the
Ray worker by their dotted path ("tests.fake_trials:oom_above_64"). Behaviour that depends on a
threshold reads it from the environment so that one function serves several tests.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from sweep.plan.config import TrialConfig
from sweep.results.record import OK, OOM, Trial, utc_now

# The largest batch that "fits" for oom_above when the config's seed is 0. A test picks another
# limit through the seed field (free for fake trials), so that one function serves every test.
FIT_LIMIT = 64


def _env() -> dict:
    # CUDA_VISIBLE_DEVICES: what Ray gave this process (a test checks one GPU per trial)
    return {
        "hostname": socket.gethostname(),
        "device": "cpu",
        "pid": os.getpid(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def _ok(config: TrialConfig, **metrics) -> Trial:
    step_ms = 1.0 + config.batch_size * 0.01
    m = {
        "step_time_ms_p50": step_ms,
        "sequences_per_s": config.batch_size / step_ms * 1e3,
        "tokens_per_s": config.tokens_per_step / step_ms * 1e3,
        "peak_allocated_gib": config.batch_size * config.seq_len / 2**20,
        "trial_s": 0.0,
    }
    m.update(metrics)
    return Trial(
        config=config.to_dict(),
        status=OK,
        metrics=m,
        env=_env(),
        started_at=utc_now(),
        finished_at=utc_now(),
    )


def noop(config: TrialConfig) -> Trial:
    """Returns at once: the engine's own overhead is all that is left to measure."""
    return _ok(config)


def oom_above(config: TrialConfig) -> Trial:
    """ok up to the limit (config.seed, or FIT_LIMIT; seq_len >= 256 halves it), oom above."""
    limit = (config.seed or FIT_LIMIT) // (2 if config.seq_len >= 256 else 1)
    if config.batch_size > limit:
        return Trial(
            config=config.to_dict(),
            status=OOM,
            env=_env(),
            error="CUDA out of memory (fake)",
            error_type="OutOfMemoryError",
            finished_at=utc_now(),
        )
    return _ok(config)


def oom_above_with_memory(config: TrialConfig) -> Trial:
    """oom_above with memory readings: NVML's peak 1 GiB + 0.5 GiB per sequence, on a card whose
    total puts the limit (config.seed) just below where the next batch's peak would be."""
    limit = config.seed or FIT_LIMIT
    record = oom_above(config)
    if record.status != OK:
        return record
    total = 0.5 * (limit + 0.5) + 0.5  # the memory guide's NVML threshold is total + 0.5
    memory = {"nvml_peak_used_gib": 1.0 + 0.5 * config.batch_size, "device_total_gib": total}
    return record.replace(metrics={**record.metrics, **memory})


def kill_self(config: TrialConfig) -> Trial:
    """The process dies as with a segfault or the kernel's OOM killer: nothing is returned."""
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
    raise AssertionError("unreachable")


def hang(config: TrialConfig) -> Trial:
    """Never returns within any reasonable timeout."""
    time.sleep(3600)
    return _ok(config)


def hold_gil(config: TrialConfig) -> Trial:
    """Hangs inside one C call that never releases the GIL (catastrophic regex backtracking), so
    that no other thread of the process runs: the trial's own watchdog cannot end it."""
    import re

    re.match(r"(a+)+$", "a" * 64 + "b")
    return _ok(config)


def raise_error(config: TrialConfig) -> Trial:
    """Breaks the contract (run_trial never raises): the adapter must still make it a row."""
    raise RuntimeError("boom from the fake trial")


def sleep_by_batch(config: TrialConfig) -> Trial:
    """Sleeps batch_size / 10 seconds, so that a sweep is slow enough to be killed midway."""
    t0 = time.time()
    time.sleep(config.batch_size / 10)
    return _ok(config, wall_start_s=t0, wall_end_s=time.time())


def chaos(config: TrialConfig) -> Trial:
    """By config.seed: 0 ok, 1 kills its process, 2 hangs, 3 raises, 4 hangs holding the GIL."""
    return {0: noop, 1: kill_self, 2: hang, 3: raise_error, 4: hold_gil}[config.seed](config)


def capped_memory(config: TrialConfig) -> Trial:
    """A card of 32 GiB shown: a peak (allocated, reserved) of 1 GiB + 0.5 GiB a sequence;
    uncapped it fits while the peak stays under the shown total less the reserved source's
    0.85 GiB, capped (capacity_gb) while it stays under the cap (capacity less a 0.7 GiB
    context), every capped row stating its cap and context whatever its status, as the trial
    does."""
    shown, context = 32.0, 0.7
    peak = 1.0 + 0.5 * config.batch_size
    memory = {"device_total_gib": shown}
    if config.capacity_gb is None:
        fits = peak <= shown - 0.85
    else:
        cap = config.capacity_gb - context
        memory.update(capacity_cap_gib=cap, cuda_context_gib=context)
        fits = peak <= cap
    if not fits:
        return Trial(
            config=config.to_dict(),
            status=OOM,
            metrics=memory,
            env=_env(),
            error="CUDA out of memory (fake)",
            error_type="OutOfMemoryError",
            finished_at=utc_now(),
        )
    return _ok(config, peak_allocated_gib=peak, peak_reserved_gib=peak, **memory)
