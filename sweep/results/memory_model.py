"""The memory model: peak memory against batch size at a fixed shape, and from it the largest
batch that fits a card of a given size.

A training step's memory is weights, gradients and optimizer state (fixed) plus activations
(linear in the batch), so peak memory is close to a straight line in the batch; the line through
a group's ok batches predicts its limit on any card. The peak is NVML's (the CUDA context
included: what a card must hold), torch's reserved peak where NVML was not read (the CPU, rows
without NVML), and the figures say which. Pure: no torch, no pandas in the fit itself.

Card sizes are given as sold ("80 GB") and taken as binary: GPU memory is sized in GiB (an
A100-40GB reports 40,960 MiB), so a card of N GB holds N GiB here. A card shows a little less than
that to programs (an H200 "141 GB" showed 139.8 GiB), which the margin covers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

GIB = 2**30
CAPACITIES_GB = (16, 24, 32, 40, 48, 80, 94, 141)
MARGIN = 0.02  # a predicted batch keeps this share of the card free: never above the real limit
PEAK_SOURCES = ("nvml_peak_used_gib", "peak_reserved_gib")  # first present wins, per group


def parse_capacities(values: Any) -> tuple[float, ...]:
    """Card sizes in GB from a list (or a comma-separated string); one ValueError naming the
    bad entry otherwise."""
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    if not values:
        raise ValueError("capacities: give at least one card size in GB")
    out = []
    for v in values:
        try:
            gb = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"capacities: {str(v)[:40]!r} is not a number of GB") from None
        if not 0 < gb < 1e6:  # nan and inf fail too
            raise ValueError(f"capacities: {gb!r} GB is not a positive card size")
        out.append(gb)
    return tuple(out)


@dataclass(frozen=True)
class MemoryFit:
    """peak_bytes = intercept_bytes + slope_bytes_per_seq * batch, fitted on ``n_points`` ok
    batches up to ``measured_up_to``; ``max_error_pct``: the largest |fit - measured| / measured
    over those points, %."""

    slope_bytes_per_seq: float
    intercept_bytes: float
    n_points: int
    measured_up_to: int
    max_error_pct: float

    def predict_bytes(self, batch: int) -> float:
        return self.intercept_bytes + self.slope_bytes_per_seq * batch

    def largest_batch(self, capacity_bytes: float, margin: float = MARGIN) -> int | None:
        """The largest batch whose predicted peak fits ``capacity_bytes`` less ``margin`` of it;
        0 when not even one sequence fits; None when memory does not grow with the batch."""
        if self.slope_bytes_per_seq <= 0:
            return None
        room = capacity_bytes * (1.0 - margin) - self.intercept_bytes
        return max(math.floor(room / self.slope_bytes_per_seq), 0)


def fit_memory(points: list[tuple[int, float]]) -> MemoryFit | None:
    """Least squares over (batch, peak bytes) of one group's batches that fit. None with fewer
    than two distinct batch sizes: one point gives no slope, and no prediction is better than a
    guess."""
    pts = [(int(b), float(p)) for b, p in points if p is not None and math.isfinite(float(p))]
    if len({b for b, _ in pts}) < 2:
        return None
    n = len(pts)
    xm = sum(b for b, _ in pts) / n
    ym = sum(p for _, p in pts) / n
    sxx = sum((b - xm) ** 2 for b, _ in pts)
    slope = sum((b - xm) * (p - ym) for b, p in pts) / sxx
    intercept = ym - slope * xm
    err = max((abs(intercept + slope * b - p) / p * 100.0 for b, p in pts if p > 0), default=0.0)
    return MemoryFit(slope, intercept, n, max(b for b, _ in pts), err)


def fit_rows(rows: list[dict[str, Any]]) -> tuple[MemoryFit | None, str | None]:
    """The fit of one group's ok rows (flat result rows: batch_size and the peak metrics), from
    the first peak source every row has; (fit, the source's metric name), (None, None) when no
    source is complete. One source for all points: NVML's peak holds the CUDA context, torch's
    reserved peak does not, so a line through a mix of them would be wrong."""
    for source in PEAK_SOURCES:
        points = [(r["batch_size"], r.get(source)) for r in rows]
        if points and all(_number(p) for _, p in points):
            return fit_memory([(b, float(p) * GIB) for b, p in points]), source
    return None, None


def _number(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def predicted_limits(frame, capacities_gb: tuple[float, ...] = CAPACITIES_GB, margin=MARGIN):
    """For every group (a workload but its batch size, on one GPU) with two or more ok batches:
    the predicted largest batch per card size, with the fit's error on the measured points.

    ``frame``: a results frame (sweep.results.frame). One row per group and card size, columns:
    the group's workload fields and ``gpu``, ``capacity_gb``, ``predicted_max_batch``,
    ``fit_max_error_pct``, ``fit_points``, ``measured_up_to_batch``, ``peak_source``."""
    import pandas as pd

    from sweep.plan.config import shape_fields
    from sweep.results.record import OK

    # capped rows (capacity_gb) measure the same workload's memory: one fit with the others
    keys = [f for f in shape_fields() if f in frame.columns and f != "capacity_gb"]
    keys.append("gpu")
    columns = keys + [
        "capacity_gb",
        "predicted_max_batch",
        "fit_max_error_pct",
        "fit_points",
        "measured_up_to_batch",
        "peak_source",
    ]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    ok = frame[frame["status"] == OK].copy()
    ok["gpu"] = ok["gpu"].fillna(ok["gpu_type"]).fillna("cpu")
    out = []
    for group, g in ok.groupby(keys, dropna=False, sort=True):
        fit, source = fit_rows(g.to_dict("records"))
        if fit is None:
            continue
        for cap in capacities_gb:
            out.append(
                dict(
                    zip(keys, group, strict=True),
                    capacity_gb=cap,
                    predicted_max_batch=fit.largest_batch(cap * GIB, margin),
                    fit_max_error_pct=fit.max_error_pct,
                    fit_points=fit.n_points,
                    measured_up_to_batch=fit.measured_up_to,
                    peak_source=source,
                )
            )
    return pd.DataFrame(out, columns=columns)


@dataclass(frozen=True)
class Cap:
    """The allocator cap for an emulated card, bytes. ``fraction``: of the running card's
    shown total (set_per_process_memory_fraction's argument)."""

    cap_bytes: float
    fraction: float
    context_bytes: float
    driver_reserved_bytes: float  # of the emulated card
    card_gb: float  # the running card's size as sold


# What PyTorch's caching allocator says when it runs short (c10/cuda/CUDACachingAllocator.cpp,
# torch 2.11): "Tried to allocate 23.97 GiB. ... Of the allocated memory 53.82 GiB is allocated
# by PyTorch, and 760.90 MiB is reserved by PyTorch but unallocated." -> the record's metrics.
_SIZE = r"([0-9.]+) (B|KiB|MiB|GiB|TiB)"
_OOM_FIGURES = (
    ("oom_request_gib", re.compile(r"Tried to allocate " + _SIZE)),
    ("oom_allocated_gib", re.compile(_SIZE + r" is allocated by PyTorch")),
    ("oom_cached_gib", re.compile(_SIZE + r" is reserved by PyTorch but unallocated")),
)
_UNIT = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def oom_figures(text: str) -> dict[str, float]:
    """The sizes an out-of-memory message states, GiB: what was asked for, what PyTorch had
    allocated and what it held reserved but unallocated (cached) then; those it does not state
    are left out (a cuBLAS or bitsandbytes failure states none)."""
    out = {}
    for name, pattern in _OOM_FIGURES:
        if m := pattern.search(text):
            out[name] = float(m.group(1)) * _UNIT[m.group(2)] / 2**30
    return out


def fragmented(request_gib, cached_gib):
    """An out-of-memory row that failed by fragmentation, not capacity: the allocation PyTorch
    could not make (``oom_request_gib``) was no larger than what it held reserved but unallocated
    (``oom_cached_gib``), so the memory was there, split. Scalars or pandas Series (NaN: False).

    Near a card's limit such a failure comes and goes with the allocator's history: on the H100
    (2026-12-07, benchmarks/results/2026-12-07-h100-b) Llama-3.2-1B LoRA + checkpointing ran out
    of memory at 48,128 tokens (23.00 GiB asked, 23.29 GiB reserved free) and fitted 49,792; a
    capped run fitted both. So what fits is not monotone in the length there, and a longer fit
    does not promise a shorter one. One step past a limit most failures read so too (8 of the 10
    H100 atlas capped searches whose failure ran: the step before's freed logits, split), so the
    label says how a run failed, not that a longer length would fit."""
    return cached_gib >= request_gib


def card_size_gb(shown_bytes: float) -> float:
    """The running card's size as sold: the smallest known size (CAPACITIES_GB) at or above
    what it shows; what it shows where it is bigger than every known size."""
    shown_gib = shown_bytes / GIB
    return next((float(c) for c in sorted(CAPACITIES_GB) if c >= shown_gib), shown_gib)


def allocator_cap(capacity_gb: float, shown_bytes: float, context_bytes: float) -> Cap:
    """What a card of ``capacity_gb`` leaves to the allocator, emulated on a card that shows
    ``shown_bytes`` in all and ``context_bytes`` in use right after CUDA's start. Raises
    ValueError naming both sizes where the emulated card is bigger than the running one."""
    card = card_size_gb(shown_bytes)
    if capacity_gb > card:
        raise ValueError(
            f"capacity_gb: a {capacity_gb:g} GB card cannot be emulated on this {card:g} GB one "
            "(the cap only takes memory away)"
        )
    shown_share = shown_bytes / (card * GIB)  # what the driver leaves of a card, by its share
    shown = capacity_gb * GIB * shown_share
    cap = shown - context_bytes
    return Cap(cap, cap / shown_bytes, context_bytes, capacity_gb * GIB - shown, card)
