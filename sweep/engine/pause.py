"""The driver's clock without the driver's pauses.

A driver stopped by Ctrl-Z (SIGSTOP) or a suspended VM resumes with every running trial looking
its pause older: measured on time.monotonic, a trial that finished in 3 s during a 130 s pause
read as past its timeout and was killed and stored as ``timeout``. Its trials ran on (they are
other processes, often other hosts); only the driver stood still. ``PauseClock`` ticks in a
daemon thread and counts as a pause any gap between two ticks longer than ``gap_s``: a stopped
process runs no thread, so the gap is the pause.
"""

from __future__ import annotations

import threading
import time


class PauseClock:
    """``clock()``: seconds of time.monotonic less the pauses seen so far."""

    def __init__(self, tick_s: float = 0.5, gap_s: float = 5.0, monotonic=time.monotonic) -> None:
        self.tick_s, self.gap_s, self._monotonic = tick_s, gap_s, monotonic
        self.paused_s = 0.0
        self._last = monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """Count the time since the last tick as a pause if it is longer than ``gap_s``."""
        now = self._monotonic()
        if now - self._last > self.gap_s:
            self.paused_s += now - self._last - self.tick_s
        self._last = now

    def __call__(self) -> float:
        self.tick()
        return self._monotonic() - self.paused_s

    def start(self) -> PauseClock:
        def run() -> None:
            while not self._stop.wait(self.tick_s):
                self.tick()

        self._thread = threading.Thread(target=run, name="pause-clock", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
