"""Time breakdown: where a training step goes, per batch size, and what the host costs (the
CUDA-graph step against the eager one, where the selection has both)."""

from __future__ import annotations

import gradio as gr

from sweep.analysis import charts_tabs
from sweep.analysis.pairs import graph_against_eager
from sweep.analysis.phases import time_breakdown
from sweep.analysis.table import readable
from ui.tabs.common import Context, Tab, chart, plot_value, title


def build(ctx: Context) -> Tab:
    plot = chart(label="Where a training step goes", elem_id="breakdown-plot")
    table = gr.Dataframe(label="Median ms per phase", interactive=False)
    graphs = gr.Dataframe(
        label="CUDA graph against eager, per batch: graph/eager is what the host's kernel "
        "launches cost the eager step; busy: the measured step's share with a kernel running",
        interactive=False,
        elem_id="graph-vs-eager",
    )

    def render(sel, fvals):
        bd = time_breakdown(sel)
        figure = charts_tabs.breakdown(bd, title("Time per training step by phase", fvals))
        return [plot_value(figure), readable(bd), readable(graph_against_eager(sel))]

    return Tab(outputs=[plot, table, graphs], render=render)
