"""The Tune ``Searcher``: a thin adapter from Tune's suggest/complete calls to the pure schedules
(sweep/engine/schedule.py, one per group, seen only through the ``Schedule`` protocol), plus the
two things only the driver knows: what the cluster can place right now, and which trials to retry.

- Groups are served round-robin, so that they run side by side on a cluster.
- A trial is handed to Tune only where a live node can place it now (GPUs of its type, or CPU
  slots), so that a trial that cannot be placed never blocks the others: with 1 V100 and 2 A100
  GPUs, A100 trials run two at a time while V100 trials queue. For a type the autoscaler can
  start but no node has yet, one trial is handed out (its pending demand is what starts a node).
- A group whose kind of node is gone (a node lost mid-sweep, none left of its type) waits up to
  ``node_wait_s`` for one to come back; then its remaining trials become ``no_gpu_type`` rows
  naming the reason, and the sweep can end. A resume runs them once the node is back.
- A trial whose process died (``crashed``) is run again up to ``retries`` times, through the same
  placement check (Tune's own retries would keep a trial of a lost node pending for ever).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from cluster.placement import Capacity, Slot
from sweep.engine.flops import FlopsByShape
from sweep.engine.schedule import RUN, SKIP, STORED, Schedule, with_prediction
from sweep.engine.schedules import schedules_for
from sweep.engine.worker import TrialRequest
from sweep.plan.grid import PlannedTrial, SweepSpec, groups
from sweep.results.record import CRASHED, FINAL_STATUSES, NO_GPU_TYPE, SKIPPED_OOM, Trial


@dataclass
class _Group:
    schedule: Schedule
    gpu: bool
    gpu_type: str | None
    blocked_since: float | None = None
    gpus: int = 1  # gpus_per_trial: an N-GPU trial needs N GPUs of one node

    @property
    def slot(self) -> Slot:
        return (self.gpu, self.gpu_type) if self.gpus <= 1 else (self.gpu, self.gpu_type, self.gpus)


class SweepSearcher(Searcher):
    """Hands out the planned trials (grid mode, with OOM pruning) or runs max-batch searches.

    runnable: (trial, whether it asks for a GPU), as placed by cluster.placement.place.
    request: builds the TrialRequest Tune carries to the worker.
    stored: key -> status already in the store (those final are not run again unless rerun).
    stored_metrics: key -> a stored row's metrics, so that a resumed max-batch search is guided
        by the memory its stored probes measured (and asks for the same probes again).
    write: stores a record decided without running (skipped_oom, no_gpu_type).
    capacity: what the cluster can place now (None: do not check).
    """

    def __init__(
        self,
        spec: SweepSpec,
        runnable: list[tuple[PlannedTrial, bool]],
        request: Callable[[PlannedTrial, bool], TrialRequest],
        stored: dict[str, str],
        rerun: bool,
        write: Callable[[Trial], None],
        progress: Any,
        retries: int = 0,
        capacity: Callable[[], Capacity | None] | None = None,
        node_wait_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        stored_metrics: Callable[[str], dict | None] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.request = request
        self.stored = stored
        self.rerun = rerun
        self.write = write
        self.progress = progress
        self.retries = retries
        self.capacity = capacity
        self.node_wait_s = node_wait_s
        self.clock = clock
        self.stored_metrics = stored_metrics
        self.flops = FlopsByShape()  # what a trial of a shape counted, for the next of that shape
        gpu_of = {t.key: gpu for t, gpu in runnable}
        self.groups: list[_Group] = []
        member_lists = list(groups([t for t, _ in runnable]).values())
        scheds = schedules_for(spec, member_lists, self._stored_status, self._stored_metrics)
        for members, sched in zip(member_lists, scheds, strict=True):
            first = members[0]
            n = first.config.gpus_per_trial
            self.groups.append(_Group(sched, gpu_of[first.key], first.gpu_type, gpus=n))
        self.live: dict[str, tuple[_Group, PlannedTrial]] = {}
        self.handed: list[PlannedTrial] = []  # every trial given to Tune, for the safety net
        self.attempts: Counter[str] = Counter()  # runs handed out per key
        self.finished = False  # suggest said FINISHED: the whole plan was served
        self.abandoned: set[str] = set()  # Tune trials of a lost node, stored as rows already
        self._cursor = 0
        self._capacity: Capacity | None = None
        self._capacity_at = -1e9

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its configuration (for Tuner.restore, which we do not use: the store is
        # the sweep's state). The store writer, the progress line and the cluster probe cannot.
        skip = ("write", "progress", "capacity", "request", "clock", "stored_metrics")
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: resuming reads the store, not Tune's experiment state."""

    def restore(self, checkpoint_path: str) -> None:
        """See save."""

    def _stored_metrics(self, key: str) -> dict | None:
        return self.stored_metrics(key) if self.stored_metrics is not None else None

    def _stored_status(self, key: str) -> str | None:
        status = self.stored.get(key)
        return status if status in FINAL_STATUSES and not self.rerun else None

    # -- what the cluster can place -------------------------------------------------------------
    def _cluster(self) -> Capacity | None:
        if self.capacity is None:
            return None
        now = self.clock()
        if (
            now - self._capacity_at >= 1.0
        ):  # Tune calls suggest often; ask the cluster once a second
            self._capacity, self._capacity_at = self.capacity(), now
        return self._capacity

    def _in_flight(self, slot: Slot) -> int:
        return sum(1 for g, _ in self.live.values() if g.slot == slot)

    def _placeable(self, g: _Group, cap: Capacity | None) -> bool:
        """Whether a trial of this group can be handed out now; notes when its kind of node went
        missing, and drains the group once it has been missing for node_wait_s."""
        if cap is None:
            return True
        have, flying = cap.of(g.slot), self._in_flight(g.slot)
        if have > 0:
            g.blocked_since = None
            return flying < have
        if g.gpu_type is not None and g.gpu_type in cap.autoscaled:
            g.blocked_since = None
            return flying == 0  # one pending trial is the demand that starts a node
        if g.blocked_since is None:
            g.blocked_since = self.clock()
        elif self.clock() - g.blocked_since >= self.node_wait_s:
            self._drain(g)
        return False

    def _drain(self, g: _Group) -> None:
        """The group's kind of node has been gone for node_wait_s: every trial it has left
        becomes a no_gpu_type row (not final: a resume runs it once the node is back)."""
        what = f"{g.gpu_type} GPU" if g.gpu_type else ("GPU" if g.gpu else "CPU slot")
        reason = (
            f"no live node with a free {what} for {self.node_wait_s:g} s "
            "(the node was lost during the sweep, or never joined)"
        )
        # its trials still in flight went with the node (Ray may keep them pending for ever)
        lost = [(tid, t) for tid, (grp, t) in self.live.items() if grp is g]
        for tid, _ in lost:
            del self.live[tid]
            self.abandoned.add(tid)
        for t in g.schedule.abandon([t for _, t in lost]):
            if self._stored_status(t.key):
                continue
            self.write(t.unrun(self.spec.name, NO_GPU_TYPE, reason, "NoGpuType"))
            self.progress.add(NO_GPU_TYPE, ran=False)

    # -- Searcher API ---------------------------------------------------------------------------
    def _next(self, g: _Group) -> PlannedTrial | None:
        while (step := g.schedule.ask()) is not None:
            if step.kind == RUN:
                return step.trial
            if step.kind == SKIP:  # pruned (skipped_oom), or answered unrun (oom: too big)
                status = step.status or SKIPPED_OOM
                kind = "SkippedOOM" if status == SKIPPED_OOM else "NotRun"
                self.write(step.trial.unrun(self.spec.name, status, step.reason, kind))
                self.progress.add(status, ran=False)
            elif step.kind == STORED:
                self.progress.already += 1
        return None

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        n = len(self.groups)
        cap = self._cluster()
        for i in range(n):
            g = self.groups[(self._cursor + i) % n]
            if g.schedule.done or not self._placeable(g, cap):
                continue
            t = self._next(g)
            if t is not None:
                self._cursor = (self._cursor + i + 1) % n
                self.live[trial_id] = (g, t)
                self.handed.append(t)
                self.attempts[t.key] += 1
                request = self.request(t, g.gpu)
                known = self.flops.per_sequence(request.config)
                return dataclasses.replace(request, flops_per_sequence=known).to_dict()
        if self.live or not all(g.schedule.done for g in self.groups):
            return None  # waiting for a result that may prune or steer the rest, or for a node
        self.finished = True
        return Searcher.FINISHED

    def only_abandoned_left(self) -> bool:
        """Every trial is served but some Tune trials of a lost node never end: the sweep must
        stop them (see StopWhenOnlyLostTrialsLeft)."""
        if self.abandoned and not self.live and all(g.schedule.done for g in self.groups):
            self.finished = True
            return True
        return False

    def will_retry(self, key: str) -> bool:
        """Whether a crashed run of ``key`` is run again (it has attempts left)."""
        return self.attempts[key] < 1 + self.retries

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        entry = self.live.pop(trial_id, None)
        if entry is None:  # unknown, or abandoned with its lost node (its row is written)
            return
        g, t = entry
        status = CRASHED if error or not result else result.get("status", CRASHED)
        self.flops.remember(t.config.to_dict(), status, _metrics_of(result))
        if status == CRASHED and self.will_retry(t.key):
            g.schedule.retry(t)
            return
        g.schedule.tell(t, status, _metrics_of(result))

    # -- what the schedules found ---------------------------------------------------------------
    def answers(self) -> list[tuple[str, int]]:
        """(key of the row that carries it, its value) of each schedule that answered: a max-batch
        search's largest batch that fits."""
        return [a for g in self.groups if (a := g.schedule.answer)]

    def answer_rows(self) -> list[tuple[str, int, str]]:
        """``answers`` with the metric each is stored as (max_batch_size, max_seq_len)."""
        return [
            (*a, getattr(g.schedule, "answer_metric", "max_batch_size"))
            for g in self.groups
            if (a := g.schedule.answer)
        ]

    def with_prediction(self, record: Trial) -> Trial:
        """``record`` with what its schedule predicted for it (schedule.with_prediction)."""
        for g in self.groups:
            if (prediction := g.schedule.prediction(record.key)) is not None:
                return record.replace(metrics=with_prediction(record.metrics or {}, prediction))
        return record

    def groups_done(self) -> int:
        return sum(g.schedule.done for g in self.groups)

    def probe_keys(self) -> list[str]:
        """Every trial the schedules asked for (a max-batch search's probes), group by group."""
        return [k for g in self.groups for k in g.schedule.probes]


def _metrics_of(result: dict | None) -> dict[str, Any] | None:
    """The metrics of the record in a trial's result (None where it has none or is unreadable)."""
    text = (result or {}).get("record")
    if not text:
        return None
    try:
        return Trial.from_json(text).metrics
    except (ValueError, TypeError):
        return None


class StopWhenOnlyLostTrialsLeft(Stopper):
    """Ends the Tune run once nothing is left but trials of a lost node, which Ray may keep
    pending for ever (their rows are stored already)."""

    def __init__(self, searcher: SweepSearcher) -> None:
        self.searcher = searcher

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.searcher.only_abandoned_left()
