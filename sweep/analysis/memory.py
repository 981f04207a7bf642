"""Memory against batch size, and the least-squares line that predicts what fits each capacity."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sweep.analysis.selection import short_gpu
from sweep.analysis.table import readable
from sweep.analysis.throughput import throughput_points
from sweep.results.memory_model import GIB, MemoryFit

# Memory metrics, most useful first. nvml_mean_used_gib exists only on the 2020 reference rows
# (a mean of nvidia-smi samples, not a peak: see ui/data/ and scripts/convert_seed_results.py).
MEMORY_METRICS = {
    "nvml_peak_used_gib": "peak device memory used, NVML (GiB)",
    "peak_reserved_gib": "peak reserved by torch (GiB)",
    "peak_allocated_gib": "peak allocated by torch (GiB)",
    "nvml_mean_used_gib": "mean device memory used, nvidia-smi (GiB, 2020 reference: not a peak)",
}
# Nominal capacities of common GPUs, in GB as marketed: 16 (V100), 24 (A10G/L4/RTX 4090),
# 40 (A100 40GB), 80 (A100/H100 80GB), 141 (H200). Drawn as GiB; usable memory is a bit lower.
CAPACITIES_GB = (16, 24, 40, 80, 141)


def memory_metrics_present(df: pd.DataFrame) -> list[str]:
    """The memory metrics with at least one value in ``df``, most useful first."""
    return [
        m for m in MEMORY_METRICS if m in df and pd.to_numeric(df[m], errors="coerce").notna().any()
    ]


def memory_points(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Memory against batch size, per series (median over repeats); OOM batches marked."""
    return throughput_points(df, metric)


def memory_fit(
    points: pd.DataFrame, capacities_gb: tuple[int, ...] = CAPACITIES_GB
) -> pd.DataFrame:
    """A least-squares line memory = intercept + slope * batch per series, and from it the largest
    batch that fits each capacity (``sweep.results.memory_model``: a card of N GB holds N GiB,
    less its MARGIN; the answer table predicts with the same model).

    Memory of a training step is close to linear in the batch (weights, gradients and optimizer
    state are fixed; activations grow with the batch), so a line through the measured points is a
    fair estimate within and a little beyond them; far beyond, it is only a guide. Needs two
    distinct batch sizes; a series with fewer gets no estimate.
    """
    cols = ["series", "slope_gib_per_seq", "intercept_gib", "r2", "measured_up_to_batch"] + [
        f"max_batch_{c}gb" for c in capacities_gb
    ]
    rows = []
    if points.empty or "series" not in points:
        return pd.DataFrame(rows, columns=cols)
    for series, g in points[~points["oom"].astype(bool)].groupby("series", sort=True):
        x = g["batch_size"].astype(float)
        y = g["value"].astype(float)
        row: dict[str, Any] = {"series": series, "measured_up_to_batch": int(x.max())}
        if x.nunique() < 2:
            rows.append(row)
            continue
        xm, ym = x.mean(), y.mean()
        slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
        intercept = float(ym - slope * xm)
        ss_tot = float(((y - ym) ** 2).sum())
        ss_res = float(((y - (intercept + slope * x)) ** 2).sum())
        row.update(
            slope_gib_per_seq=round(slope, 5),
            intercept_gib=round(intercept, 3),
            r2=round(1 - ss_res / ss_tot, 4) if ss_tot > 0 else None,
        )
        line = MemoryFit(slope * GIB, intercept * GIB, len(x), int(x.max()), float("nan"))
        for cap in capacities_gb:
            # None where memory does not grow with the batch: no limit from this fit
            row[f"max_batch_{cap}gb"] = line.largest_batch(cap * GIB)
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


# The fit table as the Memory tab shows it: the answers (the largest batch per card) beside the
# series, then how the line was fitted. Widths (CSS pixels): room for a short series label on
# two lines (its whole label on hover), the numbers narrow; the ten columns fill 1200 px, the
# largest batches within the first 900 (1440 px screens).
FIT_WIDE = {
    "Series": 440,
    "Measured up to batch": 100,
    "R²": 60,
    "Slope GiB per sequence": 100,
    "Intercept GiB": 100,
}
FIT_NUMBER_WIDTH = 80


def short_series(series: list[str]) -> list[str]:
    """Each series label as a table cell shows it: the GPU's short name, its reference set, and
    only the " · field=value" parts that are not the same in every row ("NVIDIA H200 (ref seed)
    · attention=sdpa · harness=native" -> "H200 (ref seed) · attention=sdpa" where every row
    ran native)."""
    parts = [str(s).split(" · ") for s in series]
    shared = set.intersection(*(set(p[1:]) for p in parts)) if parts else set()
    return [" · ".join([short_gpu(p[0]), *(x for x in p[1:] if x not in shared)]) for p in parts]


def fit_view(fit: pd.DataFrame) -> pd.DataFrame:
    """``memory_fit``'s table for reading (``readable``): the short series label
    (``short_series``) first, the largest batch per card next, then the line's figures; the
    series with a prediction first, in their order. Its index is each row's whole series label
    (the cell's hover text)."""
    batches = [c for c in fit.columns if c.startswith("max_batch_")]
    line = ["measured_up_to_batch", "r2", "slope_gib_per_seq", "intercept_gib"]
    fit = fit.iloc[fit[batches].isna().all(axis=1).argsort(kind="stable")]
    view = readable(fit[["series", *batches, *line]])
    view.index = pd.Index(fit["series"].astype(str).tolist(), name=None)
    view["Series"] = short_series(fit["series"].tolist())
    return view
