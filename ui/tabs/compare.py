"""Compare GPUs: throughput against batch size, and per GPU what fits and where it is fastest."""

from __future__ import annotations

import gradio as gr

from analysis import figures
from analysis.throughput import fit_summary, throughput_points
from ui.tabs.common import Context, Tab, redraw_on_own_inputs, title


def build(ctx: Context) -> Tab:
    metric = gr.Radio(
        [("sequences / s", "sequences_per_s"), ("tokens / s", "tokens_per_s")],
        value="sequences_per_s",
        label="Throughput in",
    )
    plot = gr.Plot(label="Throughput vs batch size", format="png", elem_id="compare-plot")
    table = gr.Dataframe(
        label="Per GPU: largest batch that fits, best throughput",
        interactive=False,
        elem_id="compare-table",
    )

    def render(sel, fvals, tp_metric):
        points = throughput_points(sel, tp_metric)
        return [
            figures.throughput(
                points, tp_metric, title("Training throughput vs batch size", fvals)
            ),
            fit_summary(points).rename(columns={"best_value": f"best_{tp_metric}"}),
        ]

    tab = Tab(inputs=[metric], outputs=[plot, table], render=render)
    redraw_on_own_inputs(ctx, tab)
    return tab
