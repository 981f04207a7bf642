"""The web app's interactive charts as Plotly figure specifications (plain dicts: ``data`` and
``layout``), drawn from the frames the analysis functions return.

No plotly package is needed: the dicts are Plotly's JSON schema, which the browser's plotly.js
(the basic bundle vendored in ui/static/, served by the app itself) draws; ``ui`` hands them to
``ui.tabs.common.chart`` as JSON text. Pure: no Gradio, no data logic, tested as data.

The same marks on every chart: a dashed line is a reference set's row, an open marker is a figure
that is not the GPU's own (host-bound: the GPU was busy under GPU_BUSY_MIN_PCT; or the 2020 host
timers, never synchronized with the GPU); out-of-memory batches sit in a strip below the axis.
Backgrounds are transparent and text grey, so a chart reads in the light and the dark theme.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sweep.analysis.colors import series_colors
from sweep.analysis.memory import CAPACITIES_GB, MEMORY_METRICS
from sweep.analysis.throughput import THROUGHPUT_METRICS
from sweep.results.trust import GPU_BUSY_MIN_PCT

MAX_SERIES = 12  # more lines than this are unreadable: the rest are left out, and the title says
TEXT = "#808080"
GRID = "rgba(128,128,128,0.25)"
PHASE_COLORS = {
    "forward": "#0072B2",
    "backward": "#E69F00",
    "optimizer": "#009E73",
    "other": "#999",
}
# The strip below the axis where out-of-memory batches sit: a batch there has no value.
OOM_AXIS = {
    "domain": [0, 0.14],
    "type": "category",
    "showgrid": False,
    "automargin": True,
    "tickfont": {"size": 9},
}
OPEN_NOTE = (
    f"open marker: not the GPU's own figure (GPU busy under {GPU_BUSY_MIN_PCT:g}%, host-bound; "
    "or 2020 host timers)"
)


def display_name(series: str) -> str:
    """A series label without the vendor prefixes, which every GPU has."""
    return str(series).replace("NVIDIA ", "").replace("Tesla ", "")


def legend_room(entries: int) -> int:
    """Pixels a chart grows by for a legend of ``entries`` lines under it: Plotly takes a
    legend's room from the plot, so 12 series (model "(any)") would squash it to a strip."""
    return 22 * max(0, entries - 3)


def base_layout(title: str, height: int = 480, legend: int = 0, **kw: Any) -> dict[str, Any]:
    """The layout every chart shares; ``legend``: how many series the legend lists."""
    what, sep, selection = title.partition(" — ")  # the selection as a subtitle: narrow screens
    text = f"{what}<br><sup>{selection}</sup>" if sep else title
    return {
        "title": {"text": text, "font": {"size": 15}},
        "height": height + legend_room(legend),
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": TEXT, "family": "system-ui, sans-serif"},
        "margin": {"l": 60, "r": 20, "t": 90, "b": 50},
        "legend": {"orientation": "h", "y": -0.2, "yanchor": "top", "font": {"size": 11}},
        "hovermode": "closest",
        **kw,
    }


def axis(title: str, **kw: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "gridcolor": GRID, "zerolinecolor": GRID, **kw}


