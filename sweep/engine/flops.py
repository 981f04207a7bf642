"""The FLOPs of one sequence per workload shape, learned from the sweep's ok trials and handed to
the next trial of the same shape in its request (``TrialRequest.flops_per_sequence``): that
trial scales the count to its batch instead of counting again (counting takes a forward and a
backward under torch's FLOP counter; the count is exactly linear in the batch, since it is taken
on a batch of one). Pure: the searcher feeds it records and asks it for requests.

A max-seq search asks a new length with every probe. A decoder's FLOPs per sequence are exactly
c0 + c1*s + c2*s^2 in the length s (sweep/trial/workload.py, ``_count_by_length``): once
QUADRATIC_POINTS lengths of a shape were counted and every one of them lies on the quadratic
through three of them (in integers: the fourth checks the other three), any other length of that
shape is that quadratic, handed on as an earlier trial's count is. A shape whose counts are not
one quadratic keeps counting.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from sweep.plan.config import shape_fields
from sweep.results.record import OK

QUADRATIC_POINTS = 4  # three fix the quadratic, the others must lie on it


def shape_key(config: dict[str, Any]) -> tuple:
    """The workload without its batch size: trials equal here do the same work per sequence."""
    return tuple((k, config.get(k)) for k in shape_fields())


def length_key(config: dict[str, Any]) -> tuple:
    """``shape_key`` without the sequence length: the counts of one shape at every length."""
    return tuple(kv for kv in shape_key(config) if kv[0] != "seq_len")


def quadratic_at(points: dict[int, int], s: int) -> int | None:
    """The value at ``s`` of the quadratic through three of ``points`` (length -> count), where
    every point lies on it and the value is an integer; None otherwise."""
    if len(points) < 3:
        return None
    (x0, y0), (x1, y1), (x2, y2) = sorted(points.items())[-3:]

    def at(x: int) -> Fraction:  # Lagrange's form, exact in fractions
        return (
            Fraction(y0 * (x - x1) * (x - x2), (x0 - x1) * (x0 - x2))
            + Fraction(y1 * (x - x0) * (x - x2), (x1 - x0) * (x1 - x2))
            + Fraction(y2 * (x - x0) * (x - x1), (x2 - x0) * (x2 - x1))
        )

    if any(at(x) != y for x, y in points.items()):
        return None
    value = at(s)
    return int(value) if value.denominator == 1 and value > 0 else None


class FlopsByShape:
    """FLOPs per sequence by ``length_key``, then by sequence length."""

    def __init__(self) -> None:
        self.by_length: dict[tuple, dict[int, int]] = {}

    def remember(self, config: dict[str, Any], status: str, metrics: dict | None) -> None:
        """Keep an ok trial's count per sequence (only an exact multiple of its batch)."""
        flops = (metrics or {}).get("flops_per_step")
        batch = config.get("batch_size")
        if status == OK and flops and batch and int(flops) % int(batch) == 0:
            points = self.by_length.setdefault(length_key(config), {})
            points[config.get("seq_len")] = int(flops) // int(batch)

    def per_sequence(self, config: dict[str, Any]) -> int | None:
        points = self.by_length.get(length_key(config), {})
        seq = config.get("seq_len")
        if seq in points:
            return points[seq]
        if len(points) < QUADRATIC_POINTS or not isinstance(seq, int):
            return None
        return quadratic_at(points, seq)
