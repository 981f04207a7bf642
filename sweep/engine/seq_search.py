"""The max-seq schedule: the longest sequence that fits at one batch, to SEQ_RESOLUTION tokens.

``SeqSearch`` is ``BatchSearch`` (sweep/engine/schedule.py) on another axis: it counts in units of
SEQ_RESOLUTION tokens, doubles from the first length until one does not fit, then bisects; a
configuration whose fixed memory alone exceeds its card is answered without a run. Its guide is
the memory model in sequence length (sweep/results/memory_surface.py): once two lengths have
fitted, each probe goes where the fitted curve meets the card's threshold (where the attention
kernel materialises the scores, two points give the steepest curve through them, whose limit is
a lower bound, and a third refits the quadratic term), and a probe that
misses moves the next one twice as far each time (1, 2, 4... units), so that a wrong curve costs
a few probes, never the answer. Pure: no Ray, no torch, no clock.
"""

from __future__ import annotations

import math
from typing import Any

from sweep.engine.memory_guide import PEAK_SOURCES, SeenPeaks, reading_of
from sweep.engine.schedule import BatchSearch, MetricsLookup, StoredLookup
from sweep.plan.grid import SEQ_RESOLUTION, PlannedTrial
from sweep.results.memory_model import GIB
from sweep.results.memory_surface import SurfaceFit, fit_surface, materialises_attention

# Guided probes per search; then plain doubling and bisection (a bound for odd memory curves).
MAX_GUIDED = 6


class SeqGuide:
    """The fitted lengths of one search (units of SEQ_RESOLUTION) and the next they point to;
    the interface MemoryGuide offers BatchSearch."""

    def __init__(self, batch: int, quadratic: bool) -> None:
        self.batch = batch
        self.quadratic = quadratic
        self.peaks: dict[int, float] = {}  # units -> peak GiB, of the lengths that fitted
        self.total_gib: float | None = None
        self.source: str | None = None
        self.guided = 0
        self.misses = {"over": 0, "under": 0}  # guided probes that failed / fell short
        self.seen = SeenPeaks()

    def add(self, units: int, metrics: dict[str, Any] | None):
        self.seen.add(units, metrics)
        r = reading_of(metrics, self.source)
        if r is None:
            return None
        self.source, self.total_gib = r.source, r.total_gib
        self.peaks[units] = r.peak_gib
        return r

    def fit(self) -> SurfaceFit | None:
        points = [(self.batch, u * SEQ_RESOLUTION, p * GIB) for u, p in self.peaks.items()]
        if self.quadratic and len(points) == 2:
            fit = _steepest(points)
        else:
            fit = fit_surface(points, self.quadratic and len(points) >= 3)
        grows = fit is not None and (fit.per_token_bytes > 0 or fit.attention_bytes > 0)
        return fit if grows else None

    def _limit_units(self) -> float | None:
        """Where the fitted curve meets the card's threshold, in units (real)."""
        if self.total_gib is None:
            return None
        return self.limit_units(self.total_gib + dict(PEAK_SOURCES)[self.source])

    def limit_units(self, threshold_gib: float) -> float | None:
        """Where the fitted curve reaches ``threshold_gib``, in units (real)."""
        fit = self.fit()
        s = None if fit is None else fit.seq_for(self.batch, threshold_gib * GIB)
        return None if s is None else s / SEQ_RESOLUTION

    def predicted_limit(self, lo: int) -> int | None:
        s = self._limit_units()
        return None if s is None else math.floor(s)

    def predicted_peak_gib(self, units: int) -> float | None:
        fit = self.fit()
        return None if fit is None else fit.predict_bytes(self.batch, units * SEQ_RESOLUTION) / GIB

    def next_batch(self, lo: int, hi: int | None, limit: int) -> int | None:
        """The next length in units (None: let the search double or bisect): where the curve
        meets the threshold, strictly inside (lo, hi); where it says the limit is at or below
        what fitted, 1, 2, 4... units above it; at or above what failed, as far below it."""
        s = self._limit_units()
        if s is None or lo not in self.peaks or self.guided >= MAX_GUIDED:
            return None
        upper = hi if hi is not None else limit + 1
        nxt = math.floor(s)
        if nxt <= lo:
            nxt = lo + 2 ** self.misses["under"]
            self.misses["under"] += 1
        elif nxt >= upper:
            nxt = upper - 2 ** self.misses["over"]
            self.misses["over"] += 1
        nxt = min(max(nxt, lo + 1), upper - 1)
        if not lo < nxt < upper:
            return None
        self.guided += 1
        return nxt


def _steepest(points: list[tuple[int, int, float]]) -> SurfaceFit | None:
    """Through two points of a curve with a quadratic term, the curve all quadratic (no linear
    term): it grows fastest of those through them, so its limit is at or below the true one (a
    line through them would overshoot it), and the probe there adds a third point near it."""
    (b, s1, p1), (_, s2, p2) = sorted(points, key=lambda p: p[1])
    if s2 == s1:
        return None
    c = (p2 - p1) / (s2 * s2 - s1 * s1)
    return SurfaceFit(p1 - c * s1 * s1, 0.0, c / b, 2, b * s2, 0.0)


class SeqSearch(BatchSearch):
    """One group of a max-seq sweep: the longest sequence that fits at the group's batch, up to
    ``limit_tokens`` (seq_limit, else the model's maximum positions), exact to SEQ_RESOLUTION.
    The answer row carries ``max_seq_len`` (0: not even SEQ_RESOLUTION tokens fit)."""

    unit = SEQ_RESOLUTION
    answer_metric = "max_seq_len"
    limit_field = "predicted_limit_seq"

    def __init__(
        self,
        first: PlannedTrial,
        stored: StoredLookup,
        limit_tokens: int,
        stored_metrics: MetricsLookup | None = None,
    ) -> None:
        super().__init__(first, stored, limit_tokens // SEQ_RESOLUTION, 0.0, stored_metrics)
        start = max(first.config.seq_len // SEQ_RESOLUTION, 1)
        self.next_batch = min(start, self.limit)
        self.guide = SeqGuide(
            first.config.batch_size, materialises_attention(first.config.attention)
        )

    def _probe(self, n: int) -> PlannedTrial:
        t = self.first
        return PlannedTrial(t.config.replace(seq_len=n * SEQ_RESOLUTION), t.gpu_type, t.repeat)

    def _units(self, t: PlannedTrial) -> int:
        return t.config.seq_len // SEQ_RESOLUTION
