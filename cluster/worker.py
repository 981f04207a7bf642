"""Runs in each Ray worker process as it starts (``worker_process_setup_hook``).

Importing torch and transformers takes seconds; done here, it happens before the trial's own
clock starts. It saves wall time only if Ray starts the worker ahead of need. Measured with Ray
2.60 on 2 CPU cores: it does not for a trial's actor (the process starts when the trial is
placed, ~0.3 s after Tune gets the configuration, and the hook then runs on the critical path:
process start to trial body 1.9 s without the hook, 4.5 s with it). Hence off by default
(``--preimport`` turns it on); ``benchmarks/sweep_overhead.py`` measures it on any machine.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def preimport() -> None:
    """Import the heavy modules a trial needs; a missing one is not an error here (the trial
    itself reports it as its record's error)."""
    t0 = time.perf_counter()
    # ray.tune: every trial actor class needs it before the trial starts
    for name in ("torch", "transformers", "ray.tune", "sweep.trial.run"):
        try:
            __import__(name)
        except Exception as exc:  # ImportError, or a broken CUDA install: the trial will say
            log.warning("worker pre-import of %s failed: %s", name, exc)
    log.debug("worker pre-import took %.2f s", time.perf_counter() - t0)
