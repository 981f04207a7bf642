"""Time breakdown: where a training step goes, per batch size."""

from __future__ import annotations

import gradio as gr

from analysis import figures
from analysis.phases import time_breakdown
from ui.tabs.common import Context, Tab, title


def build(ctx: Context) -> Tab:
    plot = gr.Plot(label="Where a training step goes", format="png")
    table = gr.Dataframe(label="Median ms per phase", interactive=False)

    def render(sel, fvals):
        bd = time_breakdown(sel)
        return [figures.breakdown(bd, title("Time per training step by phase", fvals)), bd]

    return Tab(outputs=[plot, table], render=render)
