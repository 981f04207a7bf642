"""Compare GPUs: the answer table first (one row per GPU: fastest rate, what fits, cost,
speedup over a baseline, trust, what differs), then throughput against batch size."""

from __future__ import annotations

import tempfile

import gradio as gr
import pandas as pd

from sweep.analysis import charts
from sweep.analysis.answer import gpu_names
from sweep.analysis.answer_view import MORE_COLUMNS, answer_for, column_widths, shown_columns
from sweep.analysis.selection import UNKNOWN_GPU
from sweep.analysis.table import download_name, readable
from sweep.analysis.throughput import fit_summary, throughput_points
from ui.tabs.common import (
    Context,
    Tab,
    chart,
    csv_file,
    plot_value,
    redraw_on_own_inputs,
    sticky_table,
    title,
)

SLOWEST = "(slowest)"
ANSWER_HELP = (
    "**Trust**: *GPU-bound* figures are the GPU's own; *host-bound* ones (GPU busy under 90%) "
    "depend on the CPU; *2020 host timers* are the original project's unsynchronized timers. "
    "**Fits in N GB** is predicted from the memory line through the measured batches. "
    "**Differs in** names what each row's configuration does not share with the baseline's. "
    "**Tokens/s (like baseline)** is the rate of each GPU's configuration closest to the "
    "baseline's (what the speedups divide); **GPU's best tokens/s** is the GPU's fastest, "
    "whatever its options, and **GPU's best config** says how that one differs."
)


def gpu_choices(frame: pd.DataFrame) -> list[str]:
    """Every GPU of the data (short names), for the baseline and the GPU choice; never a row
    whose GPU nothing names."""
    return sorted(set(gpu_names(frame)) - {UNKNOWN_GPU}) if len(frame) else []


def _several(choices: list[str], label: str, elem_id: str, scale: int) -> gr.Dropdown:
    """A multi-select dropdown, empty at first."""
    return gr.Dropdown(
        choices, value=[], multiselect=True, label=label, elem_id=elem_id, scale=scale
    )


def build(ctx: Context) -> Tab:
    csv_dir = tempfile.mkdtemp(prefix="tsweep-ui-")
    gpus_all = gpu_choices(ctx.shown_frame)
    with gr.Row():
        baseline = gr.Dropdown(
            [SLOWEST, *gpus_all], value=SLOWEST, label="Speedup over", elem_id="baseline", scale=1
        )
        gpus = _several(gpus_all, "GPUs to compare (empty: all)", "gpus", scale=2)
        strict = gr.Checkbox(
            False, label="Strict: same options as the baseline", elem_id="strict", scale=1
        )
    note = gr.Markdown(elem_id="answer-note")
    # the GPU column stays in view while the others scroll; a cut cell shows its text on hover
    answer_table = sticky_table("Answer: one row per GPU", "answer-table")
    with gr.Row():
        more = _several(MORE_COLUMNS, "More columns", "answer-columns", scale=4)
        download = gr.DownloadButton("Download answer CSV", size="sm", scale=1)
    gr.Markdown(ANSWER_HELP)
    metric = gr.Radio(
        [("sequences / s", "sequences_per_s"), ("tokens / s", "tokens_per_s")],
        value="sequences_per_s",
        label="Throughput in",
    )
    plot = chart(label="Throughput vs batch size", elem_id="compare-plot")
    table = gr.Dataframe(
        label="Per series: largest batch that fits, best throughput",
        interactive=False,
        elem_id="compare-table",
    )

    def render(sel, fvals, tp_metric, base, chosen_gpus, strict_on, more_columns):
        if chosen_gpus:  # the chart shows the GPUs chosen for the answer too
            sel = sel[gpu_names(sel).isin(list(chosen_gpus))]
        points = throughput_points(sel, tp_metric)
        figure = charts.throughput(
            points, tp_metric, title("Training throughput vs batch size", fvals)
        )
        fits = readable(fit_summary(points).rename(columns={"best_value": f"best_{tp_metric}"}))
        a = answer_for(
            sel,
            fvals,
            baseline=None if base in (None, "", SLOWEST) else base,
            strict=bool(strict_on),
            gpus=list(chosen_gpus or []),
        )
        ans = a.table
        md = "\n\n".join([f"Speedups are over **{a.baseline}**." if a.baseline else "", *a.notes])
        baseline_part = f"vs-{a.baseline}" if len(ans) and a.baseline else ""
        name = download_name("answer", fvals, [baseline_part, "strict" if strict_on else ""])
        path = csv_file(ans, csv_dir, name)  # every column; the page shows the chosen ones
        shown = shown_columns(ans, list(more_columns or []))
        # an update, not a new DownloadButton: one made while the page is built is a new widget
        widths = column_widths(list(shown.columns))
        return [
            md,
            gr.update(value=shown, column_widths=widths),
            gr.update(value=path),
            plot_value(figure),
            fits,
        ]

    def refresh(frame: pd.DataFrame, current):
        return gr.Dropdown(choices=[SLOWEST, *gpu_choices(frame)], value=current)

    def refresh_gpus(frame: pd.DataFrame, current):
        opts = gpu_choices(frame)
        kept = [g for g in current or [] if g in opts]
        return gr.Dropdown(choices=opts, value=kept, multiselect=True)

    tab = Tab(
        inputs=[metric, baseline, gpus, strict, more],
        outputs=[note, answer_table, download, plot, table],
        render=render,
        refresh=[(baseline, refresh), (gpus, refresh_gpus)],
        url={"metric": metric, "baseline": baseline, "gpus": gpus, "strict": strict, "cols": more},
        url_choices={"baseline": lambda f: [SLOWEST, *gpu_choices(f)], "gpus": gpu_choices},
    )
    redraw_on_own_inputs(ctx, tab)
    return tab
