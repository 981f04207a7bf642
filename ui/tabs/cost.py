"""Cost: editable GPU prices, dollars per million training tokens, the cheapest GPU that reaches
a target rate."""

from __future__ import annotations

import gradio as gr

from sweep.analysis import charts_tabs
from sweep.analysis.cost import DEFAULT_PRICES, cheapest, cost_table, parse_prices
from sweep.analysis.table import readable
from ui.tabs.common import Context, Tab, chart, plot_value, redraw_on_own_inputs, title


def build(ctx: Context) -> Tab:
    gr.Markdown(
        "Hourly price of **one GPU**; a row matches every GPU whose name "
        'contains all its words as whole words ("L4" is not an L40S; the '
        "longest match wins). Defaults are of one kind and date (AWS Capacity Blocks, "
        "rates to 2025-01-01, source per row; no V100, T4, A10G or L4 there): "
        "replace them with yours and add the GPUs you rent."
    )
    prices = gr.Dataframe(
        DEFAULT_PRICES, interactive=True, label="GPU prices (editable)", elem_id="prices"
    )
    target = gr.Number(50000, label="Target throughput (tokens / s)")
    message = gr.Markdown()
    plot = chart(label="Dollars per million training tokens", elem_id="cost-plot")
    table = gr.Dataframe(label="GPUs that reach the target, cheapest first", interactive=False)

    def render(sel, fvals, price_table, tgt):
        good, problems = parse_prices(price_table)
        costs = cost_table(sel, good)
        sentence, reach = cheapest(costs, tgt if tgt is not None else float("nan"))
        unpriced = sorted(costs.loc[costs["usd_per_gpu_hour"].isna(), "gpu"].unique())
        notes = [f"⚠ {p}" for p in problems]
        if unpriced:
            notes.append("No price for: " + ", ".join(unpriced) + " (add a row).")
        return [
            "\n\n".join([sentence, *notes]),
            plot_value(charts_tabs.cost(costs, title("Cost of training tokens", fvals))),
            readable(reach),
        ]

    tab = Tab(inputs=[prices, target], outputs=[message, plot, table], render=render)
    redraw_on_own_inputs(ctx, tab)
    return tab
