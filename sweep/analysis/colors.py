"""Colours of the charts: one per GPU on every chart and tab, whatever else is drawn.

Pure: the chart specifications (``charts``, ``charts_tabs``) and the report figures take them
from here."""

from __future__ import annotations

import re
import zlib

from sweep.analysis.selection import short_gpu

# 12 colours told apart also by people with the common colour-vision deficiencies (Okabe-Ito
# first, then Tableau's).
PALETTE = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
    "#F0E442", "#4E79A7", "#B07AA1", "#9C755F", "#76B7B2", "#EDC948",
]  # fmt: skip


# One colour per GPU on every chart and tab, whatever else the selection holds: a GPU's colour
# never depends on which other GPUs are drawn. The GPU types of the shipped rows and the usual
# cloud cards first (distinct colours), any other by a checksum of its name.
GPU_COLORS = [
    (r"H200", PALETTE[0]),
    (r"H100", PALETTE[5]),
    (r"A100.*80", PALETTE[1]),
    (r"A100", PALETTE[3]),
    (r"V100", PALETTE[2]),
    (r"B[12]00", PALETTE[4]),
    (r"L40", PALETTE[8]),
    (r"\bL4\b", PALETTE[9]),
    (r"A10", PALETTE[10]),
    (r"T4", PALETTE[7]),
    (r"^cpu$", "#999999"),
]


def series_gpu(series: str) -> str:
    """The GPU a series label names: its text before " (ref ...)", " (data ...)" and
    " · field=value"."""
    return re.split(r" \((?:ref|data) ", short_gpu(series))[0].split(" · ")[0].strip()


def gpu_color(gpu: str) -> str:
    """The colour of one GPU (short or full name), the same on every chart."""
    name = short_gpu(gpu)
    for pattern, color in GPU_COLORS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return color
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def _shade(color: str, k: int) -> str:
    """``color`` for the ``k``-th series of one GPU: itself, then alternately lighter and
    darker, a step further each pair."""
    if k == 0:
        return color
    step = min(0.6, 0.3 * ((k + 1) // 2))
    target = 255 if k % 2 else 0
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (target - c) * step):02X}" for c in rgb)


def series_colors(series: list[str]) -> dict[str, str]:
    """Each series' colour: its GPU's (``gpu_color``); several series of one GPU (other
    configurations, reference rows) in shades of it, in sorted order."""
    seen: dict[str, int] = {}
    out = {}
    for s in sorted(series):
        gpu = series_gpu(s)
        k = seen[gpu] = seen.get(gpu, -1) + 1
        out[s] = _shade(gpu_color(gpu), k)
    return out
