"""Runs in each Ray worker process as it starts (``worker_process_setup_hook``).

Importing torch and transformers takes seconds; done here, it happens once per worker process
before the trial's clock starts, instead of inside the trial. Whether that saves wall time
depends on Ray starting workers ahead of need: ``benchmarks/sweep_overhead.py`` measures it.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def preimport() -> None:
    """Import the heavy modules a trial needs; a missing one is not an error here (the trial
    itself reports it as its record's error)."""
    t0 = time.perf_counter()
    for name in ("torch", "transformers"):
        try:
            __import__(name)
        except Exception as exc:  # ImportError, or a broken CUDA install: the trial will say
            log.warning("worker pre-import of %s failed: %s", name, exc)
    log.debug("worker pre-import took %.2f s", time.perf_counter() - t0)
