"""The memory model in batch and sequence length: one workload's peak memory over both.

    peak = fixed + a * b * s + c * b * s^2

``fixed``: weights, gradients, optimizer state and the context; ``a``: what each token holds
(activations, logits); ``c``: the attention scores where the kernel materialises them (eager
attention: a b x heads x s x s tensor per layer; sdpa and flash attention never hold it, so c is
0 there). Fitted per workload (the configuration without batch and sequence length) by least
squares over its measured points, with its largest miss. It predicts the largest batch at a
sequence length and the longest sequence at a batch for any card size, a MARGIN of the card kept
free as the batch model does (sweep/results/memory_model.py), and says when a prediction
extrapolates: more than EXTRAPOLATION_RATIO times the most tokens of a measured step.

Pure: no torch; numpy's least squares. Sizes in bytes; cards in GB as sold, taken as GiB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sweep.results.memory_model import GIB, MARGIN, PEAK_SOURCES, _number

# A prediction at more tokens per step than this many times the most measured is flagged.
EXTRAPOLATION_RATIO = 2.0
# Attention kernels that materialise the b x heads x s x s scores (transformers' eager path).
MATERIALISING_ATTENTION = ("eager",)


def materialises_attention(attention: str | None) -> bool:
    """Whether the kernel holds the full attention matrix (a quadratic term in s)."""
    return attention in MATERIALISING_ATTENTION


@dataclass(frozen=True)
class Prediction:
    """A predicted limit (None: memory does not grow, or the inputs give none) and whether it
    lies more than EXTRAPOLATION_RATIO beyond the measured tokens per step."""

    value: int | None
    extrapolated: bool


@dataclass(frozen=True)
class SurfaceFit:
    """peak_bytes = fixed_bytes + per_token_bytes * b * s + attention_bytes * b * s^2, fitted on
    ``n_points`` measured steps of up to ``max_tokens`` tokens; ``max_error_pct``: the largest
    |fit - measured| / measured over them, %."""

    fixed_bytes: float
    per_token_bytes: float
    attention_bytes: float
    n_points: int
    max_tokens: int
    max_error_pct: float

    def predict_bytes(self, batch: float, seq: float) -> float:
        return self.fixed_bytes + batch * seq * (self.per_token_bytes + self.attention_bytes * seq)

    def extrapolates(self, batch: int, seq: int) -> bool:
        return batch * seq > EXTRAPOLATION_RATIO * self.max_tokens

    def seq_for(self, batch: int, room_bytes: float) -> float | None:
        """The (real) sequence length whose peak is ``room_bytes`` at ``batch``; None where memory
        does not grow with it; 0 where even the fixed part does not fit."""
        a, c = self.per_token_bytes * batch, self.attention_bytes * batch
        left = room_bytes - self.fixed_bytes
        if left <= 0:
            return 0.0
        if c > 0:
            return (-a + math.sqrt(a * a + 4 * c * left)) / (2 * c)
        return left / a if a > 0 else None

    def longest_seq(
        self,
        capacity_bytes: float,
        batch: int = 1,
        margin: float = MARGIN,
        step: int = 1,
        fails_at: int | None = None,
    ) -> Prediction:
        """The longest sequence, a multiple of ``step``, whose peak fits ``capacity_bytes`` less
        ``margin`` of it; below ``fails_at`` (a length measured not to fit), if given."""
        s = self.seq_for(batch, capacity_bytes * (1.0 - margin))
        if s is None:
            return Prediction(None, False)
        value = math.floor(s / step) * step
        if fails_at is not None:
            value = min(value, (fails_at - 1) // step * step)
        return Prediction(max(value, 0), self.extrapolates(batch, value))

    def largest_batch(
        self,
        capacity_bytes: float,
        seq: int,
        margin: float = MARGIN,
        fails_at: int | None = None,
    ) -> Prediction:
        """The largest batch whose peak at ``seq`` fits ``capacity_bytes`` less ``margin`` of it;
        below ``fails_at`` (a batch measured not to fit), if given."""
        per_seq = seq * (self.per_token_bytes + self.attention_bytes * seq)
        if per_seq <= 0:
            return Prediction(None, False)
        room = capacity_bytes * (1.0 - margin) - self.fixed_bytes
        value = max(math.floor(room / per_seq), 0)
        if fails_at is not None:
            value = min(value, fails_at - 1)
        return Prediction(value, self.extrapolates(value, seq))


def fit_surface(points: list[tuple[int, int, float]], quadratic: bool) -> SurfaceFit | None:
    """Least squares over (batch, seq, peak bytes) of one workload's steps that fitted, with the
    quadratic term where ``quadratic`` (materialises_attention). None where the points cannot
    tell the terms apart (fewer distinct token counts than terms): no guess."""
    import numpy as np

    pts = [(int(b), int(s), float(p)) for b, s, p in points if p is not None and math.isfinite(p)]
    terms = 3 if quadratic else 2
    # the quadratic term needs lengths apart (b*s^2 against b*s), not only token counts
    distinct = (
        len({(b * s, b * s * s) for b, s, _ in pts})
        if quadratic
        else len({b * s for b, s, _ in pts})
    )
    if distinct < terms:
        return None
    cols = [[1.0, b * s, b * s * s][:terms] for b, s, _ in pts]
    x = np.array(cols, dtype=float)
    scale = np.abs(x).max(axis=0)  # columns of ~1, ~1e5 and ~1e10: solve on equal footing
    y = np.array([p for _, _, p in pts])
    coef, *_ = np.linalg.lstsq(x / scale, y, rcond=None)
    coef = coef / scale
    fixed, per_token = float(coef[0]), float(coef[1])
    attention = float(coef[2]) if quadratic else 0.0
    fit = SurfaceFit(fixed, per_token, attention, len(pts), max(b * s for b, s, _ in pts), 0.0)
    err = max(abs(fit.predict_bytes(b, s) - p) / p * 100.0 for b, s, p in pts if p > 0)
    return SurfaceFit(fixed, per_token, attention, len(pts), fit.max_tokens, err)


def fit_surface_rows(
    rows: list[dict[str, Any]], attention: str | None = None
) -> tuple[SurfaceFit | None, str | None]:
    """The fit of one workload's ok rows (flat result rows: batch_size, seq_len and the peak
    metrics) from the first peak source every row has, as the batch model reads them;
    ``attention``: the kernel (the rows' own where not given)."""
    kernel = attention if attention is not None else (rows[0].get("attention") if rows else None)
    for source in PEAK_SOURCES:
        peaks = [r.get(source) for r in rows]
        if rows and all(_number(p) for p in peaks):
            points = [
                (r["batch_size"], r["seq_len"], float(p) * GIB)
                for r, p in zip(rows, peaks, strict=True)
            ]
            return fit_surface(points, materialises_attention(kernel)), source
    return None, None
