"""An N-GPU trial (``gpus_per_trial`` > 1): the trial process forks N ranks and reports for them.

The trial's process stays a supervisor: it never touches CUDA, so forking it is safe (it is
itself a fresh fork of the warm fork server, torch and transformers already imported: a rank
starts in milliseconds, not the seconds a spawned interpreter takes). Each rank runs
``sweep.trial.ddp_rank.rank_trial`` and sends its result through a pipe, then waits until the
supervisor has every result, so that no rank leaves a collective another rank still reads.

Every outcome is a row: a rank's exception becomes its status (``oom``, ``unsupported``,
``error``...; where several ranks fail, the most specific status wins over the "peer closed the
connection" errors of the others); a rank that dies without a result is ``crashed`` (not final:
a resume runs it again); ranks past ``timeout_s`` are ``timeout``. In each case every rank is
killed before the row returns. A rank also dies with the supervisor (PR_SET_PDEATHSIG), so the
engine's own timeout, which kills the trial process, ends the ranks too.

Step times: rank 0's. DDP's gradient all-reduce in every backward ties each rank's step to the
slowest one, and a barrier opens the measurement window on all ranks together; the slowest
rank's median is recorded beside it (``step_time_ms_p50_max_rank``, ``rank_step_skew_pct``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from sweep.plan.config import TrialConfig
from sweep.plan.handoff import PINNED_ENV
from sweep.results.record import (
    CRASHED,
    ERROR,
    NO_GPU_TYPE,
    NONFINITE,
    OK,
    OOM,
    TIMEOUT,
    UNSUPPORTED,
    Trial,
    utc_now,
)
from sweep.trial import metrics as M
from sweep.trial.outcome import classify, trial_record

# Once a rank has failed, how long the others have to report their own failure (the rank that
# ran out of memory reports it; the others then see their peer gone).
GRACE_S = 1.0
# Which failure names the trial when several ranks fail: the cause before its echoes.
_PRIORITY = (OOM, UNSUPPORTED, NO_GPU_TYPE, NONFINITE, ERROR)

RankFn = Callable[[int, int, TrialConfig, str], dict[str, Any]]


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this rank when the process that forked it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the supervisor's own kill is what remains
        pass


def rank_cores(cores: list[int], rank: int, world: int) -> list[int]:
    """A rank's slice of its trial's cores (pin_cpus): the r-th of ``world`` equal slices; all of
    them where there are fewer cores than ranks."""
    per = len(cores) // world
    return cores[rank * per : (rank + 1) * per] if per else cores


def _rank_entry(fn: RankFn, rank: int, world: int, config: TrialConfig, store: str, conn, parent):
    _die_with_parent()
    if os.getppid() != parent:  # the supervisor died before the line above
        os._exit(1)
    for name, value in (("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", world)):
        os.environ[name] = str(value)
    if os.environ.get(PINNED_ENV) == "1":  # the trial's share of the cores, split by rank
        os.sched_setaffinity(0, rank_cores(sorted(os.sched_getaffinity(0)), rank, world))
    try:
        conn.send(("ok", fn(rank, world, config, store)))
    except BaseException as exc:
        status = classify(exc)
        if status == ERROR:  # the traceback goes to the worker's log, as a 1-GPU trial's does
            logging.getLogger(__name__).exception("rank %d of %d failed: %s", rank, world, config)
        conn.send(("fail", status, f"{exc}"[:4000], type(exc).__name__))
    try:
        conn.recv()  # the supervisor has every result (or is about to kill this rank)
    except (EOFError, OSError):
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _start(fn: RankFn, world: int, config: TrialConfig, store: str):
    ctx = multiprocessing.get_context("fork")
    procs, conns = [], []
    for rank in range(world):
        here, there = ctx.Pipe(duplex=True)
        p = ctx.Process(
            target=_rank_entry,
            args=(fn, rank, world, config, store, there, os.getpid()),
            name=f"sweep-rank-{rank}",
        )
        with warnings_off():
            p.start()
        there.close()
        procs.append(p)
        conns.append(here)
    return procs, conns


@contextlib.contextmanager
def warnings_off():
    """Python warns on fork() in a process with threads (the trial process's lifeline thread);
    the rank runs only its own code, on the thread that forked."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def collect(procs, conns, timeout_s: float | None) -> tuple[dict, list, list, bool]:
    """Wait for every rank's message. Returns (results by rank, failures as (rank, status,
    error, error_type), ranks that died without a message, whether the deadline passed)."""
    results: dict[int, dict] = {}
    failures: list[tuple[int, str, str, str]] = []
    died: list[int] = []
    open_conns = {c: r for r, c in enumerate(conns)}
    sentinels = {p.sentinel: r for r, p in enumerate(procs)}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    grace_end = None
    while open_conns or sentinels:
        now = time.monotonic()
        ends = [t for t in (deadline, grace_end) if t is not None]
        wait_s = max(0.0, min(ends) - now) if ends else None
        ready = wait([*open_conns, *sentinels], timeout=wait_s)
        for obj in sorted(ready, key=lambda o: o in sentinels):  # messages before deaths
            if obj in open_conns:
                rank = open_conns.pop(obj)
                try:
                    msg = obj.recv()
                except (EOFError, OSError):
                    # its sentinel says it died; or said so already, while this end of its pipe
                    # still looked open (a dying process closes the two one after the other)
                    if rank not in sentinels.values() and rank not in died:
                        died.append(rank)
                    continue
                if msg[0] == "ok":
                    results[rank] = msg[1]
                else:
                    failures.append((rank, *msg[1:]))
            elif obj in sentinels:
                rank = sentinels.pop(obj)
                heard = rank in results or any(f[0] == rank for f in failures)
                if not heard and not _pending_message(conns[rank], open_conns):
                    died.append(rank)
                    open_conns = {c: r for c, r in open_conns.items() if r != rank}
        if len(results) == len(procs):
            break
        if (failures or died) and grace_end is None:
            grace_end = time.monotonic() + GRACE_S
        now = time.monotonic()
        if grace_end is not None and now >= grace_end:
            break
        if deadline is not None and now >= deadline:
            return results, failures, died, True
        # a rank that reported waits for the supervisor: only its sentinel is left to watch
        sentinels = {s: r for s, r in sentinels.items() if r not in results}
    return results, failures, died, False


def _pending_message(conn, open_conns) -> bool:
    return conn in open_conns and conn.poll(0)


def _end(procs, conns, graceful: bool) -> None:
    """Let every rank exit (``graceful``: all reported) or kill them all (a failure: the others
    are stuck in a collective); wait for all (a GPU's memory is free only once its process is
    gone)."""
    if graceful:
        for c in conns:
            with contextlib.suppress(OSError, ValueError):
                c.send("done")
        deadline = time.monotonic() + 5.0
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(10)
    for c in conns:
        c.close()


def outcome(
    world: int, results: dict, failures: list, died: list, timed_out: bool, timeout_s
) -> tuple[str, str | None, str | None]:
    """(status, error, error_type) of the trial from what the ranks said. A specific failure
    (out of memory, unsupported...) names the trial; then a rank that died (the others' errors
    are then its echoes: a peer that closed its connection); then any other error."""
    failures = sorted(failures, key=lambda f: (_PRIORITY.index(f[1]), f[0]))
    ranks = ", ".join(str(f[0]) for f in failures)
    if failures and (failures[0][1] != ERROR or not died):
        rank, status, error, error_type = failures[0]
        others = f" (ranks that failed: {ranks})" if len(failures) > 1 else ""
        return status, f"rank {rank}: {error}{others}", error_type
    if died:
        echo = f"; rank(s) {ranks} then failed: {failures[0][2][:300]}" if failures else ""
        text = f"rank(s) {', '.join(map(str, died))} of {world} died without a result{echo}"
        return CRASHED, text, "RankDied"
    if timed_out:
        silent = [r for r in range(world) if r not in results]
        return (
            TIMEOUT,
            (
                f"rank(s) {', '.join(map(str, silent))} of {world} still running after "
                f"{timeout_s:g} s (every rank was killed)"
            ),
            "Timeout",
        )
    if not all(r["finite"] for r in results.values()):
        return NONFINITE, "a measured step's loss was NaN or infinite on some rank", None
    return OK, None, None


def combine(world: int, results: dict[int, dict]) -> dict[str, Any]:
    """The trial's metrics from its ranks' (pure): rank 0's step and phase times, throughput
    for the whole job and per GPU, the slowest rank's median and the spread of medians, the
    largest peak memory of any rank (each GPU must hold it)."""
    out = dict(results[0]["metrics"])
    out.update(M.scale_throughput(out, world))
    out["world_size"] = world
    p50s = [r["metrics"]["step_time_ms_p50"] for r in results.values()]
    out["step_time_ms_p50_max_rank"] = max(p50s)
    out["rank_step_skew_pct"] = (max(p50s) - min(p50s)) / min(p50s) * 100.0
    for name in ("peak_allocated_gib", "peak_reserved_gib"):
        values = [r["metrics"].get(name) for r in results.values()]
        if all(v is not None for v in values):
            out[name] = max(values)
    return out


def run_ddp_trial(
    config: TrialConfig,
    *,
    sweep: str | None = None,
    gpu_type: str | None = None,
    repeat: int = 0,
    timeout_s: float | None = None,
    rank_fn: RankFn | None = None,
    flops_per_sequence: int | None = None,
) -> Trial:
    """Measure ``config`` across ``config.gpus_per_trial`` ranks. Always returns a record.
    ``timeout_s``: kill the ranks past it (None: the engine's timeout bounds the trial);
    ``rank_fn``: what a rank runs (tests put a failing rank in); ``flops_per_sequence``: an
    earlier trial's count for this shape, passed to rank 0 (sweep/trial/run.py)."""
    if rank_fn is None:
        import functools

        from sweep.trial.ddp_rank import rank_trial

        rank_fn = functools.partial(rank_trial, flops_per_sequence=flops_per_sequence)
    started = utc_now()
    t0 = time.perf_counter()
    world = config.gpus_per_trial
    tmp = tempfile.mkdtemp(prefix="tsweep-ddp-")
    procs, conns = _start(rank_fn, world, config, os.path.join(tmp, "rendezvous"))
    results: dict = {}
    try:
        results, failures, died, timed_out = collect(procs, conns, timeout_s)
    finally:
        _end(procs, conns, graceful=len(results) == world)
        shutil.rmtree(tmp, ignore_errors=True)
    status, error, error_type = outcome(world, results, failures, died, timed_out, timeout_s)
    env = results.get(0, {}).get("env") or _host_env()
    metrics = combine(world, results) if status in (OK, NONFINITE) else {}
    metrics["trial_s"] = time.perf_counter() - t0
    return trial_record(
        config, status, metrics, env, error, error_type, started, sweep, gpu_type, repeat
    )


def _host_env() -> dict[str, Any]:
    import socket

    return {"hostname": socket.gethostname()}
