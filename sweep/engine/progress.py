"""The progress line: finished trials by status and an ETA, one compact line to stderr."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

from sweep.results.record import (
    CRASHED,
    ERROR,
    NO_GPU_TYPE,
    NONFINITE,
    OK,
    OOM,
    SKIPPED_OOM,
    TIMEOUT,
    UNSUPPORTED,
)

# an unsupported configuration (cuda_graph on the CPU, reduce-overhead inside a captured step) is
# an answer stored with its reason, not a failure: counted apart
FAILED = (ERROR, CRASHED, TIMEOUT, NONFINITE)


class Progress:
    """Counts finished trials and prints one compact line to stderr per change."""

    def __init__(self, total: int, label: str, enabled: bool = True, unit: str = "trials"):
        self.total = total
        self.label = label
        self.enabled = enabled
        self.unit = unit
        self.counts: Counter[str] = Counter()
        self.already = 0
        self.t0 = time.monotonic()
        self.ran = 0  # trials that ran in this session (for the ETA)
        self.extra: Callable[[], str] | None = None  # e.g. "groups 2/6" in max-batch mode
        self._tty = sys.stderr.isatty()
        self._lock = threading.Lock()

    def add(self, status: str, ran: bool) -> None:
        with self._lock:
            self.counts[status] += 1
            self.ran += ran
            self._print()

    @property
    def done(self) -> int:
        return sum(self.counts.values()) + self.already

    def line(self) -> str:
        c = self.counts
        failed = sum(c[s] for s in FAILED)
        elapsed = time.monotonic() - self.t0
        left = max(self.total - self.done, 0)
        eta = "?"
        if self.ran and left:
            eta = _duration(elapsed / self.ran * left)
        elif not left:
            eta = "0s"
        total = self.total if self.total else "?"
        text = (
            f"[{self.label}] {self.done}/{total} {self.unit} | ok {c[OK]} oom {c[OOM]} "
            f"skipped {c[SKIPPED_OOM]} unsupported {c[UNSUPPORTED]} failed {failed} "
            f"no-gpu-type {c[NO_GPU_TYPE]} | "
            f"{_duration(elapsed)} elapsed, ETA {eta}"
        )
        if self.already:
            text += f" | {self.already} already stored"
        if self.extra is not None:
            text += f" | {self.extra()}"
        return text

    def _print(self) -> None:
        if not self.enabled:
            return
        end = "" if self._tty else "\n"
        prefix = "\r\x1b[2K" if self._tty else ""
        print(prefix + self.line(), end=end, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self._tty:
            print(file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
