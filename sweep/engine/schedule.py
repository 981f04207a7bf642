"""What to run next, as pure ask/tell objects: no Ray, no store, no clock.

A sweep's planned trials fall into groups (same configuration but the batch size, same GPU type;
``PlannedTrial.group``). Each group is scheduled by one object:
- ``GridQueue`` (grid mode): the members in ascending batch size, one at a time, so that an
  out-of-memory batch prunes the larger ones (they become ``skipped_oom`` rows, never run).
- ``BatchSearch`` (max-batch mode): the largest batch that fits, by doubling from the first
  batch, then bisection between the largest batch that fitted and the smallest that did not;
  once two probes have fitted with memory readings, guided by the line of peak memory against
  the batch (sweep/engine/memory_guide.py): a jump close below the predicted limit, one probe
  above it, then the last gap.

Both implement ``Schedule``, the one protocol the Tune searcher (sweep/engine/searcher.py) adapts
to Tune's API, without knowing which schedule it holds: ``ask()`` returns the next ``Step`` (run
this trial, write this skipped row, count this stored row) or None (wait for a result in flight, or
nothing left); ``tell()`` folds a trial's outcome in; ``retry()`` takes back a trial whose process
died; ``abandon()`` gives up a group whose kind of node is gone; ``done``, ``probes``, ``answer``
and ``prediction()`` say where it stands. ``schedule_for`` (sweep/engine/schedules.py) picks
the class by the sweep's mode; the max-seq search is sweep/engine/seq_search.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sweep.engine.memory_guide import PEAK_SOURCES, MemoryGuide, reading_of
from sweep.plan.fixed_memory import too_big
from sweep.plan.grid import PlannedTrial
from sweep.results.record import CRASHED, NONFINITE, OK, OOM, TIMEOUT

RUN, SKIP, STORED = "run", "skip", "stored"


@dataclass(frozen=True)
class Step:
    """One decision: ``RUN`` the trial, ``SKIP`` it (write a skipped_oom row with ``reason``), or
    count it as ``STORED`` already (resume). ``status``: the stored status, for STORED."""

    kind: str
    trial: PlannedTrial
    reason: str = ""
    status: str | None = None


# stored(key) -> the status stored with a final status (None: run it)
StoredLookup = Callable[[str], "str | None"]
# stored_metrics(key) -> a stored row's metrics (None: no such row)
MetricsLookup = Callable[[str], "dict[str, Any] | None"]


@runtime_checkable
class Schedule(Protocol):
    """What decides one group's trials; all that the searcher asks of it.

    probes: keys of every trial asked (run, skipped or counted as stored), in the order first
      asked.
    """

    probes: list[str]

    @property
    def done(self) -> bool:
        """Nothing left to ask and nothing in flight."""
        ...

    @property
    def answer(self) -> tuple[str, int] | None:
        """What the group found, once done: (key of the row that carries it, the value); None
        for a schedule that only runs its trials, or that found nothing."""
        ...

    def ask(self) -> Step | None:
        """The next decision, or None (wait for a result in flight, or nothing left)."""
        ...

    def tell(self, trial: PlannedTrial, status: str, metrics: dict[str, Any] | None = None) -> None:
        """Fold in the outcome of a trial it asked to run; ``metrics``: its record's, or None."""
        ...

    def retry(self, trial: PlannedTrial) -> None:
        """Run ``trial`` again next (its process died; the retry is the engine's)."""
        ...

    def abandon(self, lost: list[PlannedTrial]) -> list[PlannedTrial]:
        """Give up: the group's kind of node is gone, with ``lost`` (its trials in flight). Returns
        every trial it leaves unrun, ``lost`` first; then it is done."""
        ...

    def prediction(self, key: str) -> dict[str, Any] | None:
        """What it predicted for the trial ``key`` as it asked for it (with_prediction), or None."""
        ...


