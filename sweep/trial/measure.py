"""The measured loop: warm-up, one measurement window around the measured steps, the timing
record, the profiled step. Every harness that owns its loop (native, CUDA graph, each rank of an
N-GPU trial) calls ``measure`` with its own ``Stepper``; only Lightning, whose Trainer drives the
loop, shares the window and ``timing`` without this loop.

Warm-up steps run first and are timed apart (``warmup_s``), never averaged in. What a harness does
between the warm-up and the window (a CUDA-graph capture) is ``prepare``, timed by the harness.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sweep.trial.profile import StepProfile, maybe_profile
from sweep.trial.window import MeasurementWindow, WindowResult, synchronize

MAX_STEPS = 100_000  # a bound on min_measure_s loops

Mark = Callable[[], None]


@dataclass
class RawTiming:
    """What a harness measured, before any arithmetic. Times in ms (per step) and s."""

    phase_names: tuple[str, ...]
    rows_ms: list[list[float]]  # per measured step: start, then each phase's end; last: [end]
    warmup_steps: int
    warmup_s: float
    measure_s: float
    losses: list[float] = field(default_factory=list)
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    nvml: dict[str, Any] = field(default_factory=dict)
    graph_captured: bool = False  # the measured steps were CUDA-graph replays
    graph_capture_s: float | None = None
    profile: StepProfile | None = None  # the profiled step after the measured ones


def _rows(flat: list[float], per_step: int) -> list[list[float]]:
    n = (len(flat) - 1) // per_step
    rows = [flat[i * per_step : (i + 1) * per_step] for i in range(n)]
    rows.append([flat[-1]])
    return rows


def _losses(losses: list) -> list[float]:
    if not losses:
        return []
    import torch

    return torch.stack(losses).float().cpu().tolist()


def timing(
    names: tuple[str, ...],
    per_step: int,
    warmup_steps: int,
    warmup_s: float,
    r: WindowResult,
    losses: list,
) -> RawTiming:
    """The RawTiming of a closed window whose steps each put ``per_step`` marks."""
    return RawTiming(
        names,
        _rows(r.marks_ms, per_step),
        warmup_steps,
        warmup_s,
        r.measure_s,
        _losses(losses),
        r.peak_allocated_bytes,
        r.peak_reserved_bytes,
        r.nvml,
    )


def keep_going(steps: int, min_measure_s: float) -> Callable[[int, float], bool]:
    """The loop's rule: at least ``steps`` steps, and on until ``min_measure_s`` have passed
    (at most MAX_STEPS)."""
    return lambda n, elapsed_s: n < steps or (elapsed_s < min_measure_s and n < MAX_STEPS)


@dataclass
class Stepper:
    """How one harness runs a step, for ``measure``.

    step: one step; calls ``mark`` (when given) at its start and after each phase, returns the
      step's detached loss (None in inference mode) without synchronizing.
    names: the phases each step marks, in order.
    warm_up: runs the warm-up steps (default: ``step(None)`` that many times).
    prepare: after the warm-up, before the window (a CUDA-graph capture), timed by its owner.
    before_window: right before the window opens (the ranks of an N-GPU trial meet there).
    go_on: ``go_on(n, elapsed_s)``: one more step? (default: ``keep_going``; the ranks of an
      N-GPU trial agree on it).
    profile: the step the profiler runs once after the measured ones (default: ``step(None)``).
    """

    step: Callable[[Mark | None], Any]
    names: tuple[str, ...]
    warm_up: Callable[[int], None] | None = None
    prepare: Callable[[], None] | None = None
    before_window: Callable[[], None] | None = None
    go_on: Callable[[int, float], bool] | None = None
    profile: Callable[[], Any] | None = None


def measure(w, stepper: Stepper, uuid: str | None) -> RawTiming:
    """Warm up, measure the steps in one window, profile one step: the trial's RawTiming."""
    cfg = w.config
    device_type = w.device.type
    t0 = time.perf_counter()
    if stepper.warm_up is not None:
        stepper.warm_up(cfg.warmup_steps)
    else:
        for _ in range(cfg.warmup_steps):
            stepper.step(None)
    synchronize(device_type)
    warmup_s = time.perf_counter() - t0
    if w.after_warmup is not None:
        w.after_warmup()
    if stepper.prepare is not None:
        stepper.prepare()
    go_on = stepper.go_on or keep_going(cfg.steps, cfg.min_measure_s)
    window = MeasurementWindow(device_type, uuid)
    if stepper.before_window is not None:
        stepper.before_window()
    window.begin()
    losses: list = []
    n = 0
    while go_on(n, window.elapsed_s()):
        loss = stepper.step(window.mark)
        if loss is not None:
            losses.append(loss)
        n += 1
    result = window.end()
    names = stepper.names
    raw = timing(names, len(names) + 1, cfg.warmup_steps, warmup_s, result, losses)
    raw.profile = maybe_profile(w, stepper.profile or (lambda: stepper.step(None)))
    return raw
