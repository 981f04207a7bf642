"""The web app's matplotlib figures, drawn from the frames the analysis functions return (no
Gradio, no data logic).

Each function returns a ``matplotlib.figure.Figure`` built without pyplot's global state, so that
concurrent requests of the web app do not draw into each other's figures. Every chart has a
title, axis labels with units and a legend; an empty selection gives a figure that says so.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # no display: figures are rendered to PNG for the browser

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from analysis.efficiency import EFFICIENCY_METRICS  # noqa: E402
from analysis.memory import CAPACITIES_GB, MEMORY_METRICS  # noqa: E402
from analysis.phases import PHASES  # noqa: E402
from analysis.throughput import THROUGHPUT_METRICS  # noqa: E402
from sweep.results.trust import GPU_BUSY_MIN_PCT  # noqa: E402

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


def tick_batches(batches, log: bool, n_max: int = 12) -> list[int]:
    """The batch sizes to label on an axis: all of them unless two would print over each other
    (a max-batch search probes 256, 264, 265, 266...). Keeps the smallest and the largest, and in
    between those at least a 1/n_max of the axis (in log2 where the axis is log) from the last
    kept."""
    batches = sorted({int(b) for b in batches})
    if len(batches) <= 2:
        return batches

    def pos(b: int) -> float:
        return math.log2(max(b, 1)) if log else float(b)

    gap = (pos(batches[-1]) - pos(batches[0])) / n_max
    kept = [batches[0]]
    for b in batches[1:-1]:
        if pos(b) - pos(kept[-1]) >= gap and pos(batches[-1]) - pos(b) >= gap:
            kept.append(b)
    return kept + [batches[-1]]


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


def throughput(points: pd.DataFrame, metric: str, title: str) -> Figure:
    """Throughput against batch size: one line per series (dashed: reference rows), out-of-memory
    batches as red crosses on the axis, and the largest batch that fits ringed."""
    if points.empty:
        return empty(title, "No rows match this selection: change the filters above.")
    fig = _figure()
    ax = fig.add_subplot()
    colors = _colors(points["series"].unique().tolist())
    any_oom = any_host = False
    # crosses are staggered per series that has any, not per series: with eight series the
    # last ones' crosses sat a third of the way up, where they read as data
    with_oom = sorted(points.loc[points["oom"], "series"].unique())
    for series, g in points.groupby("series", sort=True):
        ok, oom = g[~g["oom"]], g[g["oom"]]
        ref = bool(g["reference"].iloc[0])
        if len(ok):
            ax.plot(
                ok["batch_size"],
                ok["value"],
                marker="o",
                color=colors[series],
                linestyle="--" if ref else "-",
                label=series,
            )
            host = ok[ok["host_bound"]]
            if len(host):  # white-filled: the GPU waited for the host, the figure is the CPU's
                any_host = True
                ax.plot(
                    host["batch_size"],
                    host["value"],
                    marker="o",
                    linestyle="none",
                    markerfacecolor="white",
                    markeredgecolor=colors[series],
                    markeredgewidth=1.5,
                    zorder=4,
                )
            top = ok.loc[ok["batch_size"].idxmax()]
            ax.plot(
                [top["batch_size"]],
                [top["value"]],
                marker="o",
                markersize=14,
                markerfacecolor="none",
                markeredgecolor=colors[series],
                markeredgewidth=1.5,
            )
        if len(oom):
            any_oom = True
            # x in data, y just above the axis (staggered per series so that two GPUs' crosses
            # at one batch size stay apart): OOM has no throughput, only a position
            i = with_oom.index(series)
            ax.scatter(
                oom["batch_size"],
                [0.03 + min(0.04, 0.12 / max(len(with_oom) - 1, 1)) * i] * len(oom),
                marker="x",
                s=90,
                linewidths=2.5,
                color=colors[series],
                transform=ax.get_xaxis_transform(),
                zorder=5,
                clip_on=False,
            )
    _batch_axis(ax, points["batch_size"])
    ax.set_ylabel(THROUGHPUT_METRICS.get(metric, metric))
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=13)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(
        Line2D(
            [],
            [],
            marker="o",
            markersize=12,
            markerfacecolor="none",
            markeredgecolor="#444",
            linestyle="none",
        )
    )
    labels.append("largest batch that fits")
    if any_oom:
        handles.append(
            Line2D(
                [],
                [],
                marker="x",
                color="#444",
                markersize=9,
                linestyle="none",
                markeredgewidth=2.5,
            )
        )
        labels.append("out of memory (no throughput)")
    if any_host:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="none",
                markerfacecolor="white",
                markeredgecolor="#444",
                markeredgewidth=1.5,
            )
        )
        labels.append(
            f"white: GPU busy under {GPU_BUSY_MIN_PCT:g}% (host-bound: the figure depends "
            "on the CPU and varies run to run)"
        )
    if points["reference"].any():
        handles.append(Line2D([], [], color="#444", linestyle="--"))
        labels.append("dashed: reference rows (see provenance)")
    _legend_below(fig, handles, labels)
    return fig


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


def efficiency(frame: pd.DataFrame, title: str) -> Figure:
    """One small panel per efficiency metric against batch size; a metric with no value in the
    selection says so in its panel."""
    if frame.empty:
        return empty(title, "No efficiency readings for this selection.")
    fig = _figure(6.5)
    axes = fig.subplots(2, 3).ravel()
    colors = _colors(frame["series"].unique().tolist())
    for ax, (metric, label) in zip(axes, EFFICIENCY_METRICS.items(), strict=False):
        drawn = False
        for series, g in frame.groupby("series", sort=True):
            g = g.dropna(subset=[metric])
            if len(g):
                drawn = True
                ax.plot(g["batch_size"], g[metric], marker="o", color=colors[series], label=series)
        ax.set_title(label, fontsize=10)
        if drawn:
            _batch_axis(ax, frame["batch_size"], "batch size")
            ax.grid(True, alpha=0.3)
        else:
            ax.text(
                0.5,
                0.5,
                "not recorded\nfor these rows",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="#777",
            )
            ax.set_xticks([])
            ax.set_yticks([])
    for ax in axes[len(EFFICIENCY_METRICS) :]:
        ax.set_axis_off()
    # below the panels, as on the other charts: in the sixth panel's cell, long series labels
    # squeezed every panel to a sliver
    handles = [Line2D([], [], color=c, marker="o") for c in colors.values()]
    _legend_below(fig, handles, list(colors), height=6.5)
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


def cost(costs: pd.DataFrame, title: str) -> Figure:
    """Horizontal bars: dollars per million training tokens at each series' best rate."""
    priced = costs.dropna(subset=["usd_per_million_tokens"])
    if priced.empty:
        return empty(title, "No priced GPU in this selection: add its price to the table.")
    priced = priced.sort_values("usd_per_million_tokens", ascending=False)
    # Series names spell out every option that differs ("· precision=... · harness=..."): on
    # one line they took the whole width and left the bars none.
    names = [_wrap(s) for s in priced["series"]]
    lines = sum(n.count("\n") + 1 for n in names)
    fig = _figure(max(2.5, 0.5 * len(priced) + 0.2 * lines + 1.5))
    ax = fig.add_subplot()
    bars = ax.barh(names, priced["usd_per_million_tokens"], color="#1f77b4")
    for bar, (_, r) in zip(bars, priced.iterrows(), strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" ${r['usd_per_million_tokens']:.4f}  ({r['best_tokens_per_s']:,.0f} tok/s at "
            f"${r['usd_per_gpu_hour']:.2f}/h)",
            va="center",
            fontsize=9,
            parse_math=False,  # two "$" would make a formula: no dollar signs, no spaces
        )
    ax.set_xlabel("US dollars per million training tokens (lower is better)")
    ax.set_xlim(0, priced["usd_per_million_tokens"].max() * 1.6)
    ax.set_title(title, fontsize=13)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def speedup(frame: pd.DataFrame, baseline: str, title: str) -> Figure:
    """Speedup over the baseline against batch size, one line per GPU (and configuration)."""
    others = frame[frame["gpu"] != baseline]
    if others.empty:
        return empty(title, "No other GPU ran the same configurations as the baseline.")
    fig = _figure()
    ax = fig.add_subplot()
    many = others["config"].nunique() > 1
    labels = others["gpu"] + ((" · " + others["config"]) if many else "")
    others = others.assign(label=labels)
    colors = _colors(others["label"].unique().tolist())
    for label, g in others.groupby("label", sort=True):
        ax.plot(g["batch_size"], g["speedup"], marker="o", color=colors[label], label=label)
    ax.axhline(1.0, color="#444", linewidth=1, linestyle="--", label=f"baseline: {baseline}")
    _batch_axis(ax, frame["batch_size"])
    ax.set_ylabel("speedup over the baseline (×, same configuration)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=13)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig
