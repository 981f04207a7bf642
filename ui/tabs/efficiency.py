"""Efficiency: MFU, TFLOP/s, GPU utilization, power and energy per token."""

from __future__ import annotations

import gradio as gr

from analysis import figures
from analysis.efficiency import efficiency
from ui.tabs.common import Context, Tab, title


def build(ctx: Context) -> Tab:
    plot = gr.Plot(label="MFU, TFLOP/s, utilization, power, energy", format="png")
    table = gr.Dataframe(interactive=False)

    def render(sel, fvals):
        eff = efficiency(sel)
        return [figures.efficiency(eff, title("Efficiency", fvals)), eff]

    return Tab(outputs=[plot, table], render=render)
