"""Run each trial in a fresh process forked from a warm fork server.

A trial must start from a clean process: no CUDA context, allocator cache, compiled graphs or
leaked memory from the trial before, and a segfault or a hang must take down only that trial.
Starting a new Python and importing torch and transformers for every trial costs seconds, more
than a trial's measuring (docs/DECISIONS.md, "one fork server per worker", has the figures). So
each Ray worker keeps one ``multiprocessing`` fork server that imports the heavy modules once
(before any CUDA call, so that forking it is safe); every trial is a child forked from it, which
initialises CUDA itself, runs the trial, sends its record back through a pipe and exits. The
server is single-threaded, unlike the Ray worker, so forking it is safe.

The parent enforces the timeout (kill the child: a ``timeout`` row) and turns a child that died
without a record into a ``crashed`` row naming the signal or exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import types
from typing import Any

from sweep.plan.handoff import PINNED_ENV, REQUIRE_GPU_ENV, TRIAL_EXITS_ENV, shortcuts_on
from sweep.results.record import CRASHED, ERROR, TIMEOUT, Trial, failure_row

# Modules the fork server imports once; every trial process starts with them loaded.
PRELOAD = ["sweep.trial.preload"]

_ctx: Any = None


def _context():
    global _ctx
    if _ctx is None:
        _ctx = multiprocessing.get_context("forkserver")
        _ctx.set_forkserver_preload(PRELOAD)
    return _ctx


def preimport() -> None:
    """Ray's ``worker_process_setup_hook`` with ``--preimport``: import, as each worker process
    starts, what its trials need (``ray.tune`` for the trial's actor, and PRELOAD's modules), so
    that the import is not on a trial's clock. A missing module is not an error here: the trial
    itself reports it as its record's error.

    It saves wall time only if Ray starts the worker ahead of need. Measured with Ray 2.60 on 2
    CPU cores it does not for a trial's actor (process start to trial body 1.9 s without the hook,
    4.5 s with it): hence off by default; ``benchmarks/sweep_overhead.py`` measures it."""
    import logging

    log = logging.getLogger(__name__)
    t0 = time.perf_counter()
    for name in ("ray.tune", *PRELOAD):
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or a broken CUDA install: the trial will say
            log.warning("worker pre-import of %s failed: %s", name, exc)
    log.debug("worker pre-import took %.2f s", time.perf_counter() - t0)


def resolve(path: str):
    """Import "package.module:function" (or "package.module.function")."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"trial_fn: cannot import {path!r}: {exc}") from None


def _die_with_worker(lifeline) -> None:
    """End this trial process when the worker that started it dies (Ray kills workers with
    SIGKILL): the worker holds the only writing end of ``lifeline``, so reading it returns only
    at the worker's death. An orphaned trial would otherwise hold the GPU. The fork server is no
    help here: it stays up while any trial it forked is alive."""

    def watch() -> None:
        try:
            lifeline.recv()
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="worker-lifeline", daemon=True).start()


def _child(
    fn_path: str,
    config: dict[str, Any],
    conn,
    lifeline,
    require_gpu: bool,
    flops_per_sequence: int | None = None,
    cores: list[int] | None = None,
) -> None:
    """In the trial process: run the trial function and send back its record as JSON, with the
    wall-clock time the process started (the parent's fork time is measured from it). Then the
    process ends at once (``os._exit``): its record is safe in the parent, and the interpreter's
    teardown (modules, atexit hooks) is time the GPU would sit idle; the kernel frees the GPU
    memory with the process, and the parent waits for that before it returns."""
    started = time.time()
    _die_with_worker(lifeline)
    _set_env(REQUIRE_GPU_ENV, "1" if require_gpu else None)
    _set_env(TRIAL_EXITS_ENV, "1")
    try:
        from sweep.plan.config import TrialConfig

        if cores:
            os.sched_setaffinity(0, cores)  # before torch starts its threads: they inherit it
        _set_env(PINNED_ENV, "1" if cores else None)
        record = call_trial(resolve(fn_path), TrialConfig.from_dict(config), flops_per_sequence)
        if not isinstance(record, Trial):
            raise TypeError(f"trial function returned {type(record).__name__}, not a Trial")
        if cores:
            record = dataclasses.replace(
                record, env={**record.env, "cpu_affinity": _ranges(sorted(os.sched_getaffinity(0)))}
            )
        conn.send(("record", record.to_json(), started))
    except BaseException as exc:  # the trial function should not raise; if it does: a row
        conn.send(("error", type(exc).__name__, traceback.format_exc()))
    finally:
        conn.close()
    if shortcuts_on():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def call_trial(fn, config, flops_per_sequence: int | None = None) -> Trial:
    """``fn(config)``, passing ``flops_per_sequence`` (an earlier trial's FLOP count per sequence
    of this workload's shape) to a trial function that takes it (run_trial does; the engine
    tests' stand-ins need not)."""
    import inspect

    if flops_per_sequence and "flops_per_sequence" in inspect.signature(fn).parameters:
        return fn(config, flops_per_sequence=flops_per_sequence)
    return fn(config)