def empty(title: str, why: str) -> dict[str, Any]:
    """A chart that says why it has nothing to draw."""
    hidden = {"visible": False}
    note = {"text": why, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper"}
    layout = base_layout(title, 220, xaxis=hidden, yaxis=hidden, annotations=[note])
    return {"data": [], "layout": layout}


def batch_axis(batches, title: str = "batch size (sequences per step)") -> dict[str, Any]:
    """A log2 axis labelled with the batch sizes when they span 8x or more, else linear."""
    batches = sorted({int(b) for b in batches})
    if batches and batches[-1] / max(batches[0], 1) >= 8:
        ticks = tick_batches(batches, log=True)
        return axis(title, type="log", tickvals=ticks, ticktext=[str(t) for t in ticks])
    return axis(title, type="linear")


def tick_batches(batches, log: bool, n_max: int = 12) -> list[int]:
    """The batch sizes to label: all of them unless two would print over each other (a max-batch
    search probes 256, 264, 265...): the smallest, the largest, and between them those at least
    1/n_max of the axis from the last kept."""
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


def cap_series(series: list[str], n: int = MAX_SERIES) -> tuple[list[str], str]:
    """The first ``n`` series (sorted) and a title suffix saying how many were left out."""
    series = sorted(series)
    if len(series) <= n:
        return series, ""
    return series[:n], f" ({n} of {len(series)} series shown: narrow the filters for the rest)"


def short_labels(series: list[str], width: int) -> dict[str, str]:
    """Each distinct series' tick text: its display name cut to ``width`` characters, made
    unique (" #2"...) where two cut names coincide. A chart keys its categories on the series
    itself (or on this one-to-one map), never on cut text: Plotly adds up bars that share a
    category, so two configurations cut to one name would be drawn as one stacked bar."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for s in dict.fromkeys(series):
        text = display_name(s)
        if len(text) > width:
            text = text[: width - 1] + "…"
        unique, k = text, 2
        while unique in used:
            unique, k = f"{text} #{k}", k + 1
        used.add(unique)
        out[s] = unique
    return out


def _fmt(v: Any, spec: str = ",.0f", suffix: str = "") -> str:
    return "n/a" if v is None or pd.isna(v) else f"{v:{spec}}{suffix}"


def _hover(r: pd.Series, unit: str) -> str:
    trust = (
        "2020 host timers (not synchronized)"
        if r.get("host_timers")
        else "host-bound"
        if r.get("host_bound")
        else "GPU-bound"
        if pd.notna(r.get("gpu_busy_pct"))
        else "GPU busy not read"
    )
    lines = [
        f"<b>{display_name(r['series'])}</b>",
        f"batch {int(r['batch_size'])}: {_fmt(r['value'])} {unit}",
    ]
    if pd.notna(r.get("value_p10")):
        lines.append(f"p10-p90: {_fmt(r['value_p10'])} - {_fmt(r['value_p90'])}")
    lines += [
        f"GPU busy {_fmt(r.get('gpu_busy_pct'), '.0f', '%')}, "
        f"step CV {_fmt(r.get('step_cv', float('nan')) * 100, '.1f', '%')}",
        f"{trust}; {int(r['repeats'])} repeat(s)",
    ]
    return "<br>".join(lines)


def strip_label(series: str) -> str:
    """A series' row in the out-of-memory strip: its GPU, short ("V100-DGXS-16GB OOM")."""
    return display_name(series).split(" (")[0].split(" ·")[0][:16] + " OOM"


def _oom_strip(points: pd.DataFrame, colors: dict[str, str], shown: list[str]) -> list[dict]:
    """Out-of-memory batches as crosses in the strip below the axis (y2), one row per series."""
    traces = []
    for s in shown:
        oom = points[(points["series"] == s) & points["oom"]]
        if len(oom):
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "x": oom["batch_size"].astype(int).tolist(),
                    "y": [strip_label(s)] * len(oom),
                    "yaxis": "y2",
                    "marker": {"symbol": "x", "size": 10, "color": colors[s]},
                    "name": f"{display_name(s)}: out of memory",
                    "legendgroup": s,
                    "showlegend": False,
                    "hovertext": [
                        f"{display_name(s)}<br>batch {b}: out of memory" for b in oom["batch_size"]
                    ],
                    "hoverinfo": "text",
                }
            )
    return traces


def throughput(points: pd.DataFrame, metric: str, title: str) -> dict[str, Any]:
    """Throughput against batch size: one line per series with p10-p90 bars; the largest batch
    that fits ringed only where a larger batch ran out of memory ("no limit found up to batch N"
    otherwise); out-of-memory batches in the strip below."""
    if points.empty:
        return empty(title, "No rows match this selection: change the filters above.")
    shown, left_out = cap_series(points["series"].unique().tolist())
    colors = series_colors(shown)
    unit = THROUGHPUT_METRICS.get(metric, metric)
    data, notes = [], []
    for s in shown:
        g = points[points["series"] == s]
        ok = g[~g["oom"]].sort_values("batch_size")
        if ok.empty:
            continue
        open_ = ok["host_bound"] | ok["host_timers"]
        trace = {
            "type": "scatter",
            "mode": "lines+markers",
            "name": display_name(s),
            "legendgroup": s,
            "x": ok["batch_size"].astype(int).tolist(),
            "y": ok["value"].round(1).tolist(),
            "line": {"color": colors[s], "dash": "dash" if g["reference"].iloc[0] else "solid"},
            "marker": {
                "size": 8,
                "color": colors[s],
                "symbol": ["circle-open" if o else "circle" for o in open_],
                "line": {"width": 2, "color": colors[s]},
            },
            "hovertext": [_hover(r, unit) for _, r in ok.iterrows()],
            "hoverinfo": "text",
        }
        if ok["value_p10"].notna().any():
            trace["error_y"] = {
                "type": "data",
                "symmetric": False,
                "array": (ok["value_p90"] - ok["value"]).clip(lower=0).round(1).fillna(0).tolist(),
                "arrayminus": (ok["value"] - ok["value_p10"])
                .clip(lower=0)
                .round(1)
                .fillna(0)
                .tolist(),
                "color": colors[s],
                "thickness": 1,
                "width": 3,
            }
        data.append(trace)
        top = ok.loc[ok["batch_size"].idxmax()]
        if g["oom"].any() and int(g.loc[g["oom"], "batch_size"].min()) > int(top["batch_size"]):
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "x": [int(top["batch_size"])],
                    "y": [round(float(top["value"]), 1)],
                    "marker": {"symbol": "circle-open", "size": 18, "color": colors[s]},
                    "name": "largest batch that fits (next one ran out of memory)",
                    "legendgroup": "fits",
                    "showlegend": not any(t.get("legendgroup") == "fits" for t in data),
                    "hoverinfo": "skip",
                }
            )
        elif not g["oom"].any():
            gpu = display_name(s).split(" ·")[0]
            notes.append(f"{gpu}: no limit found up to batch {int(top['batch_size'])}")
    data += _oom_strip(points, colors, shown)
    has_oom = any(t.get("yaxis") == "y2" for t in data)
    xaxis = batch_axis(points["batch_size"])
    layout = base_layout(
        title + left_out,
        560 if has_oom else 480,
        legend=len(shown),
        xaxis={**xaxis, "anchor": "y2" if has_oom else "y"},
        yaxis=axis(unit, rangemode="tozero", domain=[0.22, 1] if has_oom else [0, 1]),
    )
    if has_oom:
        layout["yaxis2"] = OOM_AXIS
    lines = [t for t in data if t.get("mode") == "lines+markers"]  # not the limit rings
    legend_notes = [OPEN_NOTE] if any("circle-open" in t["marker"]["symbol"] for t in lines) else []
    if points["reference"].any():
        legend_notes.append("dashed: reference rows (About the data)")
    layout["annotations"] = _notes(notes[:4] + legend_notes)
    return {"data": data, "layout": layout}


