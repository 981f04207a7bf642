"""Time breakdown: where a training step goes, per batch size."""

from __future__ import annotations

import gradio as gr

from analysis import charts_tabs
from analysis.phases import time_breakdown
from analysis.table import readable
from ui.tabs.common import Context, Tab, chart, plot_value, title


def build(ctx: Context) -> Tab:
    plot = chart(label="Where a training step goes", elem_id="breakdown-plot")
    table = gr.Dataframe(label="Median ms per phase", interactive=False)

    def render(sel, fvals):
        bd = time_breakdown(sel)
        figure = charts_tabs.breakdown(bd, title("Time per training step by phase", fvals))
        return [plot_value(figure), readable(bd)]

    return Tab(outputs=[plot, table], render=render)
