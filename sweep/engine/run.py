"""Run a planned sweep on Ray Tune: every trial ends as one row in the store.

Ray Tune executes the list it is given; what it decides is in two extension points:
``SweepSearcher`` (sweep/engine/searcher.py: which trial next, over the pure schedules of
sweep/engine/schedule.py) and ``StoreCallback`` (sweep/engine/callback.py: each trial stored the
moment it ends). The trainable (sweep/engine/worker.py) runs the trial function, named by its
dotted path, in a fresh process forked from the worker's fork server (sweep/engine/forkserver.py).

This package imports ray but neither torch (the trial function does, in the worker) nor gradio.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ray import tune

from cluster.placement import place
from sweep.engine import stopsignals
from sweep.engine.callback import StoreCallback
from sweep.engine.guard import GuardStopper, StoreGuard
from sweep.engine.options import EngineOptions
from sweep.engine.progress import Progress
from sweep.engine.quiet import quiet_lost_nodes, quiet_ray
from sweep.engine.searcher import StopWhenOnlyLostTrialsLeft, SweepSearcher
from sweep.engine.worker import TrialRequest, resources, trainable
from sweep.plan.grid import (
    SEARCH_MODES,
    PlannedTrial,
    SweepSpec,
    claimed_keys,
    expand,
    interference_trials,
)
from sweep.results.frame import trials_frame
from sweep.results.lease import Lease, LeaseHeld
from sweep.results.record import CRASHED, FINAL_STATUSES, NO_GPU_TYPE, Trial
from sweep.results.store import Store

log = logging.getLogger(__name__)

# What each Ray worker process runs as it starts, with --preimport.
PREIMPORT_HOOK = "sweep.engine.forkserver.preimport"
SCRATCH_PREFIX = "tsweep-tune-"


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
    interrupted: bool = False  # stopped (Ctrl-C) before the plan was served


def connect(options: EngineOptions) -> None:
    """Join the cluster ``options`` name (or start a local Ray instance), quiet unless verbose."""
    from cluster import ray_cluster

    if not options.verbose:
        quiet_ray()
    ray_cluster.connect(
        options.address,
        num_cpus=options.num_cpus,
        setup_hook=PREIMPORT_HOOK if options.preimport else None,
        log_to_driver=options.verbose,
    )
    if not options.verbose:
        quiet_lost_nodes()
    stopsignals.install()  # after ray.init, which makes SIGTERM exit at once


def run_sweep(spec: SweepSpec, options: EngineOptions | None = None) -> SweepOutcome:
    """Run a validated sweep; every trial ends as a row in ``options.db``."""
    options = options or EngineOptions()
    t0 = time.monotonic()
    planned = expand(spec)
    store = Store(options.db)  # an unusable or damaged file fails here, before Ray starts
    try:
        # one driver per sweep and database (sweep/results/lease.py), also taken before Ray
        # with the configurations it plans (a max-batch search: its groups)
        with Lease(options.db, spec.name, keys=claimed_keys(spec, planned)) as lease:
            if lease.taken_over is not None:
                log.warning(
                    "took over the lease of sweep %s from a driver that is gone: %s",
                    spec.name,
                    lease.taken_over.describe(time.time()),
                )
            # every write of the sweep: a refused one (a full disk) or a lost lease stops it
            guard = StoreGuard(store, lease)
            check = interference_trials(spec)
            if not check:
                return guard.checked(_run(spec, planned, guard, options, t0))
            # the reference alone on the node, then handed out first among the sweep's trials
            alone = guard.checked(_run(spec, check[:1], guard, options, t0))
            if alone.interrupted:
                return alone
            then = guard.checked(_run(spec, check[1:] + planned, guard, options, t0))
            return _merge(store, alone, then, t0)
    except LeaseHeld as exc:
        raise SweepError(str(exc)) from None
    finally:
        store.close()


def _merge(store: Store, first: SweepOutcome, then: SweepOutcome, t0: float) -> SweepOutcome:
    """One outcome of two runs of the same sweep (the interference check's phases)."""
    keys = list(dict.fromkeys(first.keys + then.keys))
    trials = [t for t in (store.get(k) for k in keys) if t is not None]
    return SweepOutcome(
        then.spec,
        keys,
        trials_frame(trials),
        time.monotonic() - t0,
        dict(Counter(t.status for t in trials)),
        not_run=len(keys) - len(trials),
        interrupted=first.interrupted or then.interrupted,
    )


def _driver_node() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # not connected: the host name says where the row was written
        return socket.gethostname()


def _run(
    spec: SweepSpec, planned: list[PlannedTrial], store: Store, options: EngineOptions, t0: float
) -> SweepOutcome:
    from cluster import ray_cluster

    connect(options)
    types = ray_cluster.gpu_types()
    node_cpus = {gpu: ray_cluster.most_cpus_per_trial(gpu) for gpu in (True, False)}
    has_gpu = ray_cluster.total_gpus() > 0
    placement = place(
        spec, planned, types, has_gpu, ray_cluster.max_gpus_per_node(), node_cpus=node_cpus
    )
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

    max_batch = spec.mode in SEARCH_MODES  # a search: its probes are not planned
    store.put_plan(spec.name, None if max_batch else len(planned))  # the app's progress view
    progress = Progress(
        total=0 if max_batch else len(planned),
        label=spec.name,
        enabled=options.progress,
        unit="probes" if max_batch else "trials",
    )
    driver = _driver_node()
    written: list[str] = []

    def write(record: Trial) -> None:
        """A row the driver decided itself (skipped, no GPU type, no result): its node is the
        driver's."""
        store.put(record if record.node else record.replace(node=driver))
        written.append(record.key)

    for row in placement.unplaceable:
        if stored.get(row.key) in FINAL_STATUSES:  # measured earlier, when the type was there
            progress.already += 1
            written.append(row.key)
            continue
        write(row)
        progress.add(NO_GPU_TYPE, ran=False)

    searcher = None
    if placement.runnable:
        how = dict(
            cpus=spec.cpus_per_trial,
            pin_cpus=spec.pin_cpus,
            timeout_s=spec.timeout_s,
            trial_fn=options.trial_fn,
            isolate=options.isolate,
            reuse=options.reuse_workers and not options.isolate,
        )

        def request(t: PlannedTrial, gpu: bool) -> TrialRequest:
            return TrialRequest.of(t, spec.name, gpu, **how)

        searcher = SweepSearcher(
            spec,
            placement.runnable,
            request,
            stored,
            options.rerun,
            write,
            progress,
            retries=options.retries,
            capacity=lambda: ray_cluster.capacity(spec.cpus_per_trial),
            node_wait_s=options.node_wait_s,
            stored_metrics=lambda key: r.metrics if (r := store.get(key)) else None,
        )
        if max_batch:
            n_groups = len(searcher.groups)
            progress.extra = lambda: f"groups searched {searcher.groups_done()}/{n_groups}"
        callback = StoreCallback(store, spec, progress, options.kill_grace_s, searcher)
        try:
            _fit(spec, searcher, callback, options)
        finally:
            store.set_running(spec.name, 0)  # ended, interrupted or failed: nothing runs
        interrupted = not searcher.finished
        _fill_missing(spec, store, searcher.handed, write, interrupted)
        callback.mark_answers()
    else:
        interrupted = False
    progress.close()

    if max_batch and searcher is not None:
        keys = written + searcher.probe_keys()
    else:
        keys = written + [t.key for t, _ in placement.runnable]
    keys = list(dict.fromkeys(keys))
    trials = [t for t in (store.get(k) for k in keys) if t is not None]
    if store.unreadable:  # a damaged row: left out of the summary, named
        log.warning("%s", store.unreadable_note())
    frame = trials_frame(trials)
    return SweepOutcome(
        spec,
        keys,
        frame,
        time.monotonic() - t0,
        dict(Counter(t.status for t in trials)),
        not_run=len(keys) - len(trials),
        interrupted=interrupted,
    )


def _scratch_dir(options: EngineOptions) -> str:
    """Tune's scratch directory for this run; first removes those that drivers killed before
    they could clean up (their pid, in the name, is no longer alive on this host)."""
    if options.storage_path is not None:
        return options.storage_path
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        if not name.startswith(SCRATCH_PREFIX):
            continue
        pid = name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fit(
    spec: SweepSpec, searcher: SweepSearcher, callback: StoreCallback, options: EngineOptions
) -> None:
    scratch = _scratch_dir(options)
    # Tune asks a custom searcher for one pending trial at a time by default; the searcher itself
    # hands out only what live nodes can place, so Tune may hold several pending at once (one
    # trial waiting for a scarce GPU type must not stop the others from starting).
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "1000")
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
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
            stop=tune.stopper.CombinedStopper(
                StopWhenOnlyLostTrialsLeft(searcher), GuardStopper(callback.store)
            ),
            # the searcher retries a trial whose process died (options.retries), through its
            # placement check: Tune's own retry would keep a trial of a lost node pending
            failure_config=tune.FailureConfig(max_failures=0),
            log_to_file=False,
        ),
    )
    try:
        tuner.fit()
    finally:
        if options.storage_path is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _fill_missing(
    spec: SweepSpec, store: Store, handed: list[PlannedTrial], write, interrupted: bool
) -> None:
    """Every trial handed to Tune ends as a row: one that Tune never reported becomes a crashed
    row (not final: a resumed run runs it again) rather than a silently missing cell. Trials
    never handed out (the sweep was interrupted) are not rows: a resumed run runs them."""
    statuses = store.statuses()
    why = (
        "the sweep was interrupted before it ended"
        if interrupted
        else "no result reached the driver"
    )
    for t in handed:
        if t.key not in statuses:
            write(
                t.unrun(spec.name, CRASHED, why, "Interrupted" if interrupted else "MissingResult")
            )
