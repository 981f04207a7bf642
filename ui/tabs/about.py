"""About the data: where each shipped reference set comes from, sweep by sweep."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ui.tabs.common import Context, Tab


def provenance(references: dict[str, pd.DataFrame]) -> str:
    """One paragraph per reference set and sweep: the provenance its rows carry (each sweep's
    own, since sweeps of one set were measured with different methods: steps, warm-up)."""
    parts = []
    for name, frame in references.items():
        sweeps = frame["sweep"].fillna("") if "sweep" in frame else pd.Series("", frame.index)
        for sweep, rows in frame.groupby(sweeps, sort=True):
            texts = rows["provenance"].dropna().value_counts()
            text = texts.index[0] if len(texts) else "no provenance recorded"
            more = f" ({len(texts) - 1} other description(s) in its rows)" if len(texts) > 1 else ""
            label = f"{name}, sweep {sweep}" if sweep else name
            parts.append(f"**{label}** ({len(rows)} rows): {text}{more}")
    return "\n\n".join(parts) or "No reference rows are shipped."


def build(ctx: Context) -> Tab:
    about = gr.Markdown(provenance(ctx.shown_references), elem_id="about")

    def refresh(_frame: pd.DataFrame, _current):
        return provenance(ctx.holder.data.references)

    return Tab(refresh=[(about, refresh)])
