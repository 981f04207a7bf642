"""Capped searches seeded from their uncapped family: how the fit atlas keeps its cost down.

An atlas asks one question per card size: the largest batch (or the longest sequence) that fits
16, 24, 40, 48 and 80 GB and the whole card, for the same configuration. The step is the same
whatever the card, so is what it allocates at a given shape: the uncapped search's probes already
measured the curve the capped cards cut. ``seed_families`` pairs each capped search (capacity_gb
set) with the uncapped search of its family (the same configuration but capacity_gb, the same GPU
type) where the sweep has one; ``SeededSearch`` waits for that search, then steers by a memory
model seeded from it (its class docstring):

- the first probe goes where the model meets this card's cap (estimated from the running card's
  shown total less what the last capped probe of that GPU type held outside the allocator after
  its warm-up; before any, what the uncapped probes held outside it at their peak (NVML less the
  reserved peak), CONTEXT_GUESS_GIB where neither was read; read exactly from the first probe's
  record, which states the cap whatever its status);
- each next one where the model, taught by this card's probes, says; or one unit past what fitted
  where it says no more fits, one below what failed where it says that fits, twice as far on each
  miss of the same kind.

The answer stays exact: the search ends only where its own probes show the last length (or batch)
that fits and the next that does not, or a limit; where the model is right that is two probes a
card. Each probe carries the prediction it was asked with (PREDICTION_FIELDS), so the model's miss
on every capped answer can be read from the store. Why the allocated peak and not the reserved
one: on an H100 the reserved peak of the same step was up to 16 GiB above the allocated one
uncapped and close to it under a cap (the allocator frees its cache when it runs short), so an
uncapped reserved curve says little about a capped card (docs/DECISIONS.md, "Seeding the
atlas's capped searches"). Pure: no Ray, no torch, no clock.
"""

from __future__ import annotations

import math
from typing import Any

from sweep.engine.schedule import NONFINITE, OK, OOM, RUN, BatchSearch, Schedule, Step
from sweep.plan.grid import PlannedTrial
from sweep.results.memory_model import GIB, allocator_cap
from sweep.results.memory_transient import TransientModel

# What the first capped probe is estimated to hold outside the allocator, GiB, where the uncapped
# family's probes did not read it either (the probe reads the true figure): an H200 with torch
# 2.11 showed about 0.5 GiB in use right after CUDA's start.
CONTEXT_GUESS_GIB = 0.5
# Steered probes per search; then plain bisection (a bound for odd memory curves).
MAX_STEERED = 8


def family_key(trial: PlannedTrial) -> tuple[Any, ...]:
    """What a search shares with the other card sizes of its family."""
    return (repr(trial.config.replace(capacity_gb=None)), trial.gpu_type, trial.repeat)


def seed_families(schedules: list[Schedule]) -> list[Schedule]:
    """``schedules`` with each capped search whose family has an uncapped search of the same kind
    wrapped in a SeededSearch (the family's searches share one FamilyModel); the others as they
    are (a capped search alone searches alone)."""
    uncapped = {
        (type(s), family_key(s.first)): s
        for s in schedules
        if isinstance(s, BatchSearch) and s.first.config.capacity_gb is None
    }
    contexts: dict[str | None, list[float]] = {}  # per GPU type: the context a probe read
    models: dict[tuple[Any, ...], FamilyModel] = {}
    out: list[Schedule] = []
    for s in schedules:
        source = None
        if isinstance(s, BatchSearch) and s.first.config.capacity_gb is not None:
            source = uncapped.get(key := (type(s), family_key(s.first)))
        if source is None:
            out.append(s)
            continue
        model = models.setdefault(key, FamilyModel(source))
        out.append(SeededSearch(s, model, contexts.setdefault(s.first.gpu_type, [])))
    return out


class FamilyModel(TransientModel):
    """The memory model of one family (a card-free one: one uncapped search serves every card),
    in the search's units (sweep/results/memory_transient.py: the allocated peak's broken line
    through the probes that fitted, uncapped and capped alike, plus a transient ``k`` GiB a
    unit), taught by every probe of the family's capped searches. ``k`` starts from the uncapped
    limit (the room it had less its allocated peak, over its length) or, where the uncapped
    search reached the axis's limit, its last probe's reserved peak less the allocated one; each
    capped probe then bounds it. A length fits a card where allocated + k * n <= the card's cap.
    """

    def __init__(self, source: BatchSearch) -> None:
        super().__init__()
        self.source = source
        self.seeded = False

    def seed(self) -> None:
        """Take the uncapped search's probes, once it is done (a capped search answered without
        a run may ask sooner: nothing is taken then)."""
        if self.seeded or not self.source.done:
            return
        self.seeded = True
        seen, src = self.source.guide.seen, self.source
        self.points.update(seen.allocated)
        if src.hi is not None and src.lo in seen.allocated and src.lo in seen.room:
            self.k = max(seen.room[src.lo] - seen.allocated[src.lo], 0.0) / src.lo
        elif src.lo in seen.allocated and src.lo in seen.reserved:
            self.k = max(seen.reserved[src.lo] - seen.allocated[src.lo], 0.0) / src.lo
        self._settle()