class GridQueue:
    """One group of a grid sweep: ascending batch size, one trial in flight, OOM pruning."""

    def __init__(self, members: list[PlannedTrial], stored: StoredLookup) -> None:
        self.members = sorted(members, key=lambda t: (t.config.batch_size, t.repeat))
        self.stored = stored
        self.oom_batch: int | None = None  # the smallest batch that ran out of memory
        self.in_flight = 0
        self.probes: list[str] = []

    @property
    def done(self) -> bool:
        return not self.members and not self.in_flight

    @property
    def answer(self) -> None:
        """A grid group only runs its trials: it answers nothing."""
        return None

    def prediction(self, key: str) -> None:
        return None

    def _oom_at(self, batch: int) -> None:
        self.oom_batch = batch if self.oom_batch is None else min(self.oom_batch, batch)

    def ask(self) -> Step | None:
        step = self._decide()
        if step is not None and step.trial.key not in self.probes:  # a retry is asked again
            self.probes.append(step.trial.key)
        return step

    def _decide(self) -> Step | None:
        if not self.members:
            return None
        t = self.members[0]
        status = self.stored(t.key)
        if self.oom_batch is not None and t.config.batch_size >= self.oom_batch:
            self.members.pop(0)
            if status is not None:
                return Step(STORED, t, status=status)
            return Step(SKIP, t, reason=f"batch {self.oom_batch} of this group ran out of memory")
        if status is not None:  # resume: stored results count, stored OOMs still prune
            self.members.pop(0)
            if status == OOM:
                self._oom_at(t.config.batch_size)
            return Step(STORED, t, status=status)
        if self.in_flight:
            return None  # one at a time per group, so that an OOM can prune the rest
        self.in_flight += 1
        return Step(RUN, self.members.pop(0))

    def tell(self, trial: PlannedTrial, status: str, metrics: dict[str, Any] | None = None) -> None:
        self.in_flight -= 1
        if status == OOM:
            self._oom_at(trial.config.batch_size)

    def retry(self, trial: PlannedTrial) -> None:
        """Run ``trial`` again next (its process died; the retry is the engine's)."""
        self.in_flight -= 1
        self.members.insert(0, trial)

    def abandon(self, lost: list[PlannedTrial]) -> list[PlannedTrial]:
        left, self.members, self.in_flight = [*lost, *self.members], [], 0
        return left


