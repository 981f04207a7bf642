"""The measurement window: what opens and closes around a harness's measured steps.

One ``MeasurementWindow`` for every harness (the loop of sweep/trial/measure.py, which the native
step, the CUDA-graph step and each DDP rank go through, and the Lightning harness), so that their
windows cannot drift apart: ``begin`` synchronizes, resets the memory peaks, starts the NVML
sampler and the step marks; ``end`` puts the last mark, synchronizes, stops the sampler with the
measured steps and reads the peaks.

On a GPU, phase boundaries are CUDA events on the current stream: they time the GPU's own
timeline with no synchronization inside the loop (a sync per step would stall the pipeline and
flatter nothing). On the CPU, ``time.perf_counter``. Either way the caller marks boundaries and
reads them all once, after one synchronize at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sweep.trial.telemetry import NvmlSampler


class Marks:
    """Timestamps for step boundaries. ``mark()`` is cheap; ``read_ms()`` syncs once."""

    def __init__(self, device_type: str):
        self.cuda = device_type == "cuda"
        self._marks: list[Any] = []
        if self.cuda:
            import torch

            self._torch = torch

    def mark(self) -> int:
        if self.cuda:
            ev = self._torch.cuda.Event(enable_timing=True)
            ev.record()
            self._marks.append(ev)
        else:
            self._marks.append(time.perf_counter())
        return len(self._marks) - 1

    def read_ms(self) -> list[float]:
        """Every mark in ms from the first one."""
        if not self._marks:
            return []
        if self.cuda:
            self._torch.cuda.synchronize()
            first = self._marks[0]
            return [first.elapsed_time(ev) for ev in self._marks]
        first = self._marks[0]
        return [(t - first) * 1000.0 for t in self._marks]


def synchronize(device_type: str) -> None:
    if device_type == "cuda":
        import torch

        torch.cuda.synchronize()


@dataclass
class WindowResult:
    """What a closed window measured. Times in ms (marks, from the first) and s."""

    marks_ms: list[float]
    measure_s: float
    nvml: dict[str, Any] = field(default_factory=dict)
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None


class MeasurementWindow:
    """Opened once, after the warm-up; closed once, right after the last measured step."""

    def __init__(self, device_type: str, uuid: str | None) -> None:
        self.device_type = device_type
        self.uuid = uuid
        self.marks: Marks | None = None
        self._sampler: NvmlSampler | None = None
        self._t0: float | None = None

    @property
    def open(self) -> bool:
        return self.marks is not None and self._t0 is not None

    def begin(self) -> None:
        synchronize(self.device_type)
        if self.device_type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._sampler = NvmlSampler(self.uuid)
        self._sampler.start()
        self.marks = Marks(self.device_type)
        self._t0 = time.perf_counter()

    def mark(self) -> None:
        """A step or phase boundary (nothing before ``begin``: warm-up steps are not marked)."""
        if self.marks is not None:
            self.marks.mark()

    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0 if self._t0 is not None else 0.0

    def end(self) -> WindowResult:
        if not self.open:
            raise RuntimeError("the measurement window was never opened")
        self.marks.mark()
        synchronize(self.device_type)
        measure_s = time.perf_counter() - self._t0
        nvml = self._sampler.stop()
        alloc = reserved = None
        if self.device_type == "cuda":
            import torch

            alloc, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
        return WindowResult(self.marks.read_ms(), measure_s, nvml, alloc, reserved)
