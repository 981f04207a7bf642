"""Efficiency: MFU, TFLOP/s, GPU utilization, power and energy per token."""

from __future__ import annotations

import gradio as gr

from sweep.analysis import charts_tabs
from sweep.analysis.efficiency import efficiency
from sweep.analysis.table import readable
from ui.tabs.common import Context, Tab, chart, plot_value, title


def build(ctx: Context) -> Tab:
    plot = chart(label="MFU, TFLOP/s, utilization, power, energy", elem_id="efficiency-plot")
    table = gr.Dataframe(interactive=False)

    def render(sel, fvals):
        eff = efficiency(sel)
        return [plot_value(charts_tabs.efficiency(eff, title("Efficiency", fvals))), readable(eff)]

    return Tab(outputs=[plot, table], render=render)
