"""The report's static matplotlib figures (memory against batch size, the time breakdown), drawn
from the frames the analysis functions return (no Gradio, no data logic); the web app's
interactive charts are ``sweep.analysis.charts``.

Each function returns a ``matplotlib.figure.Figure`` built without pyplot's global state, so that
two figures drawn at once never draw into each other. Every chart has a
title, axis labels with units and a legend; an empty selection gives a figure that says so.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: figures are rendered to PNG files for the report

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sweep.analysis.charts import tick_batches  # noqa: E402  (one rule for both kinds of chart)
from sweep.analysis.memory import CAPACITIES_GB, MEMORY_METRICS  # noqa: E402
from sweep.analysis.phases import PHASES  # noqa: E402

WIDTH, HEIGHT, DPI = 10.0, 5.2, 100
OOM_COLOR = "#d62728"


def _figure(height: float = HEIGHT) -> Figure:
    return Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")


def empty(title: str, why: str) -> Figure:
    fig = _figure(2.2)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, fontsize=13)
    ax.text(0.5, 0.45, why, ha="center", va="center", fontsize=12, wrap=True, color="#555")
    return fig


def _batch_axis(ax, batches, label: str = "batch size (sequences per step)") -> None:
    """Batch sizes are powers of two in most sweeps: a log2 axis with the batch sizes as ticks."""
    batches = sorted({int(b) for b in batches})
    if not batches:
        return
    log = batches[-1] / max(batches[0], 1) >= 8
    if log:
        ax.set_xscale("log", base=2)
    ticks = tick_batches(batches, log)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(b) for b in ticks])
    ax.minorticks_off()
    ax.set_xlabel(label)


def _colors(series: list[str]) -> dict[str, str]:
    palette = matplotlib.colormaps["tab10"].colors
    return {
        s: matplotlib.colors.to_hex(palette[i % len(palette)]) for i, s in enumerate(sorted(series))
    }


def _legend_below(fig: Figure, handles, labels, height: float = HEIGHT) -> None:
    """The legend under the axes, never over the data: series labels name every option that
    differs, so they are long, and a legend inside the axes hid the highest points."""
    fig.set_figheight(height + 0.22 * len(labels))
    fig.legend(handles, labels, loc="outside lower center", fontsize=9, ncols=1, frameon=False)


def memory(points: pd.DataFrame, fit: pd.DataFrame, metric: str, title: str) -> Figure:
    """Memory against batch size with the fitted lines (dotted) and the capacities of common GPUs
    as horizontal lines."""
    if points.empty:
        return empty(
            title, "No memory readings for this selection: change the filters or the memory metric."
        )
    fig = _figure()
    ax = fig.add_subplot()
    colors = _colors(points["series"].unique().tolist())
    # NaN when the selection has only out-of-memory batches for this metric (e.g. the NVML peak
    # of the 2020 rows, which recorded none): axis limits cannot be NaN.
    values = pd.to_numeric(points["value"], errors="coerce").dropna()
    ymax = float(values.max()) if len(values) else 1.0
    for series, g in points.groupby("series", sort=True):
        ok, oom = g[~g["oom"]], g[g["oom"]]
        ref = bool(g["reference"].iloc[0])
        if len(ok):
            ax.plot(
                ok["batch_size"],
                ok["value"],
                marker="o",
                color=colors[series],
                linestyle="none",
                label=series,
            )
        f = fit[fit["series"] == series]
        if len(f) and pd.notna(f["slope_gib_per_seq"].iloc[0]):
            slope, icpt = float(f["slope_gib_per_seq"].iloc[0]), float(f["intercept_gib"].iloc[0])
            xs = sorted(set(points["batch_size"].astype(int)))
            ax.plot(
                xs,
                [icpt + slope * x for x in xs],
                color=colors[series],
                linestyle=":" if not ref else "-.",
                linewidth=1.2,
                alpha=0.8,
            )
        if len(oom):
            ax.scatter(
                oom["batch_size"],
                [0.03] * len(oom),
                marker="x",
                s=90,
                linewidths=2.5,
                color=colors[series],
                transform=ax.get_xaxis_transform(),
                zorder=5,
                clip_on=False,
            )
    top = max(ymax * 1.15, 18)
    for cap in CAPACITIES_GB:
        if cap <= top * 1.05:
            ax.axhline(cap, color="#888", linewidth=1, alpha=0.7)
            ax.text(
                1.0,
                cap,
                f" {cap} GB",
                transform=ax.get_yaxis_transform(),
                va="center",
                fontsize=9,
                color="#555",
            )
    ax.set_ylim(0, top)
    _batch_axis(ax, points["batch_size"])
    ax.set_ylabel(MEMORY_METRICS.get(metric, metric))
    ax.set_title(title, fontsize=13)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="#444", linestyle=":"))
    labels.append("linear fit (estimate)")
    handles.append(Line2D([], [], color="#888"))
    labels.append("GPU capacity (nominal)")
    _legend_below(fig, handles, labels)
    return fig


MAX_PANELS = 4


def breakdown(frame: pd.DataFrame, title: str) -> Figure:
    """Stacked bars of forward / backward / optimizer / other per batch size, one panel per
    series (the first MAX_PANELS shown; the title says how many were left out)."""
    if frame.empty:
        return empty(title, "No time breakdown for this selection.")
    every = list(dict.fromkeys(frame["series"]))
    series = every[:MAX_PANELS]
    if len(every) > len(series):  # say so: a dropped panel must not look like missing data
        title += (
            f"\n(first {len(series)} of {len(every)} series: narrow the filters to see the rest)"
        )
    fig = _figure(4.2 if len(series) <= 2 else 7.5)
    cols = 2 if len(series) > 1 else 1
    rows = (len(series) + cols - 1) // cols
    phase_colors = {
        "forward": "#1f77b4",
        "backward": "#ff7f0e",
        "optimizer": "#2ca02c",
        "other": "#9e9e9e",
    }
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, series, strict=False):
        g = frame[frame["series"] == name].sort_values("batch_size")
        x = list(range(len(g)))
        bottom = [0.0] * len(g)
        for phase in PHASES:
            vals = g[f"{phase}_ms"].fillna(0).tolist()
            ax.bar(x, vals, bottom=bottom, color=phase_colors[phase], label=phase, width=0.7)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_xticks(x)
        ax.set_xticklabels([str(b) for b in g["batch_size"]])
        ax.set_xlabel("batch size (sequences per step)")
        ax.set_ylabel("time per step (ms)")
        note = " — host timers, no GPU sync" if g["host_timers"].any() else ""
        ax.set_title(_wrap(name + note, 60), fontsize=10)  # one line ran into the next panel
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[len(series) :]:
        ax.set_axis_off()
    axes[0].legend(loc="upper left", fontsize=9)
    fig.suptitle(title, fontsize=13)
    return fig


def _wrap(label: str, width: int = 42) -> str:
    """A series label on several lines, broken between its " · " parts."""
    lines: list[str] = []
    for part in str(label).split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return "\n".join(lines)