class BatchSearch:
    """One group of a max-batch sweep: the largest batch that fits, up to ``limit``.

    Doubling from the first batch until a batch does not fit, then bisection of the gap; with
    ``tolerance`` > 0 the search stops once hi - lo <= lo * tolerance (the answer is then within
    that fraction). A probe that ran (ok, nonfinite) fits; out of memory, a crash or a timeout
    does not (a dead process at a large batch is most often memory); any other status means the
    configuration itself fails, and the search ends without an answer.

    ``tell`` takes the probe's metrics: with their peak memory and the card's total the search
    is memory-guided (MemoryGuide), and every probe asked once the line exists carries what it
    predicted (``predictions``: key -> PREDICTION_FIELDS, written into the probe's metrics).
    """

    def __init__(
        self,
        first: PlannedTrial,
        stored: StoredLookup,
        limit: int,
        tolerance: float = 0.0,
        stored_metrics: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> None:
        self.first = first
        self.stored = stored
        self.stored_metrics = stored_metrics  # a stored probe's metrics (resume), or None
        self.limit = limit
        self.tolerance = tolerance
        self.lo = 0  # the largest batch that fits (0: none known)
        self.hi: int | None = None  # the smallest batch that does not fit (None: none known)
        self.lo_key: str | None = None
        self.hi_key: str | None = None
        self.next_batch: int | None = min(first.config.batch_size, limit)
        self.in_flight = 0
        self.finished = False
        self.probes: list[str] = []  # keys of every probe, in the order asked
        self.guide = MemoryGuide()
        self.predictions: dict[str, dict[str, Any]] = {}
        # fixed memory alone over the card (capacity_gb): answered without a run
        self.not_run = too_big(first.config)
        # (lo, hi, limit) -> the next probe strictly inside, or None: set where the search is
        # seeded from its uncapped family (sweep/engine/seeded.py), in place of the guide
        self.steer: Callable[[int, int | None, int], int | None] | None = None

    @property
    def done(self) -> bool:
        return self.finished

    def prediction(self, key: str) -> dict[str, Any] | None:
        return self.predictions.get(key)

    @property
    def answer(self) -> tuple[str, int] | None:
        """Once the search is over: (the key of the row that carries the answer, the largest batch
        that fits). The row of the largest batch that fits carries it; if none fits, the smallest
        batch that failed carries 0. None while searching, or when the configuration fails."""
        if not self.finished:
            return None
        target = self.lo_key if self.lo else self.hi_key
        return (target, self.lo * self.unit) if target else None

    # the searched axis: a probe of n units, and a probe's units (max-seq: 128 tokens a unit)
    unit = 1
    answer_metric = "max_batch_size"
    limit_field = "predicted_limit_batch"

    def _probe(self, n: int) -> PlannedTrial:
        return self.first.with_batch(n)

    def _units(self, t: PlannedTrial) -> int:
        return t.config.batch_size

    def ask(self) -> Step | None:
        if self.finished or self.in_flight or self.next_batch is None:
            return None
        t = self._probe(self.next_batch)
        self.probes.append(t.key)
        self._predict(t)
        status = self.stored(t.key)
        if status is None and self.not_run:  # the card cannot hold even the fixed memory
            self.hi, self.hi_key, self.finished, self.next_batch = 0, t.key, True, None
            return Step(SKIP, t, reason=self.not_run, status=OOM)
        if status is not None:  # resume: a stored probe steers the search, unrun
            if status in (OK, NONFINITE) and self.stored_metrics is not None:
                self.guide.add(self._units(t), self.stored_metrics(t.key))
            self._fold(self._units(t), t.key, status)
            return Step(STORED, t, status=status)
        self.in_flight += 1
        return Step(RUN, t)

    def tell(self, trial: PlannedTrial, status: str, metrics: dict[str, Any] | None = None) -> None:
        """Fold a probe's outcome in; ``metrics``: its record's (peak memory, device total)."""
        self.in_flight -= 1
        if status in (OK, NONFINITE):
            self.guide.add(self._units(trial), metrics)
        self._fold(self._units(trial), trial.key, status)

    def _predict(self, t: PlannedTrial) -> None:
        """What the memory line says as ``t`` is asked: the limit and ``t``'s peak."""
        limit = self.guide.predicted_limit(self.lo)
        peak = self.guide.predicted_peak_gib(self._units(t))
        if limit is None or peak is None:
            return
        self.predictions[t.key] = {
            self.limit_field: limit * self.unit,
            "predicted_peak_gib": peak,
            "predicted_peak_source": self.guide.source,
        }

    def retry(self, trial: PlannedTrial) -> None:
        self.in_flight -= 1
        self.probes.pop()  # asked again, under the same key
        self.next_batch = self._units(trial)

    def abandon(self, lost: list[PlannedTrial]) -> list[PlannedTrial]:
        left = list(lost)
        if self.next_batch and not lost:  # the probe it would have asked next
            left.append(self._probe(self.next_batch))
        self.finished, self.next_batch, self.in_flight = True, None, 0
        return left

    def _fold(self, batch: int, key: str, status: str) -> None:
        """Fold one probe's outcome into the search and choose the next batch."""
        if status not in (OK, NONFINITE, OOM, CRASHED, TIMEOUT):
            self.finished, self.next_batch = True, None  # the configuration itself fails
            return
        if status in (OK, NONFINITE):
            if batch > self.lo:
                self.lo, self.lo_key = batch, key
        elif self.hi is None or batch < self.hi:
            self.hi, self.hi_key = batch, key
        if self.hi is None:
            nxt: int | None = min(self.lo * 2, self.limit)
            if nxt <= self.lo:  # the limit itself fits
                nxt = None
        else:
            nxt = (self.lo + self.hi) // 2
            close_enough = self.lo and self.hi - self.lo <= self.lo * self.tolerance
            if nxt <= self.lo or nxt >= self.hi or close_enough:
                nxt = None
        if nxt is not None and self.steer is not None:  # seeded (sweep/engine/seeded.py)
            nxt = self.steer(self.lo, self.hi, self.limit) or nxt
        elif nxt is not None and self.lo:
            nxt = self.guide.next_batch(self.lo, self.hi, self.limit) or nxt
        self.next_batch = nxt
        if nxt is None:
            self.finished = True


# What a guided probe's row carries in its metrics (a probe asked before the line existed has none).
PREDICTION_FIELDS = (
    "predicted_limit_batch",
    "predicted_limit_seq",
    "predicted_peak_gib",
    "prediction_error_pct",
)


def with_prediction(metrics: dict[str, Any], prediction: dict[str, Any] | None) -> dict[str, Any]:
    """A probe's metrics with what the search predicted as it asked for it, and, where the probe
    measured the same peak, the prediction's error: (predicted - measured) / measured, %."""
    if not prediction:
        return metrics
    out = dict(metrics)
    out.update({k: v for k, v in prediction.items() if k != "predicted_peak_source"})
    source = prediction.get("predicted_peak_source")
    if source in (None, *(name for name, _ in PEAK_SOURCES)):
        r = reading_of(metrics, source)
        measured = r.peak_gib if r is not None else None
    else:  # a metric no guide reads (a seeded search's allocated peak): as stored
        measured = metrics.get(source)
    predicted = prediction.get("predicted_peak_gib")
    if isinstance(measured, (int, float)) and measured > 0 and predicted is not None:
        out["prediction_error_pct"] = (predicted - measured) / measured * 100
    return out
