"""Table: every trial, searchable and downloadable as CSV; a selected row's environment and the
command that measures it again."""

from __future__ import annotations

import tempfile

import gradio as gr
import pandas as pd

from sweep.analysis.selection import ANY, filter_choices
from sweep.analysis.table import download_name, environment, header, readable, table
from sweep.plan.flags import reproduce_command
from ui.tabs.common import Context, Tab, csv_file, redraw_on_own_inputs


def status_choices(frame: pd.DataFrame) -> list[str]:
    return [ANY, *filter_choices(frame, "status")]


def row_by_identity(frame: pd.DataFrame, shown: dict) -> pd.Series | None:
    """The frame's row that a table row shows (its cells by header, ``readable``'s): its key
    within its dataset (one key can be both the user's row and a shipped reference row of the
    same configuration); None if there is none."""
    key, dataset = shown.get(header("key")), shown.get(header("dataset"))
    match = frame[frame["key"].astype(str) == str(key)]
    if dataset is not None and "dataset" in frame:
        match = match[match["dataset"].astype(str) == str(dataset)]
    return match.iloc[0] if len(match) else None


def build(ctx: Context) -> Tab:
    csv_dir = tempfile.mkdtemp(prefix="tsweep-ui-")
    with gr.Row():
        search = gr.Textbox(
            "", label="Search every column", placeholder="e.g. oom, H200, compile", scale=3
        )
        status = gr.Dropdown(status_choices(ctx.shown_frame), value=ANY, label="Status", scale=1)
        download = gr.DownloadButton("Download CSV", scale=1)
    results = gr.Dataframe(
        interactive=False,
        max_height=420,
        pinned_columns=1,
        elem_id="results-table",
        elem_classes=["tsweep-table"],
        label="Trials (select a row for its environment and command)",
    )
    command = gr.Code(
        label="Command that reproduces the selected row",
        language="shell",
        lines=2,
        interactive=False,
    )
    env_table = gr.Dataframe(label="Environment of the selected row", interactive=False)

    def render(sel, fvals, query, st):
        tab = table(sel, query or "", st)
        extra = [f"status-{st}" if st not in (None, "", ANY) else "", query and f"search-{query}"]
        path = csv_file(tab, csv_dir, download_name("trials", fvals, extra))
        # the page shows headers for people and short numbers; the CSV keeps every digit
        return [readable(tab), gr.update(value=path, label=f"Download CSV ({len(tab)} rows)")]

    def select_row(tab: pd.DataFrame, evt: gr.SelectData):
        row_index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if tab is None or not len(tab) or row_index is None or row_index >= len(tab):
            return "", pd.DataFrame(columns=["field", "value"])
        cells = evt.row_value if isinstance(evt.row_value, list) else tab.iloc[row_index].tolist()
        row = row_by_identity(ctx.holder.frame, dict(zip(tab.columns, cells, strict=False)))
        if row is None:
            return "", pd.DataFrame(columns=["field", "value"])
        return reproduce_command(row.to_dict()), environment(row)

    def refresh(frame: pd.DataFrame, current: str | None):
        choices = status_choices(frame)
        return gr.Dropdown(choices=choices, value=current if current in choices else ANY)

    results.select(select_row, inputs=results, outputs=[command, env_table], api_name="select_row")
    tab = Tab(
        inputs=[search, status],
        outputs=[results, download],
        render=render,
        all_rows=True,
        refresh=[(status, refresh)],
    )
    redraw_on_own_inputs(ctx, tab)
    return tab
