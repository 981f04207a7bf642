"""Where a max-batch search should probe next, from the peak memory of the probes that fit.

Pure: no Ray, no torch, no clock. At a fixed shape peak memory is close to a straight line in
the batch (sweep/results/memory_model.py), so once two batches have fitted, the line says where
the card runs out: the search surveys a far batch where the line extrapolates far, then
bisects only the few batches around the line's limit instead of doubling past it and bisecting
the whole way back.

The guide only proposes batches strictly between the largest batch that fitted and the smallest
that did not (or the batch limit), so the search stays exact whatever the memory readings say;
wrong readings cost probes, never the answer. Without readings (the CPU, a resumed search's
stored probes) it proposes nothing and the search doubles and bisects as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sweep.results.memory_model import GIB, MemoryFit, fit_memory

# (peak metric, where that peak sits against device_total_gib when the next batch would not
# fit, GiB). NVML's used memory holds the CUDA context and can pass torch's device total; torch's
# reserved peak leaves the context out (the measured offsets: docs/DECISIONS.md, "Memory-guided
# max-batch and the memory model").
PEAK_SOURCES: tuple[tuple[str, float], ...] = (
    ("nvml_peak_used_gib", 0.5),
    ("peak_reserved_gib", -0.85),
)
# A capped run (capacity_gb) reads its reserved peak against the cap: the total it reads is the
# cap less this source's offset, so that its threshold is the cap itself.
CAPPED_SOURCE = "peak_reserved_gib"
# Where the card runs out is known to about this much either side of the source's offset, GiB;
# the batches the band leaves are bisected (docs/DECISIONS.md, "the max-batch guide's band and
# survey").
THRESHOLD_BAND_GIB = 0.2
# A line through small batches extrapolated far is rough (docs/DECISIONS.md, same entry). When
# the limit it predicts is more than SURVEY_RATIO times the largest batch that fitted, the next
# probe surveys SURVEY_AT of the way there (a far point, which still fits unless the line is that
# far off), and the line through it decides the rest.
SURVEY_RATIO = 3.0
SURVEY_AT = 0.8
# The probe above the band starts one batch past it and, each time it still fits, reaches
# BRACKET_GIB x 2^k further.
BRACKET_GIB = 0.1
# A jump that did not fit (the line overshot) is retried this share below the batch that failed.
BACKOFF = 0.05
# Guided probes per search; then plain doubling and bisection (a bound for odd memory curves).
MAX_GUIDED = 8


@dataclass(frozen=True)
class Reading:
    """One probe's memory: its peak and the card's total, GiB, and the peak's metric name."""

    peak_gib: float
    total_gib: float
    source: str


def reading_of(metrics: dict[str, Any] | None, source: str | None = None) -> Reading | None:
    """The memory reading in a probe's metrics: ``source``'s peak when given, else the first
    of PEAK_SOURCES present; None without a finite peak and device total."""
    metrics = metrics or {}
    total = _finite(metrics.get("device_total_gib"))
    cap = _finite(metrics.get("capacity_cap_gib"))
    if cap is not None:  # capacity_gb: the allocator runs out at its cap, whatever NVML sees
        total = cap - dict(PEAK_SOURCES)[CAPPED_SOURCE]
    if total is None or total <= 0:
        return None
    for name, _ in PEAK_SOURCES:
        if (source is not None and name != source) or (cap is not None and name != CAPPED_SOURCE):
            continue
        peak = _finite(metrics.get(name))
        if peak is not None and peak > 0:
            return Reading(peak, total, name)
    return None


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class SeenPeaks:
    """What an uncapped search hands the capped searches of its family (sweep/engine/seeded.py),
    whatever source its own guide follows: every fitting probe's allocated peak (what the step
    itself holds, the same under any cap), the card's shown total, and per probe the room the
    allocator had (the shown total less what is held outside it: NVML's peak less the reserved
    one and less the driver's own region where NVML's total was read, where both peaks were)."""

    def __init__(self) -> None:
        self.allocated: dict[int, float] = {}  # units -> peak_allocated_gib
        self.reserved: dict[int, float] = {}  # units -> peak_reserved_gib
        self.room: dict[int, float] = {}  # units -> GiB the allocator could reach
        self.outside: dict[int, float] = {}  # units -> GiB held outside it, where NVML was read
        self.shown_gib: float | None = None

    def add(self, units: int, metrics: dict[str, Any] | None) -> None:
        metrics = metrics or {}
        if metrics.get("capacity_cap_gib") is not None:
            return  # a capped probe: its family is seeded from the uncapped one only
        allocated = _finite(metrics.get("peak_allocated_gib"))
        shown = _finite(metrics.get("device_total_gib"))
        if allocated is None or allocated <= 0 or shown is None or shown <= 0:
            return
        self.allocated[units], self.shown_gib = allocated, shown
        nvml, reserved = (
            _finite(metrics.get("nvml_peak_used_gib")),
            _finite(metrics.get(CAPPED_SOURCE)),
        )
        if reserved is not None and reserved > 0:
            self.reserved[units] = reserved
        # NVML counts as used the region the driver keeps for itself (its total less CUDA's:
        # 0.60 GiB on the H200, 0.46 on the H100), which the card's shown total leaves out
        # already; where the record carries NVML's total, that region is not "outside" too
        driver = max((_finite(metrics.get("nvml_total_gib")) or shown) - shown, 0.0)
        outside = nvml - reserved - driver if nvml is not None and reserved is not None else None
        if outside is not None and outside > 0:
            self.outside[units] = outside
        else:  # unread: where the reserved peak's threshold sits
            outside = -dict(PEAK_SOURCES)[CAPPED_SOURCE]
        self.room[units] = shown - outside


class MemoryGuide:
    """The fitted probes of one search, and the next batch they point to."""

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}  # batch -> peak GiB, of the batches that fitted
        self.total_gib: float | None = None
        self.source: str | None = None
        self.guided = 0  # guided probes proposed so far
        self.bracket_fits = 0  # probes above the predicted limit that still fitted
        self.backed_off = False
        self.surveyed = False
        self._bracket: int | None = None  # the batch last proposed above the predicted limit
        self.seen = SeenPeaks()

    def add(self, batch: int, metrics: dict[str, Any] | None) -> Reading | None:
        """Fold a fitting probe's metrics in; returns the reading used (None: none usable)."""
        self.seen.add(batch, metrics)
        r = reading_of(metrics, self.source)
        if r is None:
            return None
        self.source = r.source
        self.total_gib = r.total_gib
        self.peaks[batch] = r.peak_gib
        if batch == self._bracket:
            self.bracket_fits += 1
        return r

    def fit(self) -> MemoryFit | None:
        fit = fit_memory([(b, p * GIB) for b, p in self.peaks.items()])
        return fit if fit is not None and fit.slope_bytes_per_seq > 0 else None

    def _line(self) -> tuple[float, float, float] | None:
        """(slope GiB per sequence, the threshold peak, the largest fitted batch's peak)."""
        fit = self.fit()
        if fit is None or self.total_gib is None:
            return None
        offset = dict(PEAK_SOURCES)[self.source]
        return fit.slope_bytes_per_seq / GIB, self.total_gib + offset, max(self.peaks.values())

    def limit_units(self, threshold_gib: float) -> float | None:
        """Where the line through the fitted batches reaches ``threshold_gib`` (real)."""
        fit = self.fit()
        if fit is None:
            return None
        return (threshold_gib * GIB - fit.intercept_bytes) / fit.slope_bytes_per_seq

    def predicted_limit(self, lo: int) -> int | None:
        """The largest batch the line says fits, walked from ``lo`` (the largest that did)."""
        line = self._line()
        if line is None or lo not in self.peaks:
            return None
        slope, threshold, _ = line
        return lo + math.floor((threshold - self.peaks[lo]) / slope)

    def predicted_peak_gib(self, batch: int) -> float | None:
        fit = self.fit()
        return None if fit is None else fit.predict_bytes(batch) / GIB

    def next_batch(self, lo: int, hi: int | None, limit: int) -> int | None:
        """The next probe (None: let the search double or bisect). ``lo``: the largest batch that
        fitted, ``hi``: the smallest that did not (None: none yet), ``limit``: the largest asked.

        In order: a survey probe where the line extrapolates far (SURVEY_RATIO); then the
        batches the line leaves for the limit (the threshold anywhere in its band, walked from
        the largest fit's reading) are split, each probe halving them; where the line says the
        limit is above what failed it backs off once below the failure, and where it says the
        limit is below what fitted it reaches past, further each time. Proposals stay strictly
        inside (lo, hi), so the answer stays the search's own."""
        line = self._line()
        if line is None or lo not in self.peaks or self.guided >= MAX_GUIDED:
            return None
        slope, threshold, _ = line
        p_lo = self.peaks[lo]
        upper = hi if hi is not None else limit + 1

        def fits_up_to(peak_gib: float) -> int:
            return lo + math.floor((peak_gib - p_lo) / slope)

        low = fits_up_to(threshold - THRESHOLD_BAND_GIB)
        high = fits_up_to(threshold + THRESHOLD_BAND_GIB)
        # the answer: known in [lo, upper - 1], by the line in [low, high]
        a, b = max(lo, low), min(upper - 1, high)
        nxt = None
        if not self.surveyed and high > SURVEY_RATIO * lo:
            self.surveyed = True
            nxt = lo + math.floor(SURVEY_AT * (min(low, upper - 1) - lo))
        elif a <= b:  # split the batches the line leaves; a fit moves lo up, a failure upper down
            nxt = (a + b + 2) // 2
            if nxt >= upper:
                nxt = b
            nxt = max(nxt, lo + 1)
        elif low > upper - 1:  # the line says fits past what failed: it overshot, once
            if not self.backed_off:
                self.backed_off = True
                nxt = upper - max(1, math.ceil(BACKOFF * (upper - lo)))
        else:  # the line says fails below what fitted: reach past it, further each time
            reach = BRACKET_GIB * 2**self.bracket_fits
            nxt = self._bracket = min(lo + max(1, math.ceil(reach / slope)), limit)
        if nxt is None or not lo < nxt < upper:
            return None
        self.guided += 1
        return nxt
