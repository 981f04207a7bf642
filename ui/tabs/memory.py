"""Memory: memory against batch size, the least-squares line and what it predicts fits."""

from __future__ import annotations

import gradio as gr

from sweep.analysis import charts
from sweep.analysis.memory import MEMORY_METRICS, memory_fit, memory_metrics_present, memory_points
from sweep.analysis.table import readable
from ui.tabs.common import Context, Tab, chart, plot_value, redraw_on_own_inputs, title

AUTO = "auto (first recorded)"


def build(ctx: Context) -> Tab:
    metric = gr.Dropdown([AUTO, *MEMORY_METRICS], value=AUTO, label="Memory metric")
    plot = chart(label="Memory vs batch size", elem_id="memory-plot")
    table = gr.Dataframe(
        label="Linear fit per GPU and the largest batch it predicts for each "
        "capacity (max_batch_<N>gb)",
        interactive=False,
        elem_id="memory-fit",
        pinned_columns=1,  # the series stays in view beside the answers
        elem_classes=["tsweep-table"],
    )

    def render(sel, fvals, mem_metric):
        present = memory_metrics_present(sel)
        chosen = (
            (present[0] if present else "nvml_peak_used_gib") if mem_metric == AUTO else mem_metric
        )
        points = memory_points(sel, chosen)
        fit = memory_fit(points)
        figure = charts.memory(points, fit, chosen, title("Memory vs batch size", fvals))
        return [plot_value(figure), readable(fit)]

    tab = Tab(inputs=[metric], outputs=[plot, table], render=render)
    redraw_on_own_inputs(ctx, tab)
    return tab
