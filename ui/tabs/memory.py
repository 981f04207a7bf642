"""Memory: memory against batch size, the least-squares line and what it predicts fits."""

from __future__ import annotations

import gradio as gr

from sweep.analysis import charts
from sweep.analysis.answer_view import column_widths
from sweep.analysis.memory import (
    FIT_NUMBER_WIDTH,
    FIT_WIDE,
    MEMORY_METRICS,
    fit_view,
    memory_fit,
    memory_metrics_present,
    memory_points,
)
from ui.tabs.common import (
    Context,
    Tab,
    chart,
    hover_cell,
    plot_value,
    redraw_on_own_inputs,
    sticky_table,
    title,
)

AUTO = "auto (first recorded)"


def build(ctx: Context) -> Tab:
    metric = gr.Dropdown([AUTO, *MEMORY_METRICS], value=AUTO, label="Memory metric")
    plot = chart(label="Memory vs batch size", elem_id="memory-plot")
    # the largest batch per card beside a short series label (its whole label on hover), within
    # 1440 px; the series stays in view while the line's figures scroll (tsweep-table)
    table = sticky_table(
        "Largest batch each card size holds, from a line through each series' measured memory",
        "memory-fit",
    )

    def render(sel, fvals, mem_metric):
        present = memory_metrics_present(sel)
        chosen = (
            (present[0] if present else "nvml_peak_used_gib") if mem_metric == AUTO else mem_metric
        )
        points = memory_points(sel, chosen)
        fit = memory_fit(points)
        figure = charts.memory(points, fit, chosen, title("Memory vs batch size", fvals))
        view = fit_view(fit)
        cells = [hover_cell(s, full) for s, full in zip(view["Series"], view.index, strict=True)]
        columns = list(view.columns)
        shown = gr.update(
            value=view.assign(Series=cells).reset_index(drop=True),
            column_widths=column_widths(columns, FIT_WIDE, FIT_NUMBER_WIDTH),
            datatype=["html", *["str"] * (len(columns) - 1)],  # the series' hover text
        )
        return [plot_value(figure), shown]

    tab = Tab(inputs=[metric], outputs=[plot, table], render=render)
    redraw_on_own_inputs(ctx, tab)
    return tab
