"""The max-seq schedule: the longest sequence that fits at one batch, to SEQ_RESOLUTION tokens.

``SeqSearch`` is ``BatchSearch`` (sweep/engine/schedule.py) on another axis: it counts in units of
SEQ_RESOLUTION tokens, doubles from the first length until one does not fit, then bisects; a
configuration whose fixed memory alone exceeds its card is answered without a run. Its guide is
the memory model in sequence length (sweep/results/memory_surface.py): once two lengths have
fitted, each probe goes where the fitted curve meets the card's threshold. Where the attention
kernel materialises the scores, two points give the steepest curve through them, whose limit is
a lower bound, and a third refits the quadratic term. Otherwise the curve is drawn near the
limit: the line through the two longest lengths, or the curve through the three longest where
it bends upwards (on the H100 the peak per token at the limit was 5-20% above its slope at 2k-4k
tokens), and a line carried past 3x the longest fit is first surveyed at 80% of the way (a
survey that does not fit: the line is far off, bisect once). A probe that misses moves the next
one 1, 2, 4... units, at least a tenth of the gap left, so that a wrong curve costs a few
probes, never the answer. Pure: no Ray, no torch, no clock.
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
# Where the line puts the limit past SURVEY_RATIO times the longest length that fitted, the next
# probe goes SURVEY_AT of the way there (a far length that still fits unless the line is that
# far off), as the max-batch guide does.
SURVEY_RATIO, SURVEY_AT = 3.0, 0.8
# The curve through three lengths is taken where its bend carries at least this share of the
# longest length's peak (less is rounding or scatter: the line through the two longest then).
BEND_MIN = 0.01
# A guided probe past the limit (or short of it) moves the next at least this share of the gap
# between what fitted and what did not.
MISS_SHARE = 0.1


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
        self.surveyed = False
        self.survey_at: int | None = None  # the survey's length, until it is known to fit
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
        elif not self.quadratic and len(points) >= 2:
            # the memory per token grows with the length (the H100, 2026-12-07: at the limit
            # 5-20% above the slope of 2k-4k tokens): the curve through the three longest lengths
            # where it bends upwards, else the line through the two longest
            longest = sorted(points, key=lambda p: p[1])
            bent = fit_surface(longest[-3:], True) if len(points) >= 3 else None
            b, s_max, p_max = longest[-1]
            ok = (
                bent is not None
                and bent.per_token_bytes > 0
                and bent.attention_bytes * b * s_max * s_max > BEND_MIN * p_max
            )
            fit = bent if ok else _secant(longest[-2:])
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
        if hi is not None and hi == self.survey_at and lo < self.survey_at:
            self.survey_at = None  # the survey did not fit: the line is far off; bisect once
            return None
        nxt = math.floor(s)
        if not self.surveyed and min(nxt, upper - 1) > SURVEY_RATIO * lo:
            # a line from short lengths carried far: first a far length that should still fit,
            # whose reading then draws the line near the limit
            self.surveyed = True
            nxt = self.survey_at = lo + math.floor(SURVEY_AT * (min(nxt, upper - 1) - lo))
        elif nxt <= lo:
            nxt = lo + max(2 ** self.misses["under"], _share(upper - lo, hi))
            self.misses["under"] += 1
        elif nxt >= upper:
            nxt = upper - max(2 ** self.misses["over"], _share(upper - lo, hi))
            self.misses["over"] += 1
        nxt = min(max(nxt, lo + 1), upper - 1)
        if not lo < nxt < upper:
            return None
        self.guided += 1
        return nxt


def _share(gap: int, hi: int | None) -> int:
    """A miss's step where both ends are known: MISS_SHARE of the gap (readings that scatter by
    a fraction of a GiB put a limit several units off; one unit at a time would walk there)."""
    return math.ceil(MISS_SHARE * gap) if hi is not None else 1


def _secant(points: list[tuple[int, int, float]]) -> SurfaceFit | None:
    """The line through two (batch, seq, peak bytes) points of one batch."""
    (b, s1, p1), (_, s2, p2) = points
    if s2 == s1:
        return None
    per_token = (p2 - p1) / (s2 - s1) / b
    return SurfaceFit(p1 - per_token * b * s1, per_token, 0.0, 2, b * s2, 0.0)


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
