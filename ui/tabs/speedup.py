"""Speedup: every GPU over a chosen baseline GPU, for the same configuration and batch."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from sweep.analysis import charts_tabs
from sweep.analysis.pairs import gpu_labels, speedup
from sweep.analysis.table import readable
from ui.tabs.common import Context, Tab, chart, plot_value, redraw_on_own_inputs, title


def baseline_choices(frame: pd.DataFrame, current: str | None) -> tuple[list[str], str | None]:
    """The GPUs that can be the baseline, and the one to select: ``current`` while it is one of
    them, else the first of the user's GPUs (then the first of a pooled file's or a reference
    set's)."""
    labels = gpu_labels(frame)
    if current in labels:
        return labels, current
    mine = [g for g in labels if "(ref " not in g and "(data " not in g]
    return labels, (mine or labels or [None])[0]


def build(ctx: Context) -> Tab:
    labels, value = baseline_choices(ctx.shown_frame, None)
    baseline = gr.Dropdown(labels, value=value, label="Baseline GPU")
    plot = chart(label="Speedup over the baseline", elem_id="speedup-plot")
    table = gr.Dataframe(interactive=False)

    def render(sel, fvals, base):
        sp = speedup(sel, base) if base else speedup(sel.iloc[0:0], "")
        figure = charts_tabs.speedup(sp, base or "", title("Speedup over the baseline", fvals))
        return [plot_value(figure), readable(sp)]

    def refresh(frame: pd.DataFrame, current: str | None):
        labels, value = baseline_choices(frame, current)
        return gr.Dropdown(choices=labels, value=value)

    tab = Tab(
        inputs=[baseline], outputs=[plot, table], render=render, refresh=[(baseline, refresh)]
    )
    redraw_on_own_inputs(ctx, tab)
    return tab
