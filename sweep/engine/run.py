"""The Ray Tune layer: a planned grid in, one stored row per trial out.

Ray Tune executes the list it is given; everything it decides is in two extension points:
- ``SweepSearcher`` (a Tune ``Searcher``) hands out the planned configurations, in ascending batch
  size within each group (same model, sequence length, precision, options and GPU type), one group
  member at a time. Once a group runs out of memory, its larger batches are stored as
  ``skipped_oom`` instead of being handed out. In max-batch mode it searches each group's largest
  batch that fits (doubling, then bisection) and hands out the probes.
- ``StoreCallback`` (a Tune ``Callback`` in the driver) writes each trial to the store the moment
  it ends, ok or not, so that nothing measured depends on the sweep finishing.

The trainable is a thin adapter that runs in the Ray worker process: config dict in, the trial
function (``sweep.trial.run:run_trial`` by default, injectable for tests), one record dict out. It
never raises: an exception, a hang past the timeout, each becomes a record. A process that dies
cannot report: the driver callback writes its ``crashed`` row from what Ray says.

This module imports ray but neither torch (the trial function does, in the worker) nor gradio.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray import tune
from ray.tune.search import Searcher

from sweep.engine.forkserver import resolve
from sweep.plan.config import TrialConfig, field_names
from sweep.plan.grid import MAX_BATCH, PlannedTrial, SweepSpec, expand, groups
from sweep.results.frame import trials_frame
from sweep.results.record import (
    CRASHED,
    ERROR,
    FINAL_STATUSES,
    NO_GPU_TYPE,
    NONFINITE,
    OK,
    OOM,
    SKIPPED_OOM,
    TIMEOUT,
    Trial,
    utc_now,
)
from sweep.results.store import Store
from sweep.results.trust import GPU_BUSY_MIN_PCT, host_bound

log = logging.getLogger(__name__)

TRIAL_FN = "sweep.trial.run:run_trial"
# After a trial thread hung past its timeout, the worker process exits this many seconds after
# returning its timeout record: long enough for the record to reach the driver, and the hung
# thread (which Python cannot stop) stops holding the GPU.
EXIT_AFTER_TIMEOUT_S = 10.0
FAILED = (ERROR, CRASHED, TIMEOUT, NONFINITE, "unsupported")


@dataclass
class EngineOptions:
    """How to run a sweep (what to run is the SweepSpec).

    trial_fn: "module:function" taking a TrialConfig and returning a Trial, imported in the worker.
    retries: how many times Tune restarts a trial whose process died (a lost node); a trial that
      dies every time ends as one ``crashed`` row after 1 + retries attempts.
    kill_grace_s: a trial still running this long past its timeout (its own watchdog could not
      end it, e.g. a hang holding the GIL) is killed from the driver and stored as ``timeout``.
    preimport: import torch and transformers as each worker process starts (Ray's
      worker_process_setup_hook). Off by default: with a fresh process per trial the import is on
      the trial's critical path either way, and benchmarks/sweep_overhead.py measured the sweep
      slower with it (0.77x on 2 CPU cores).
    """

    db: str = "results.db"
    rerun: bool = False
    address: str | None = None
    trial_fn: str = TRIAL_FN
    retries: int = 1
    kill_grace_s: float = 60.0
    preimport: bool = False
    # Each trial runs in a fresh process forked from a warm fork server in the worker
    # (sweep/engine/forkserver.py): clean CUDA state per trial without paying interpreter start and
    # imports per trial. The Ray worker itself is then reused (it only launches trials).
    isolate: bool = True
    # Without isolation: run the next trial in the same worker process (Tune's reuse_actors).
    # Off by default: the next trial would see the previous one's memory, caches and CUDA state.
    reuse_workers: bool = False
    progress: bool = True
    verbose: bool = False
    num_cpus: int | None = None  # a local instance only
    storage_path: str | None = None  # Tune's scratch directory; a temporary one by default


# ------------------------------------------------------------------------------------------------
# Worker side: the trainable.


def _error_record(config: dict[str, Any], status: str, exc_text: str, exc_type: str) -> Trial:
    return Trial(config=config, status=status, error=exc_text, error_type=exc_type, env=_host_env())


def _host_env() -> dict[str, Any]:
    import platform
    import socket

    return {"hostname": socket.gethostname(), "python_version": platform.python_version()}


def run_bounded(
    fn: Callable[[TrialConfig], Trial],
    config: TrialConfig,
    timeout_s: float,
    exit_now: bool = False,
) -> Trial:
    """Run ``fn(config)`` in a thread for at most ``timeout_s`` seconds; always returns a Trial.

    A thread, not a subprocess: the trial must run in this (Ray worker) process, where torch and
    transformers were imported at start-up. A hung thread cannot be stopped, so on timeout the
    process is made to exit shortly after the record is returned.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["record"] = fn(config)
        except BaseException as exc:  # the trial function should not raise; if it does, a row
            box["error"] = (type(exc).__name__, traceback.format_exc())

    thread = threading.Thread(target=target, name="sweep-trial", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        if exit_now:
            # A reused worker would run the next trial beside the hung one: end the process now;
            # the driver sees it die past the timeout and stores a timeout row.
            os._exit(3)
        exiter = threading.Timer(EXIT_AFTER_TIMEOUT_S, os._exit, args=(3,))
        exiter.daemon = True
        exiter.start()
        return _error_record(
            config.to_dict(), TIMEOUT, f"trial ran past its timeout of {timeout_s:g} s", "Timeout"
        )
    if "error" in box:
        name, text = box["error"]
        return _error_record(config.to_dict(), ERROR, text, name)
    record = box.get("record")
    if not isinstance(record, Trial):
        return _error_record(
            config.to_dict(),
            ERROR,
            f"trial function returned {type(record).__name__}, not a Trial",
            "TypeError",
        )
    return record


def trainable(payload: dict[str, Any]) -> dict[str, Any]:
    """The Ray Tune function trainable: payload from SweepSearcher.suggest in, record out."""
    import ray

    started = utc_now()
    try:
        fn = resolve(payload["trial_fn"])
        config = TrialConfig.from_dict(payload["config"])
        if payload.get("isolate"):
            from sweep.engine.forkserver import run_in_child

            record = run_in_child(
                payload["trial_fn"], config.to_dict(), float(payload["timeout_s"]), _host_env()
            )
        else:
            record = run_bounded(
                fn, config, float(payload["timeout_s"]), exit_now=payload.get("reuse", False)
            )
    except Exception as exc:
        record = _error_record(payload["config"], ERROR, traceback.format_exc(), type(exc).__name__)
    record = record.replace(
        key=payload["key"],
        gpu_type=payload["gpu_type"],
        repeat=payload["repeat"],
        sweep=payload["sweep"],
        node=ray.get_runtime_context().get_node_id(),
        ray_trial_id=tune.get_context().get_trial_id(),
        started_at=record.started_at or started,
        finished_at=record.finished_at or utc_now(),
    )
    try:
        text = record.to_json()
    except (TypeError, ValueError) as exc:  # a metric JSON cannot hold: still a row, not a crash
        text = record.replace(
            status=ERROR,
            metrics={},
            env=_host_env(),
            error=f"the trial's record is not valid JSON: {exc}",
            error_type=type(exc).__name__,
        ).to_json()
    return {"record": text, "status": Trial.from_json(text).status}


def _resources(payload: dict[str, Any]):
    from cluster.ray_cluster import resource_request

    return resource_request(payload["gpu"], payload["gpu_type"], payload["cpus"])


# ------------------------------------------------------------------------------------------------
# Driver side: progress, the searcher, the store callback.


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
            f"skipped {c[SKIPPED_OOM]} failed {failed} no-gpu-type {c[NO_GPU_TYPE]} | "
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


@dataclass
class _Group:
    """One group's queue (grid mode) or search state (max-batch mode)."""

    members: list[PlannedTrial]
    oom_batch: int | None = None  # the smallest batch that ran out of memory
    in_flight: int = 0
    # max-batch search: lo fits (0: none known), hi does not (None: none known)
    lo: int = 0
    hi: int | None = None
    lo_key: str | None = None
    hi_key: str | None = None
    next_batch: int | None = None
    done: bool = False
    probes: list[str] = field(default_factory=list)


class SweepSearcher(Searcher):
    """Tune Searcher: hands out the planned trials with OOM pruning, or runs max-batch searches.

    stored: key -> status already in the store (those final are not run again unless rerun).
    write: stores a record decided without running (skipped_oom).
    finalize: (key, max_batch_size) pairs, for the callback to mark once a search ends.
    """

    def __init__(
        self,
        spec: SweepSpec,
        runnable: list[PlannedTrial],
        payload_extra: dict[str, Any],
        stored: dict[str, str],
        rerun: bool,
        write: Callable[[Trial], None],
        progress: Progress,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.payload_extra = payload_extra
        self.stored = stored
        self.rerun = rerun
        self.write = write
        self.progress = progress
        self.groups = [_Group(members) for members in groups(runnable).values()]
        self.live: dict[str, tuple[_Group, PlannedTrial]] = {}
        self.handed: list[PlannedTrial] = []  # every trial given to Tune, for the safety net
        self.finalize: list[tuple[str, int]] = []
        self.max_batch = spec.mode == MAX_BATCH
        self._cursor = 0
        for g in self.groups:
            if self.max_batch:
                g.next_batch = min(g.members[0].config.batch_size, spec.batch_limit)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its configuration (for Tuner.restore, which we do not use: the store is
        # the sweep's state). The store writer and the progress line cannot be pickled.
        return {k: v for k, v in self.__dict__.items() if k not in ("write", "progress")}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: resuming reads the store, not Tune's experiment state."""

    def restore(self, checkpoint_path: str) -> None:
        """See save."""

    def _stored_status(self, key: str) -> str | None:
        status = self.stored.get(key)
        return status if status in FINAL_STATUSES and not self.rerun else None

    def _payload(self, t: PlannedTrial) -> dict[str, Any]:
        return dict(
            self.payload_extra,
            gpu=needs_gpu(t, self.payload_extra.get("has_gpu", False)),
            key=t.key,
            config=t.config.to_dict(),
            gpu_type=t.gpu_type,
            repeat=t.repeat,
        )

    # -- grid mode ------------------------------------------------------------------------------
    def _next_grid(self, g: _Group) -> PlannedTrial | None:
        while g.members:
            t = g.members[0]
            if g.oom_batch is not None and t.config.batch_size >= g.oom_batch:
                g.members.pop(0)
                if self._stored_status(t.key):
                    self.progress.already += 1
                    continue
                self.write(
                    t.unrun(
                        self.spec.name,
                        SKIPPED_OOM,
                        f"batch {g.oom_batch} of this group ran out of memory",
                        "SkippedOOM",
                    )
                )
                self.progress.add(SKIPPED_OOM, ran=False)
                continue
            status = self._stored_status(t.key)
            if status is not None:  # resume: stored results count, stored OOMs still prune
                g.members.pop(0)
                self.progress.already += 1
                if status == OOM:
                    g.oom_batch = min(g.oom_batch or t.config.batch_size, t.config.batch_size)
                continue
            if g.in_flight:
                return None  # one at a time per group, so that an OOM can prune the rest
            return g.members.pop(0)
        return None

    # -- max-batch mode -------------------------------------------------------------------------
    def _advance(self, g: _Group, batch: int, key: str, status: str) -> None:
        """Fold one probe's outcome into the search and choose the next batch."""
        if status not in (OK, NONFINITE, OOM, CRASHED, TIMEOUT):
            g.done, g.next_batch = True, None  # the configuration itself fails: no search
            return
        # nonfinite: it ran, so memory-wise it fits; a crash or a hang at a batch is taken as
        # "does not fit" (a dead process at a large batch is most often memory)
        if status in (OK, NONFINITE):
            if batch > g.lo:
                g.lo, g.lo_key = batch, key
        elif g.hi is None or batch < g.hi:
            g.hi, g.hi_key = batch, key
        if g.hi is None:
            nxt: int | None = min(g.lo * 2, self.spec.batch_limit)
            if nxt <= g.lo:  # the limit itself fits
                nxt = None
        else:
            nxt = (g.lo + g.hi) // 2
            close_enough = g.lo and g.hi - g.lo <= g.lo * self.spec.batch_tolerance
            if nxt <= g.lo or nxt >= g.hi or close_enough:
                nxt = None
        g.next_batch = nxt
        if nxt is None:
            g.done = True
            # the row of the largest batch that fits carries the answer; if none fits, the
            # smallest batch that failed carries 0
            target = g.lo_key if g.lo else g.hi_key
            if target:
                self.finalize.append((target, g.lo))

    def _next_max_batch(self, g: _Group) -> PlannedTrial | None:
        while not g.done and not g.in_flight and g.next_batch is not None:
            t = g.members[0].with_batch(g.next_batch)
            g.probes.append(t.key)
            status = self._stored_status(t.key)
            if status is None:
                return t
            self.progress.already += 1  # resume: a stored probe steers the search, unrun
            self._advance(g, t.config.batch_size, t.key, status)
        return None

    def groups_done(self) -> int:
        return sum(g.done for g in self.groups)

    # -- Searcher API ---------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        n = len(self.groups)
        for i in range(n):  # round-robin, so that groups run side by side on a cluster
            g = self.groups[(self._cursor + i) % n]
            t = self._next_max_batch(g) if self.max_batch else self._next_grid(g)
            if t is not None:
                self._cursor = (self._cursor + i + 1) % n
                g.in_flight += 1
                self.live[trial_id] = (g, t)
                self.handed.append(t)
                return self._payload(t)
        if self.live:
            return None  # waiting for a result that may prune or steer the rest
        return Searcher.FINISHED

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        entry = self.live.pop(trial_id, None)
        if entry is None:
            return
        g, t = entry
        g.in_flight -= 1
        status = CRASHED if error or not result else result.get("status", CRASHED)
        if self.max_batch:
            self._advance(g, t.config.batch_size, t.key, status)
        elif status == OOM:
            g.oom_batch = min(g.oom_batch or t.config.batch_size, t.config.batch_size)


def _ray_error_text(trial: Any) -> str:
    """What Ray said about a failed trial. Tune writes it to the trial's error file in the
    driver's staging directory before calling on_trial_error (Trial.handle_error), and syncs it
    to storage only later, so the local file is read first."""
    path = getattr(trial, "error_file", None)
    try:
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip()
            if text:
                return text
        text = trial.get_error()
        if text:
            return str(text)
    except Exception as exc:  # storage errors must not lose the row
        log.debug("cannot read the error of trial %s: %s", trial.trial_id, exc)
    return "the trial's process died (Ray gave no error text)"


def _error_type(trial: Any, text: str) -> str:
    """The exception class Ray reported (e.g. ActorDiedError): from the pickled exception Tune
    keeps next to the error text, else the first class name in the text."""
    path = getattr(trial, "pickled_error_file", None)
    try:
        if path and os.path.isfile(path):
            from ray import cloudpickle

            with open(path, "rb") as fh:
                return type(cloudpickle.load(fh)).__name__
    except Exception as exc:
        log.debug("cannot read the pickled error of trial %s: %s", trial.trial_id, exc)
    found = re.findall(r"\b(?:ray\.exceptions\.)?([A-Z]\w*(?:Error|Exception))\b", text or "")
    return found[0] if found else "RayError"


class StoreCallback(tune.Callback):
    """Writes each finished trial to the store the moment Tune sees it end (driver side)."""

    def __init__(
        self,
        store: Store,
        spec: SweepSpec,
        progress: Progress,
        kill_grace_s: float,
        searcher: SweepSearcher | None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.progress = progress
        self.kill_grace_s = kill_grace_s
        self.searcher = searcher
        self.started: dict[str, float] = {}
        self.killed: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {}  # see SweepSearcher.__getstate__: never restored

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.monotonic()

    def on_step_begin(self, iteration, trials, **info):
        # A trial's own watchdog ends it at its timeout; this catches the hangs it cannot end
        # (one that holds the GIL) by killing the actor from the driver.
        now = time.monotonic()
        limit = self.spec.timeout_s + self.kill_grace_s
        for trial in trials:
            t0 = self.started.get(trial.trial_id)
            if t0 is None or trial.trial_id in self.killed or trial.status != "RUNNING":
                continue
            actor = getattr(trial.temporary_state, "ray_actor", None)
            if now - t0 > limit and actor is not None:
                import ray

                log.warning(
                    "killing trial %s: %.0f s past its timeout",
                    trial.trial_id,
                    now - t0 - self.spec.timeout_s,
                )
                self.killed.add(trial.trial_id)
                ray.kill(actor, no_restart=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        text = (trial.last_result or {}).get("record")
        if text:
            record = Trial.from_json(text)
        else:  # finished without a record: the adapter did not run to its end
            record = self._failure(
                trial, CRASHED, "trial finished without a record", "MissingResult"
            )
        self._write(record)

    def on_trial_error(self, iteration, trials, trial, **info):
        text = _ray_error_text(trial)
        elapsed = time.monotonic() - self.started.get(trial.trial_id, time.monotonic())
        # The trial's watchdog returns a timeout record before timeout_s of its own time, so a
        # process that died after timeout_s of driver time is one we (or its watchdog) ended.
        if trial.trial_id in self.killed or elapsed >= self.spec.timeout_s:
            record = self._failure(
                trial,
                TIMEOUT,
                f"trial ran past its timeout of {self.spec.timeout_s:g} s and was killed\n{text}",
                "Timeout",
            )
        else:
            record = self._failure(trial, CRASHED, text, _error_type(trial, text))
        self._write(record)

    def _failure(self, trial, status: str, text: str, kind: str) -> Trial:
        p = trial.config
        location = getattr(trial.temporary_state, "location", None)
        return Trial(
            config=p["config"],
            status=status,
            error=text,
            error_type=kind,
            gpu_type=p["gpu_type"],
            repeat=p["repeat"],
            sweep=p["sweep"],
            key=p["key"],
            ray_trial_id=trial.trial_id,
            node=getattr(location, "hostname", None),
            finished_at=utc_now(),
        )

    def _write(self, record: Trial) -> None:
        self.store.put(record)
        self.progress.add(record.status, ran=True)
        flush_finalize(self.store, self.searcher)


def flush_finalize(store: Store, searcher: Any) -> None:
    """Mark the rows that answer a max-batch search (``max_batch_size`` in their metrics)."""
    if searcher is None:
        return
    while searcher.finalize:
        key, best = searcher.finalize[0]
        record = store.get(key)
        if record is None:  # its own write has not happened yet: try again after it
            return
        searcher.finalize.pop(0)
        store.put(record.replace(metrics={**record.metrics, "max_batch_size": best}))


# ------------------------------------------------------------------------------------------------
# The sweep.


@dataclass
class Placement:
    """Where each planned trial can go: ``runnable`` trials (with gpu: bool) and the rows for
    those the cluster cannot run."""

    runnable: list[tuple[PlannedTrial, bool]]
    unplaceable: list[Trial]
    cluster_types: dict[str, int]
    has_gpu: bool


def needs_gpu(t: PlannedTrial, has_gpu: bool) -> bool:
    """Whether a trial asks for a GPU: device cuda, or a GPU type (even with device auto), or
    device auto on a cluster that has GPUs."""
    return t.gpu_type is not None or (has_gpu if t.uses_gpu is None else t.uses_gpu)


def place(
    spec: SweepSpec, planned: list[PlannedTrial], cluster_types: dict[str, int], has_gpu: bool
) -> Placement:
    """Split the plan by what the cluster has (pure: the cluster facts are arguments)."""
    runnable, rows = [], []
    have = ", ".join(sorted(cluster_types)) or "none"
    for t in planned:
        gpu = needs_gpu(t, has_gpu)
        reason = None
        if gpu and not has_gpu:
            reason = "the cluster has no GPU"
        elif gpu and t.gpu_type is not None and t.gpu_type not in cluster_types:
            reason = f"the cluster has no {t.gpu_type} GPU (GPU types: {have})"
        if reason:
            rows.append(t.unrun(spec.name, NO_GPU_TYPE, reason, "NoGpuType"))
        else:
            runnable.append((t, gpu))
    return Placement(runnable, rows, cluster_types, has_gpu)


class SweepError(ValueError):
    """The sweep cannot run on this cluster at all (said before anything is stored)."""


@dataclass
class SweepOutcome:
    spec: SweepSpec
    keys: list[str]  # every row of this sweep run (planned, probes, skipped)
    frame: Any  # pandas DataFrame of those rows, from the store
    wall_s: float
    counts: dict[str, int]
    not_run: int = 0  # planned but not run (an interrupted sweep); a resumed run runs them


def quiet_ray() -> None:
    # Tune's own console output and per-trial loggers: we print one progress line and store the
    # records ourselves (errors are in the rows, not in a wall of tracebacks).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1e9")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def connect(options: EngineOptions) -> None:
    """Join the cluster ``options`` name (or start a local Ray instance), quiet unless verbose."""
    from cluster import ray_cluster

    if not options.verbose:
        quiet_ray()
    ray_cluster.connect(
        options.address,
        num_cpus=options.num_cpus,
        preimport=options.preimport,
        log_to_driver=options.verbose,
    )


def run_sweep(spec: SweepSpec, options: EngineOptions | None = None) -> SweepOutcome:
    """Run a validated sweep; every trial ends as a row in ``options.db``."""
    options = options or EngineOptions()
    t0 = time.monotonic()
    planned = expand(spec)
    store = Store(options.db)  # an unusable path fails here, before Ray starts
    try:
        return _run(spec, planned, store, options, t0)
    finally:
        store.close()


def _run(
    spec: SweepSpec, planned: list[PlannedTrial], store: Store, options: EngineOptions, t0: float
) -> SweepOutcome:
    from cluster import ray_cluster

    connect(options)
    types = ray_cluster.gpu_types()
    placement = place(spec, planned, types, ray_cluster.total_gpus() > 0)
    for gpu in sorted({gpu for _, gpu in placement.runnable}):
        most = ray_cluster.most_cpus_per_trial(gpu)
        if most is not None and most < spec.cpus_per_trial:
            # Ray would keep such a trial pending for ever; nothing is stored yet
            where = "node with a GPU" if gpu else "node"
            raise SweepError(
                f"cpus_per_trial: a trial of {spec.name} reserves {spec.cpus_per_trial} CPUs, "
                f"but the largest {where} of this cluster has {most:g}: no trial could start"
            )
    stored = {} if options.rerun else store.statuses()

    max_batch = spec.mode == MAX_BATCH
    progress = Progress(
        total=0 if max_batch else len(planned),
        label=spec.name,
        enabled=options.progress,
        unit="probes" if max_batch else "trials",
    )
    keys: list[str] = []
    for row in placement.unplaceable:
        keys.append(row.key)
        if stored.get(row.key) in FINAL_STATUSES:  # measured earlier, when the type was there
            progress.already += 1
            continue
        store.put(row)
        progress.add(NO_GPU_TYPE, ran=False)

    runnable = [t for t, _ in placement.runnable]
    written: list[str] = []

    def write(record: Trial) -> None:
        store.put(record)
        written.append(record.key)

    searcher = None
    if runnable:
        extra = dict(
            sweep=spec.name,
            timeout_s=spec.timeout_s,
            trial_fn=options.trial_fn,
            has_gpu=placement.has_gpu,  # each trial's own GPU request: see needs_gpu
            cpus=spec.cpus_per_trial,
            reuse=options.reuse_workers and not options.isolate,
            isolate=options.isolate,
        )
        searcher = SweepSearcher(spec, runnable, extra, stored, options.rerun, write, progress)
        if max_batch:
            n_groups = len(searcher.groups)
            progress.extra = lambda: f"groups searched {searcher.groups_done()}/{n_groups}"
        _fit(spec, store, searcher, progress, options)
    flush_finalize(store, searcher)
    progress.close()

    keys += [t.key for t in runnable]
    if searcher is not None and max_batch:
        keys = [k for k in keys if k not in {t.key for t in runnable}]
        keys += [k for g in searcher.groups for k in g.probes]
        keys += [k for g in searcher.groups for k in (g.lo_key, g.hi_key) if k]
    keys += written
    keys = list(dict.fromkeys(keys))
    if searcher is not None:
        _fill_missing(spec, store, searcher.handed)
    trials = [t for t in (store.get(k) for k in keys) if t is not None]
    frame = trials_frame(trials)
    return SweepOutcome(
        spec,
        keys,
        frame,
        time.monotonic() - t0,
        dict(Counter(t.status for t in trials)),
        not_run=len(keys) - len(trials),
    )


def _fit(
    spec: SweepSpec, store: Store, searcher: Any, progress: Progress, options: EngineOptions
) -> None:
    scratch = options.storage_path or tempfile.mkdtemp(prefix="tsweep-tune-")
    callback = StoreCallback(store, spec, progress, options.kill_grace_s, searcher)
    tuner = tune.Tuner(
        tune.with_resources(trainable, _resources),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=-1,  # the searcher says when it is finished
            # False: a fresh process per trial, no memory carried over (see EngineOptions)
            reuse_actors=options.reuse_workers or options.isolate,
            trial_dirname_creator=lambda t: t.trial_id,
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=scratch,
            verbose=2 if options.verbose else 0,
            callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=options.retries),
            log_to_file=False,
        ),
    )
    try:
        tuner.fit()
    finally:
        if options.storage_path is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _fill_missing(spec: SweepSpec, store: Store, handed: list[PlannedTrial]) -> None:
    """Every trial handed to Tune ends as a row: one that Tune never reported (it should not
    happen) becomes a crashed row rather than a silently missing cell. Trials never handed out
    (the sweep was interrupted) are not rows: a resumed run runs them."""
    statuses = store.statuses()
    for t in handed:
        if t.key not in statuses:
            store.put(t.unrun(spec.name, CRASHED, "no result reached the driver", "MissingResult"))


# ------------------------------------------------------------------------------------------------
# Plan and summary (no trial runs).

SUMMARY_COLUMNS = [
    "model",
    "seq_len",
    "batch_size",
    "precision",
    "compile",
    "attention",
    "gpu",
    "status",
    "n",
    "sequences_per_s",
    "tokens_per_s",
    "peak_allocated_gib",
    "mfu",
    "gpu_busy_pct",
    "max_batch_size",
]


def summary_table(frame) -> Any:
    """Per configuration and GPU: median seq/s, tokens/s, peak memory (GiB), MFU and GPU busy
    (NVML utilization during the measured steps, %) over repeats, and the statuses seen. A GPU
    busy under sweep.trial.metrics.GPU_BUSY_MIN_PCT marks a host-bound figure."""
    import pandas as pd

    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    df = frame.copy()
    df["gpu"] = df["gpu"].fillna(df["gpu_type"]).fillna("any")
    keys = ["model", "seq_len", "batch_size", "precision", "compile", "attention", "gpu"]
    # any other configuration field that varies (optimizer, harness, mode, ...) tells
    # configurations apart too: without it their rows would be merged as if repeats
    varying = [
        f
        for f in field_names()
        if f not in keys and f in df.columns and df[f].nunique(dropna=False) > 1
    ]
    keys = keys[:6] + varying + keys[6:]
    df["gpu_busy_pct"] = df["gpu_util_pct_mean"]  # a results frame has every metric's column
    metrics = SUMMARY_COLUMNS[SUMMARY_COLUMNS.index("n") + 1 :]
    for m in metrics:
        df[m] = pd.to_numeric(df[m], errors="coerce")
    agg = (
        df.groupby(keys, dropna=False, sort=True)
        .agg(
            status=("status", lambda s: ",".join(sorted(set(s)))),
            n=("status", "size"),
            **{m: (m, "median") for m in metrics},
        )
        .reset_index()
    )
    columns = SUMMARY_COLUMNS[:6] + varying + SUMMARY_COLUMNS[6:]
    return agg[columns]


def format_summary(frame) -> str:
    table = summary_table(frame)
    if table.empty:
        return "(no trials)"
    for column in ("max_batch_size", "gpu_busy_pct"):
        if table[column].isna().all():
            table = table.drop(columns=[column])
    text = table.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
    n = int(table["gpu_busy_pct"].map(host_bound).eq(True).sum()) if "gpu_busy_pct" in table else 0
    if n:
        text += (
            f"\n{n} configuration(s) kept the GPU busy under {GPU_BUSY_MIN_PCT:g}% of the measured"
            " steps: host-bound, their figures depend on the CPU and vary from run to run"
            " (a larger batch or longer steps measure the GPU)."
        )
    return text


def stored_summary(db: str) -> str:
    """Stored rows by sweep and status (for ``python -m sweep status``)."""
    with Store(db, readonly=True) as store:
        trials = store.trials()
    if not trials:
        return f"{db}: no trials stored"
    by_sweep: dict[str, Counter] = {}
    for t in trials:
        by_sweep.setdefault(t.sweep or "-", Counter())[t.status] += 1
    lines = [f"{db}: {len(trials)} trials"]
    for name, counts in sorted(by_sweep.items()):
        parts = ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))
        lines.append(f"  {name}: {sum(counts.values())} ({parts})")
    return "\n".join(lines)


def plan_lines(
    spec: SweepSpec, db: str | None, cluster_types: dict[str, int] | None, has_gpu: bool | None
) -> list[str]:
    """What ``run`` would do: the trials, how many are stored, which GPU types are present."""
    planned = expand(spec)
    stored: dict[str, str] = {}
    if db and os.path.exists(db):
        with Store(db, readonly=True) as store:
            stored = store.statuses()
    final = sum(1 for t in planned if stored.get(t.key) in FINAL_STATUSES)
    unit = "search groups" if spec.mode == MAX_BATCH else "trials"
    search = ""
    if spec.mode == MAX_BATCH:
        exact = f"within {spec.batch_tolerance * 100:g}%" if spec.batch_tolerance else "exact"
        search = f" (mode {spec.mode}, batch up to {spec.batch_limit}, {exact})"
    lines = [
        f"sweep {spec.name}: {len(planned)} {unit}, {final} already stored with a final "
        f"status, {len(planned) - final} to run{search}"
    ]
    if cluster_types is not None:
        have = ", ".join(f"{t} ({n} GPU)" for t, n in sorted(cluster_types.items())) or "none"
        lines.append(f"cluster GPU types: {have}; GPUs: {'yes' if has_gpu else 'no'}")
        p = place(spec, planned, cluster_types, bool(has_gpu))
        if p.unplaceable:
            lines.append(
                f"{len(p.unplaceable)} would be stored as no_gpu_type: "
                + "; ".join(sorted({r.error for r in p.unplaceable}))
            )
    header = ["#", "key", "stored", "gpu_type", "model", "batch", "seq", "precision", "device"]
    rows = [header]
    for i, t in enumerate(planned):
        c = t.config
        rows.append(
            [
                str(i),
                t.key,
                stored.get(t.key, "-"),
                t.gpu_type or "any",
                c.model,
                str(c.batch_size),
                str(c.seq_len),
                c.precision,
                c.device,
            ]
        )
    widths = [max(len(r[j]) for r in rows) for j in range(len(header))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines
