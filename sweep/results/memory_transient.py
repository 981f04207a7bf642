"""The memory model near a card's limit: what the step allocates, plus a transient the allocator
must still place at the peak.

A card that runs short makes PyTorch's allocator free its cache and retry, so whether a step fits
is not told by its reserved peak (uncapped it holds cache: up to 16 GiB above the allocated peak
on the H100, 2026-12-07) but by its allocated peak plus what the allocator must still find room
for then (the fp32 logits of a causal-LM loss, blocks split by size): the step fits where

    allocated(n) + k * n <= room

``n``: the step's size on one axis (tokens, or a search's units of 128 tokens or sequences);
``room``: what the allocator may reach (a capped card's cap; the card's shown total less what the
process holds outside the allocator). ``allocated(n)`` is the broken line through the measured
allocated peaks (the same on every card: identical capped and uncapped on the H100), its end
segments carried on; ``k`` is bounded by every step measured near a limit: one that fitted,
k <= (room - allocated) / n; one that did not, k > (room - allocated(n)) / n.

Used by the atlas's capped searches (sweep/engine/seeded.py, in search units). Pure: no torch,
no pandas.
"""

from __future__ import annotations

import math


class TransientModel:
    """The broken line of allocated peaks (``points``: n -> GiB) and the transient ``k`` (GiB per
    unit of n) between the bounds the measured steps set (``k_low`` < k <= ``k_high``)."""

    def __init__(self) -> None:
        self.points: dict[float, float] = {}  # n -> allocated peak, GiB
        self.k = 0.0
        self.k_low, self.k_high = 0.0, math.inf

    def add_point(self, n: float, allocated: float) -> None:
        """A measured allocated peak (the larger where two steps of the same n differ)."""
        self.points[n] = max(allocated, self.points.get(n, allocated))

    def fitted(self, n: float, allocated: float, room: float) -> None:
        """A step of ``n`` that fitted ``room`` with this allocated peak."""
        self.add_point(n, allocated)
        self.k_high = min(self.k_high, (room - allocated) / n)
        self._settle()

    def failed(self, n: float, room: float) -> None:
        """A step of ``n`` that did not fit ``room`` (the line says what it would allocate)."""
        if (model := self.allocated(n)) is not None:
            self.k_low = max(self.k_low, (room - model) / n)
            self._settle()

    def _settle(self) -> None:
        k = max(self.k, self.k_low * (1 + 1e-9) + 1e-12) if self.k_low > 0 else self.k
        self.k = max(min(k, self.k_high), 0.0)

    @property
    def bracketed(self) -> bool:
        """Whether a step that did not fit bounds k from below (a limit was found)."""
        return self.k_low > 0

    def allocated(self, n: float) -> float | None:
        """The allocated peak at ``n`` by the points' broken line (its end segments carried on
        beyond them); None with fewer than two points."""
        xs = sorted(self.points)
        if len(xs) < 2:
            return None
        i = next((j for j in range(1, len(xs) - 1) if xs[j] >= n), len(xs) - 1)
        x0, x1 = xs[i - 1], xs[i]
        slope = max((self.points[x1] - self.points[x0]) / (x1 - x0), 0.0)
        return self.points[x0] + slope * (n - x0)

    def needs(self, n: float) -> float | None:
        """What a step of ``n`` needs the allocator to reach, GiB: allocated + k * n."""
        a = self.allocated(n)
        return None if a is None else a + self.k * n

    def limit(self, room: float, axis_limit: int, step: int = 1) -> int | None:
        """The largest multiple of ``step`` up to ``axis_limit`` the model fits in ``room``: 0
        where not even ``step`` fits; None without a model."""
        if self.allocated(step) is None:
            return None

        def fits(units: int) -> bool:
            return self.needs(units * step) <= room  # type: ignore[operator]

        lo, hi = 1, axis_limit // step
        if hi < 1 or not fits(1):
            return 0
        if fits(hi):
            return hi * step
        while hi - lo > 1:  # fits(lo), not fits(hi)
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo * step
