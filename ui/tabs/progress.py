"""Sweep progress: trials stored by status, re-read every few seconds; a change in the database
reloads the data every tab shows."""

from __future__ import annotations

import time

import gradio as gr

from sweep.analysis.progress import sweep_progress
from sweep.analysis.sources import database_counts, database_plans, database_signature
from sweep.analysis.table import status_counts_table
from ui.tabs.common import PRIVATE, Context, Tab


def build(ctx: Context) -> Tab:
    holder, refresh_s = ctx.holder, ctx.refresh_s
    message = gr.Markdown()
    counts_table = gr.Dataframe(interactive=False, label="Trials stored, by status")
    sweeps_table = gr.Dataframe(
        interactive=False,
        label="Per sweep: planned, stored, failed, running now, rate and expected end",
        elem_id="sweeps-progress",
    )
    reload_btn = gr.Button("Reload results now")
    timer = gr.Timer(refresh_s, active=bool(holder.db_path))

    def tick(seen: int):
        counts, why = database_counts(holder.db_path)
        stored = sum(counts.values())
        # A written trial (new, or run again in place) changes the signature; comparing
        # counts with the rows read reloaded every tick when a row was unreadable.
        if why is None and database_signature(holder.db_path) != holder.signature:
            holder.reload()  # new rows: everything re-renders through version.change
        when = time.strftime("%H:%M:%S")
        md = (
            f"**{stored} trials** stored in `{holder.db_path}` (checked {when}, every "
            f"{refresh_s:g} s)."
            if why is None
            else f"No sweep progress: {why}."
        )
        sweeps = sweep_progress(holder.data.measured, plans=database_plans(holder.db_path))
        return md, status_counts_table(counts), sweeps, holder.version

    def reload_now():
        holder.reload()
        return holder.version

    outputs = [message, counts_table, sweeps_table, ctx.version]
    ctx.demo.load(tick, inputs=ctx.version, outputs=outputs, **PRIVATE)
    timer.tick(tick, inputs=ctx.version, outputs=outputs, api_name="progress")
    reload_btn.click(reload_now, outputs=ctx.version, **PRIVATE)
    return Tab()
