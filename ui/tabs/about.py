"""About the data: where each shipped reference set comes from."""

from __future__ import annotations

import gradio as gr

from ui.tabs.common import Context, Tab


def provenance(references: dict) -> str:
    """One paragraph per reference set: the provenance its rows carry (its first row's)."""
    parts = []
    for name, frame in references.items():
        text = frame["provenance"].dropna()
        parts.append(f"**{name}**: {text.iloc[0] if len(text) else 'no provenance recorded'}")
    return "\n\n".join(parts) or "No reference rows are shipped."


def build(ctx: Context) -> Tab:
    gr.Markdown(provenance(ctx.holder.data.references))
    return Tab()