def _ranges(cores: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the form taskset and /proc print)."""
    out, start = [], None
    for i, c in enumerate(cores):
        if start is None:
            start = c
        if i + 1 == len(cores) or cores[i + 1] != c + 1:
            out.append(f"{start}-{c}" if c != start else f"{c}")
            start = None
    return ",".join(out)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextlib.contextmanager
def _no_main_module():
    """Start a child without re-importing this process's main script in it.

    multiprocessing re-runs the parent's ``__main__`` file in every child it starts that way;
    in a Ray worker that is Ray's worker script (seconds of imports, for nothing). A trial
    needs nothing from ``__main__``, so the child is told there is none.
    """
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_in_child(
    fn_path: str,
    config: dict[str, Any],
    timeout_s: float,
    host_env: dict[str, Any] | None = None,
    require_gpu: bool = False,
    flops_per_sequence: int | None = None,
    cores: list[int] | None = None,
) -> Trial:
    """Run ``fn_path(TrialConfig(**config))`` in a fresh forked process, for at most
    ``timeout_s`` seconds. Always returns a Trial (the child's, or a timeout/crashed/error one).
    ``require_gpu``: Ray gave this trial a GPU; the trial must measure on it (REQUIRE_GPU_ENV).
    ``flops_per_sequence``: an earlier trial's FLOP count for this shape (``call_trial``).
    ``cores``: pin the trial's process to these cores (its record's env gets ``cpu_affinity``).
    The child's record gets the process's own time budget: ``time_fork_s`` (start to the child
    running), ``time_exit_s`` (record received to the process gone) and ``time_process_s``."""
    ctx = _context()
    warm()  # the fork server's imports are not the trial's time: start it before the clock
    recv, send = ctx.Pipe(duplex=False)
    lifeline_r, lifeline_w = ctx.Pipe(duplex=False)  # this process keeps the writing end
    proc = ctx.Process(
        target=_child,
        args=(fn_path, config, send, lifeline_r, require_gpu, flops_per_sequence, cores),
        name="sweep-trial",
    )
    t0 = time.monotonic()
    wall0 = time.time()
    with _no_main_module():
        proc.start()
    send.close()  # the child holds the only writing end: EOF once it exits
    lifeline_r.close()
    message = None
    try:
        if recv.poll(timeout_s):
            try:
                message = recv.recv()
            except EOFError:  # died before sending anything
                message = None
    finally:
        recv.close()
    received = time.monotonic()
    try:
        trial = _outcome(proc, message, config, timeout_s, t0, host_env)
    finally:
        lifeline_w.close()
    if message is not None and message[0] == "record" and trial.status != TIMEOUT:
        gone = time.monotonic()
        budget = {
            "time_fork_s": max(0.0, message[2] - wall0),
            "time_exit_s": gone - received,
            "time_process_s": gone - t0,
        }
        trial = dataclasses.replace(trial, metrics={**trial.metrics, **budget})
    return trial


def _outcome(proc, message, config, timeout_s, t0, host_env) -> Trial:
    if message is None and proc.is_alive() and time.monotonic() - t0 >= timeout_s:
        proc.kill()
        proc.join(10)
        return _failure(
            config,
            TIMEOUT,
            f"trial ran past its timeout of {timeout_s:g} s (its process was killed)",
            "Timeout",
            host_env,
        )
    proc.join(30)
    if proc.is_alive():  # sent its record but hangs on exit (a stuck thread): end it
        proc.kill()
        proc.join(10)
    if message is None:
        code = proc.exitcode
        how = _signal_name(code) if code is not None and code < 0 else f"exit code {code}"
        return _failure(
            config,
            CRASHED,
            f"the trial's process died ({how}) without a record",
            "ProcessDied",
            host_env,
        )
    if message[0] == "record":
        return Trial.from_json(message[1])
    _, name, text = message
    return _failure(config, ERROR, text, name, host_env)


def _failure(
    config: dict[str, Any], status: str, text: str, kind: str, host_env: dict[str, Any] | None
) -> Trial:
    return failure_row(config, status, text, kind, env=host_env or {})


_warm = False


def warm() -> None:
    """Start the fork server (its imports take seconds) and wait until it serves; once."""
    global _warm
    if _warm:
        return
    proc = _context().Process(target=os.getpid, name="sweep-warm-up")
    with _no_main_module():
        proc.start()
    proc.join()
    _warm = True