class SeededSearch:
    """A capped search (``search``) steered by its family's model (FamilyModel), once the
    family's uncapped search (``model.source``) is done."""

    def __init__(
        self, search: BatchSearch, model: FamilyModel, context: list[float] | None = None
    ) -> None:
        self.search = search
        self.model = model
        self.source = model.source
        # the CUDA context the capped probes of this GPU type read, shared by the family's
        # searches: once one has run, the others' first probes are estimated with it
        self.context = context if context is not None else []
        self.seeded = False
        self.threshold_gib: float | None = None  # the cap: where the allocator runs out
        self.streak = {"fit": 0, "fail": 0}  # consecutive probes that fitted / did not
        self.steered = 0
        self.units_of: dict[str, int] = {}  # probe key -> units
        search.steer = self._steer
        probe, stored = search._probe, search.stored

        def probe_noting_units(n: int) -> PlannedTrial:
            t = probe(n)
            self.units_of[t.key] = n
            return t

        def stored_learning(key: str) -> str | None:  # a resumed probe steers as it did
            status = stored(key)
            if status is not None and search.stored_metrics is not None:
                self._learn(self.units_of.get(key), status, search.stored_metrics(key))
            return status

        search._probe, search.stored = probe_noting_units, stored_learning

    # -- the Schedule protocol, the search's own ------------------------------------------------
    @property
    def probes(self) -> list[str]:
        return self.search.probes

    @property
    def first(self) -> PlannedTrial:
        return self.search.first

    @property
    def done(self) -> bool:
        return self.search.done

    @property
    def answer(self) -> tuple[str, int] | None:
        return self.search.answer

    @property
    def answer_metric(self) -> str:
        return self.search.answer_metric

    def prediction(self, key: str) -> dict[str, Any] | None:
        return self.search.prediction(key)

    def retry(self, trial: PlannedTrial) -> None:
        self.search.retry(trial)

    def abandon(self, lost: list[PlannedTrial]) -> list[PlannedTrial]:
        return self.search.abandon(lost)

    def ask(self) -> Step | None:
        if not self.seeded:
            if not self.source.done and not self.search.not_run:
                return None  # the uncapped search's probes are the seed: wait for them
            self._seed()
        step = self.search.ask()
        if step is not None and step.kind == RUN:
            self._predict(step.trial)
        return step

    def tell(self, trial: PlannedTrial, status: str, metrics: dict[str, Any] | None = None) -> None:
        self._learn(self.units_of.get(trial.key), status, metrics)  # before the search steers
        self.search.tell(trial, status, metrics)

    # -- seeding and steering -------------------------------------------------------------------
    def _seed(self) -> None:
        self.seeded = True
        self.model.seed()
        shown = self.source.guide.seen.shown_gib
        if self.threshold_gib is None and shown:
            context = self.context[-1] if self.context else self._outside_guess()
            try:
                capacity = self.search.first.config.capacity_gb
                cap = allocator_cap(capacity, shown * GIB, context * GIB)
                self.threshold_gib = cap.cap_bytes / GIB
            except ValueError:  # bigger than the card: the trial itself refuses it
                pass
        if self.search.not_run or self.search.probes:
            return
        first = self._steer(0, None, self.search.limit)
        if first is not None:
            self.search.next_batch = first

    def _outside_guess(self) -> float:
        """What a capped probe will hold outside the allocator, GiB, before any has run: the
        largest the uncapped family held outside it at a peak, where NVML was read."""
        return max(self.source.guide.seen.outside.values(), default=CONTEXT_GUESS_GIB)

    def _learn(self, units: int | None, status: str, metrics: dict[str, Any] | None) -> None:
        metrics = metrics or {}
        cap = _positive(metrics.get("capacity_cap_gib"))
        # after the warm-up's second cap (sweep/trial/capacity.py), else the context at the start
        context = metrics.get("outside_allocator_gib", metrics.get("cuda_context_gib"))
        if cap is not None:
            self.threshold_gib = cap
        if (context := _positive(context)) is not None:
            self.context.append(context)
        fits = status in (OK, NONFINITE)
        if status in (OK, NONFINITE, OOM):
            self.streak = {
                "fit": self.streak["fit"] + 1 if fits else 0,
                "fail": 0 if fits else self.streak["fail"] + 1,
            }
        if not units or cap is None:
            return
        allocated = _positive(metrics.get("peak_allocated_gib"))
        if fits and allocated is not None:
            self.model.fitted(units, allocated, cap)
        elif status == OOM:
            self.model.failed(units, cap)

    def _limit(self) -> int | None:
        if self.threshold_gib is None:
            return None
        return self.model.limit(self.threshold_gib, self.search.limit)

    def _steer(self, lo: int, hi: int | None, limit: int) -> int | None:
        """The next probe strictly inside (lo, hi or past the limit), or None (bisect): where
        the model says; after a run of probes that all fitted (or all failed), at least 1, 2,
        4... units past the last (below the last), so that a model taught one probe at a time
        costs a few probes, never a walk."""
        upper = hi if hi is not None else limit + 1
        s = self._limit()
        if upper - lo <= 1 or s is None or self.steered >= MAX_STEERED:
            return None
        nxt = s
        if self.streak["fit"] and lo:
            nxt = max(nxt, lo + 2 ** (self.streak["fit"] - 1))
        if self.streak["fail"] and hi is not None:
            nxt = min(nxt, upper - 2 ** (self.streak["fail"] - 1))
        nxt = min(max(nxt, lo + 1), upper - 1)
        self.steered += 1
        return nxt

    def _predict(self, trial: PlannedTrial) -> None:
        """What the model said as ``trial`` was asked: the limit, and the trial's allocated peak."""
        s, search = self._limit(), self.search
        units = self.units_of.get(trial.key)
        peak = None if units is None else self.model.allocated(units)
        if trial.key in search.predictions or s is None or peak is None:
            return
        search.predictions[trial.key] = {
            search.limit_field: max(s, 0) * search.unit,
            "predicted_peak_gib": peak,
            "predicted_peak_source": "peak_allocated_gib",
        }


def _positive(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None