def _notes(lines: list[str]) -> list[dict[str, Any]]:
    """Notes under the title, small, one per line."""
    if not lines:
        return []
    return [
        {
            "text": "<br>".join(lines),
            "showarrow": False,
            "xref": "paper",
            "yref": "paper",
            "x": 0,
            "y": 1.0,
            "xanchor": "left",
            "yanchor": "bottom",
            "align": "left",
            "font": {"size": 10},
        }
    ]


def memory(points: pd.DataFrame, fit: pd.DataFrame, metric: str, title: str) -> dict[str, Any]:
    """Memory against batch size on a linear batch axis, with each series' fitted line (straight,
    as the model is) and the card sizes as horizontal lines (a card of N GB holds N GiB)."""
    if points.empty:
        return empty(title, "No memory readings for this selection: change the filters or metric.")
    shown, left_out = cap_series(points["series"].unique().tolist())
    colors = series_colors(shown)
    data = []
    xs = sorted(set(points["batch_size"].astype(int)))
    for s in shown:
        g = points[points["series"] == s]
        ok = g[~g["oom"]].sort_values("batch_size")
        dash = "dash" if g["reference"].iloc[0] else "solid"
        if len(ok):
            open_ = ok["host_bound"] | ok["host_timers"]
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": display_name(s),
                    "legendgroup": s,
                    "x": ok["batch_size"].astype(int).tolist(),
                    "y": ok["value"].round(3).tolist(),
                    "marker": {
                        "size": 8,
                        "color": colors[s],
                        "symbol": ["circle-open" if o else "circle" for o in open_],
                    },
                    "hovertext": [
                        f"<b>{display_name(s)}</b><br>batch {int(r.batch_size)}: {r.value:.2f} GiB"
                        for r in ok.itertuples()
                    ],
                    "hoverinfo": "text",
                }
            )
        f = fit[fit["series"] == s]
        if len(f) and pd.notna(f["slope_gib_per_seq"].iloc[0]):
            slope, icpt = float(f["slope_gib_per_seq"].iloc[0]), float(f["intercept_gib"].iloc[0])
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": [xs[0], xs[-1]],
                    "y": [round(icpt + slope * xs[0], 3), round(icpt + slope * xs[-1], 3)],
                    "line": {
                        "color": colors[s],
                        "dash": "dot" if dash == "solid" else "dashdot",
                        "width": 1,
                    },
                    "name": f"fit: {icpt:.2f} GiB + {slope:.4f} GiB/seq",
                    "legendgroup": s,
                    "showlegend": False,
                    "hoverinfo": "name",
                }
            )
    data += _oom_strip(points, colors, shown)
    has_oom = any(t.get("yaxis") == "y2" for t in data)
    values = pd.to_numeric(points["value"], errors="coerce").dropna()
    top = max(float(values.max()) * 1.15 if len(values) else 1.0, 18.0)
    shapes, labels = [], []
    for cap in CAPACITIES_GB:
        if cap <= top * 1.05:
            shapes.append(
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": cap,
                    "y1": cap,
                    "line": {"color": TEXT, "width": 1, "dash": "dot"},
                }
            )
            labels.append(
                {
                    "text": f"{cap} GB card",
                    "xref": "paper",
                    "x": 1,
                    "y": cap,
                    "showarrow": False,
                    "xanchor": "right",
                    "yanchor": "bottom",
                    "font": {"size": 9},
                }
            )
    layout = base_layout(
        title + left_out,
        560 if has_oom else 480,
        legend=len(shown),
        xaxis={**axis("batch size (sequences per step)"), "anchor": "y2" if has_oom else "y"},
        yaxis=axis(
            MEMORY_METRICS.get(metric, metric),
            range=[0, top],
            domain=[0.22, 1] if has_oom else [0, 1],
        ),
        shapes=shapes,
        annotations=labels
        + _notes(
            [
                "dotted lines: the linear fit per series (hover for it)",
                "a card of N GB holds N GiB (GPU memory is sized in GiB), a little less usable",
            ]
        ),
    )
    if has_oom:
        layout["yaxis2"] = OOM_AXIS
    return {"data": data, "layout": layout}
