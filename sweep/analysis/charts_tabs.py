"""The charts of the time breakdown, efficiency, cost and speedup tabs, as Plotly figure
specifications (``sweep.analysis.charts`` says how they are drawn and what their marks mean)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sweep.analysis.charts import (
    MAX_SERIES,
    PHASE_COLORS,
    TEXT,
    axis,
    base_layout,
    batch_axis,
    cap_series,
    display_name,
    empty,
    short_labels,
)
from sweep.analysis.colors import PALETTE, series_colors
from sweep.analysis.efficiency import EFFICIENCY_METRICS
from sweep.analysis.phases import PHASES

MAX_PANELS = 4


def breakdown(frame: pd.DataFrame, title: str) -> dict[str, Any]:
    """Stacked bars of forward / backward / optimizer / other per batch size, one group of bars
    per series (the first MAX_PANELS; the title says how many were left out)."""
    if frame.empty:
        return empty(title, "No time breakdown for this selection.")
    shown, left_out = cap_series(list(dict.fromkeys(frame["series"])), MAX_PANELS)
    d = frame[frame["series"].isin(shown)].sort_values(["series", "batch_size"])
    # one category per series (its own tick text, unique), then the batch size within it
    ticks = short_labels(list(d["series"]), 28)
    timers = d.groupby("series")["host_timers"].any()
    x = [
        [ticks[s] + (" (host timers)" if timers[s] else "") for s in d["series"]],
        [str(b) for b in d["batch_size"]],
    ]
    full = [display_name(s) for s in d["series"]]
    data = [
        {
            "type": "bar",
            "name": phase,
            "x": x,
            "y": d[f"{phase}_ms"].round(2).tolist(),
            "marker": {"color": PHASE_COLORS[phase]},
            "customdata": full,
            "hovertemplate": f"{phase}: %{{y:.2f}} ms<br>%{{x}}<extra>%{{customdata}}</extra>",
        }
        for phase in PHASES
    ]
    layout = base_layout(
        title + left_out,
        480,
        barmode="stack",
        xaxis=axis("series, batch size"),
        yaxis=axis("time per step (ms)"),
    )
    return {"data": data, "layout": layout}


def efficiency(frame: pd.DataFrame, title: str) -> dict[str, Any]:
    """One small panel per efficiency metric against batch size (a 2 x 3 grid)."""
    if frame.empty:
        return empty(title, "No efficiency readings for this selection.")
    shown, left_out = cap_series(frame["series"].unique().tolist())
    colors = series_colors(shown)
    data, layout = [], base_layout(title + left_out, 620, legend=len(shown))
    for i, (metric, label) in enumerate(EFFICIENCY_METRICS.items(), start=1):
        col, row = (i - 1) % 3, (i - 1) // 3
        ax = "" if i == 1 else str(i)
        layout[f"xaxis{ax}"] = {
            **batch_axis(frame["batch_size"], ""),
            "domain": [col / 3 + 0.03, (col + 1) / 3 - 0.03],
            "anchor": f"y{ax}",
        }
        layout[f"yaxis{ax}"] = {
            **axis(label),
            "domain": [0.55 if row == 0 else 0, 1 if row == 0 else 0.4],
            "anchor": f"x{ax}",
        }
        for s in shown:
            g = frame[frame["series"] == s].dropna(subset=[metric])
            if len(g):
                data.append(
                    {
                        "type": "scatter",
                        "mode": "lines+markers",
                        "x": g["batch_size"].astype(int).tolist(),
                        "y": g[metric].round(4).tolist(),
                        "xaxis": f"x{ax}",
                        "yaxis": f"y{ax}",
                        "name": display_name(s),
                        "legendgroup": s,
                        "showlegend": i == 1,
                        "line": {"color": colors[s]},
                        "hovertemplate": f"{label}: %{{y}}<br>batch %{{x}}"
                        f"<extra>{display_name(s)[:40]}</extra>",
                    }
                )
    return {"data": data, "layout": layout}


def cost(costs: pd.DataFrame, title: str) -> dict[str, Any]:
    """Horizontal bars: dollars per million training tokens at each series' best rate."""
    priced = costs.dropna(subset=["usd_per_million_tokens"])
    if priced.empty:
        return empty(title, "No priced GPU in this selection: add its price to the table.")
    priced = priced.sort_values("usd_per_million_tokens", ascending=False).tail(MAX_SERIES)
    left_out = (
        ""
        if len(priced) == len(costs.dropna(subset=["usd_per_million_tokens"]))
        else (f" (the {MAX_SERIES} cheapest shown)")
    )
    # the bars keyed on the full series (distinct configurations never stack); ticks cut short
    names = priced["series"].astype(str).tolist()
    ticks = short_labels(names, 60)
    texts = [
        f"${r.usd_per_million_tokens:.4f} ({r.best_tokens_per_s:,.0f} tok/s at "
        f"${r.usd_per_gpu_hour:.2f}/h)"
        for r in priced.itertuples()
    ]
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "x": priced["usd_per_million_tokens"].round(5).tolist(),
            "y": names,
            "marker": {"color": PALETTE[0]},
            "text": texts,
            "textposition": "auto",
            "hovertext": [f"{display_name(n)}<br>{t}" for n, t in zip(names, texts, strict=True)],
            "hoverinfo": "text",
        }
    ]
    layout = base_layout(
        title + left_out,
        max(260, 40 * len(priced) + 140),
        xaxis=axis("US dollars per million training tokens (lower is better)"),
        yaxis={
            "automargin": True,
            "tickfont": {"size": 10},
            "tickmode": "array",
            "tickvals": names,
            "ticktext": [ticks[n] for n in names],
        },
        showlegend=False,
    )
    return {"data": data, "layout": layout}


def speedup(frame: pd.DataFrame, baseline: str, title: str) -> dict[str, Any]:
    """Speedup over the baseline against batch size, one line per GPU (and configuration)."""
    others = frame[frame["gpu"] != baseline]
    if others.empty:
        return empty(
            title,
            "No other GPU ran exactly the baseline's configurations (every option equal). "
            "The answer table on Compare GPUs compares across options and says what differs.",
        )
    many = others["config"].nunique() > 1
    others = others.assign(label=others["gpu"] + ((" · " + others["config"]) if many else ""))
    shown, left_out = cap_series(others["label"].unique().tolist())
    colors = series_colors(shown)
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": display_name(label),
            "x": g["batch_size"].astype(int).tolist(),
            "y": g["speedup"].tolist(),
            "line": {"color": colors[label]},
            "hovertemplate": "batch %{x}: %{y:.2f}x<extra>" + display_name(label)[:40] + "</extra>",
        }
        for label, g in others[others["label"].isin(shown)].groupby("label", sort=True)
    ]
    layout = base_layout(
        title + left_out,
        480,
        legend=len(shown),
        xaxis=batch_axis(frame["batch_size"]),
        yaxis=axis("speedup over the baseline (x, same configuration)", rangemode="tozero"),
        shapes=[
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": 1,
                "y1": 1,
                "line": {"color": TEXT, "dash": "dash", "width": 1},
            }
        ],
    )
    return {"data": data, "layout": layout}
