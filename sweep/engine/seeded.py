"""Capped searches seeded from their uncapped family: how the fit atlas keeps its cost down.

An atlas asks one question per card size: the largest batch (or the longest sequence) that fits
16, 24, 40, 48 and 80 GB and the whole card, for the same configuration. The step is the same
whatever the card, so is the memory it takes at a given shape: the uncapped search's probes
already measured the curve the capped cards cut. ``seed_families`` pairs each capped search
(capacity_gb set) with the uncapped search of its family (the same configuration but capacity_gb,
the same GPU type and repeat) where the sweep has one; ``SeededSearch`` then waits for that search,
takes its probes' peaks (the reserved peak, the one a capped run is read by), and steers:

- the first probe goes where the memory model through those peaks reaches this card's cap
  (estimated from the running card's shown total and the CUDA context the last capped probe of
  that GPU type read, CONTEXT_GUESS_GIB before any; read exactly from the first probe's record,
  which states the cap whatever its status);
- each next one where the model, refitted with the capped probes that fitted, says; or one unit
  past what fitted where it says no more fits, one below what failed where it says that fits,
  twice as far on each miss of the same kind.

The answer stays exact: the search ends only where its own probes show the last length (or
batch) that fits and the next that does not, or a limit; where the model is right that is two
probes a card. Each probe carries the prediction it was asked with (PREDICTION_FIELDS), so the
model's miss on every capped answer can be read from the store. Pure: no Ray, no torch, no clock.
"""

from __future__ import annotations

import math
from typing import Any

from sweep.engine.memory_guide import CAPPED_SOURCE
from sweep.engine.schedule import RUN, BatchSearch, Schedule, Step
from sweep.plan.grid import PlannedTrial
from sweep.results.memory_model import GIB, allocator_cap

# The CUDA context the first capped probe is estimated with, GiB (it reads the true one): an
# H200 with torch 2.11 showed about 0.5 GiB in use right after CUDA's start.
CONTEXT_GUESS_GIB = 0.5
# Steered probes per search; then plain bisection (a bound for odd memory curves).
MAX_STEERED = 8


def family_key(trial: PlannedTrial) -> tuple[Any, ...]:
    """What a search shares with the other card sizes of its family."""
    return (repr(trial.config.replace(capacity_gb=None)), trial.gpu_type, trial.repeat)


def seed_families(schedules: list[Schedule]) -> list[Schedule]:
    """``schedules`` with each capped search whose family has an uncapped search of the same kind
    wrapped in a SeededSearch; the others as they are (a capped search alone searches alone)."""
    uncapped = {
        (type(s), family_key(s.first)): s
        for s in schedules
        if isinstance(s, BatchSearch) and s.first.config.capacity_gb is None
    }
    contexts: dict[str | None, list[float]] = {}  # per GPU type: the context a probe read
    out: list[Schedule] = []
    for s in schedules:
        source = None
        if isinstance(s, BatchSearch) and s.first.config.capacity_gb is not None:
            source = uncapped.get((type(s), family_key(s.first)))
        if source is None:
            out.append(s)
        else:
            out.append(SeededSearch(s, source, contexts.setdefault(s.first.gpu_type, [])))
    return out


class SeededSearch:
    """A capped search (``search``) steered by its family's uncapped one (``source``)."""

    def __init__(
        self, search: BatchSearch, source: BatchSearch, context: list[float] | None = None
    ) -> None:
        self.search = search
        self.source = source
        # the CUDA context the capped probes of this GPU type read, shared by the family's
        # searches: once one has run, the others' first probes are estimated with it
        self.context = context if context is not None else []
        self.seeded = False
        self.threshold_gib: float | None = None  # the cap: where a reserved peak runs out
        self.misses = {"over": 0, "under": 0}
        self.steered = 0
        search.steer = self._steer
        stored = search.stored

        def stored_noting_cap(key: str) -> str | None:  # a resumed probe's cap steers too
            status = stored(key)
            if status is not None and search.stored_metrics is not None:
                self._note_cap(search.stored_metrics(key))
            return status

        search.stored = stored_noting_cap

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
        self._note_cap(metrics)  # before the search folds it in and asks the steer
        self.search.tell(trial, status, metrics)

    # -- seeding and steering -------------------------------------------------------------------
    def _seed(self) -> None:
        self.seeded = True
        seen, guide = self.source.guide.seen, self.search.guide
        for units, peak in seen.peaks.items():
            guide.peaks.setdefault(units, peak)
        guide.source = CAPPED_SOURCE
        if self.threshold_gib is None and seen.shown_gib:
            context = self.context[-1] if self.context else CONTEXT_GUESS_GIB
            try:
                capacity = self.search.first.config.capacity_gb
                cap = allocator_cap(capacity, seen.shown_gib * GIB, context * GIB)
                self.threshold_gib = cap.cap_bytes / GIB
            except ValueError:  # bigger than the card: the trial itself refuses it
                pass
        if self.search.not_run or self.search.probes:
            return
        first = self._steer(0, None, self.search.limit)
        if first is not None:
            self.search.next_batch = first

    def _note_cap(self, metrics: dict[str, Any] | None) -> None:
        metrics = metrics or {}
        cap, context = _positive(metrics.get("capacity_cap_gib")), metrics.get("cuda_context_gib")
        if cap is not None:
            self.threshold_gib = cap
        if (context := _positive(context)) is not None:
            self.context.append(context)

    def _limit(self) -> float | None:
        if self.threshold_gib is None:
            return None
        return self.search.guide.limit_units(self.threshold_gib)

    def _steer(self, lo: int, hi: int | None, limit: int) -> int | None:
        """The next probe strictly inside (lo, hi or past the limit), or None (bisect)."""
        upper = hi if hi is not None else limit + 1
        s = self._limit()
        if upper - lo <= 1 or s is None or self.steered >= MAX_STEERED:
            return None
        nxt = math.floor(s)
        if nxt <= lo:
            nxt = lo + 2 ** self.misses["under"]
            self.misses["under"] += 1
        elif nxt >= upper:
            nxt = upper - 2 ** self.misses["over"]
            self.misses["over"] += 1
        nxt = min(max(nxt, lo + 1), upper - 1)
        self.steered += 1
        return nxt

    def _predict(self, trial: PlannedTrial) -> None:
        """What the seeded model said as ``trial`` was asked (where the search's own guide, with
        no capped reading yet, says nothing)."""
        s, search = self._limit(), self.search
        peak = search.guide.predicted_peak_gib(search._units(trial))
        if trial.key in search.predictions or s is None or peak is None:
            return
        search.predictions[trial.key] = {
            search.limit_field: max(math.floor(s), 0) * search.unit,
            "predicted_peak_gib": peak,
            "predicted_peak_source": CAPPED_SOURCE,
        }


def _positive(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None
