"""Fine-tune planner: which card, which method (full / LoRA / QLoRA), which knobs, how long and
how much to fine-tune a model on N tokens (``sweep.analysis.planner.plan``, the table
``python -m sweep fits`` prints). Its own model and sequence length: the shared filters do not
narrow it; the data sets shown do."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from sweep.analysis.answer_view import column_widths
from sweep.analysis.cost import DEFAULT_PRICES, parse_prices
from sweep.analysis.plan_evidence import SINGLE_CAP_SLACK_GIB
from sweep.analysis.planner import (
    COLUMNS,
    METHOD_LABELS,
    default_question,
    model_choices,
    parse_tokens,
    plan,
)
from ui.tabs.common import Context, Tab, redraw_on_own_inputs, sticky_table

# px per column of the plan (COLUMNS); the others NUMBER_WIDTH
WIDTHS = {
    "Card": 100,
    "Method": 72,
    "Fits": 84,
    "Known from": 240,
    "Knobs": 160,
    "Longest with": 160,
    "At batch": 60,
    "Hours": 64,
    "$": 64,
    "Loss parity": 120,
    "Data": 150,
}
NUMBER_WIDTH = 84
HELP = (
    "**Known from**: *measured on a GPU* (trials on that card), *emulated on a capped GPU* (a "
    "bigger card whose allocator was capped at this size: what fits, never how fast; *Fits: "
    "probably* where the only fit is a row capped once, before the cap was set again after the "
    f"warm-up, with less than {SINGLE_CAP_SLACK_GIB} GiB to spare: that cap could be as much "
    "above the card's room; and where a run ran out of memory by fragmentation, the memory "
    "there but split, at a length that a longer fit would otherwise answer: near a card's limit "
    "what fits is not monotone in the length), *predicted by the memory model* (peak memory "
    "against the tokens of a step, through the measured batches and lengths, with its largest "
    "miss; *extrapolated* where a batch or the longest sequence lies more than twice past the "
    "measured tokens; **Longest sequence** is then its prediction at batch 1), "
    "*predicted from a peak measured on a bigger GPU* (a batch whose peak, the CUDA context in "
    "it, fits what this card shows, less 2%), or *not measured*. **Knobs**: the memory knobs of "
    "the configuration shown (the fastest that fits where speed was measured on that card, else "
    "the one with the fewest knobs). **Longest sequence**: the card's, the longest any "
    "configuration of the method ran or is predicted to hold there (its knobs in **Longest "
    "with**), never less than a smaller card's. **Tokens/s**, **Hours** and **$** come only "
    "from trials on that card itself, one GPU per trial, at the prices below (editable). "
    "**Loss parity**: the "
    "configuration's loss against the same one without its knob."
)


def build(ctx: Context) -> Tab:
    model0, seq0 = default_question(ctx.shown_frame)
    # a page behind a password is built without data: the choices come after login (refresh)
    models = [] if ctx.private else model_choices(ctx.shown_frame)
    with gr.Row():
        model = gr.Dropdown(
            models or [model0], value=model0, label="Model", elem_id="plan-model", scale=2
        )
        seq_len = gr.Number(
            seq0, label="Sequence length (tokens)", precision=0, minimum=1, elem_id="plan-seq"
        )
        tokens = gr.Textbox("50M", label="Tokens to train on (50M, 1.5B, 2e9)", elem_id="plan-tok")
        methods = gr.CheckboxGroup(
            [(label, m) for m, label in METHOD_LABELS.items()],
            value=list(METHOD_LABELS),
            label="Methods",
            elem_id="plan-methods",
            scale=2,
        )
    note = gr.Markdown(elem_id="plan-note")
    # the answer (fits, how known, batch and length, knobs, speed, hours, $) within 1440 px; a
    # cut cell shows its whole text on hover, the card column stays in view (tsweep-table)
    table = sticky_table(
        "Fine-tune plan: one row per card and method",
        "plan",
        column_widths=column_widths(COLUMNS, WIDTHS, NUMBER_WIDTH),
    )
    gr.Markdown(HELP)
    with gr.Accordion("GPU prices ($ per GPU-hour, editable)", open=False):
        prices = gr.Dataframe(
            DEFAULT_PRICES, interactive=True, label="GPU prices", elem_id="plan-prices"
        )

    def render(sel, _fvals, chosen_model, length, token_text, chosen_methods, price_table):
        problems = []
        try:
            n_tokens = parse_tokens(token_text)
        except ValueError as exc:
            problems.append(f"Tokens: {exc}")
        try:
            seq = int(float(length))
            if seq <= 0:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"Sequence length: {length!r} is not a positive number of tokens")
        if isinstance(price_table, dict):  # the widget's initial value, as the page holds it
            price_table = pd.DataFrame(price_table["data"], columns=price_table["headers"])
        good, price_problems = parse_prices(price_table)
        if problems:
            return ["\n\n".join(f"⚠ {p}" for p in problems), pd.DataFrame()]
        result = plan(sel, chosen_model, seq, n_tokens, chosen_methods or None, prices=good)
        lines = [
            f"Fine-tuning **{chosen_model}** on **{n_tokens:,.0f} tokens** of **{seq}** tokens "
            "per sequence.",
            *result.notes,
            *(f"⚠ {p}" for p in price_problems),
        ]
        return ["\n\n".join(lines), result.table]

    def refresh(frame: pd.DataFrame, current):
        return gr.Dropdown(choices=model_choices(frame) or [current], value=current)

    tab = Tab(
        inputs=[model, seq_len, tokens, methods, prices],
        outputs=[note, table],
        render=render,
        filtered=False,
        refresh=[(model, refresh)],
        url={"plan_model": model, "plan_seq": seq_len, "plan_tokens": tokens},
        url_choices={"plan_model": model_choices},
    )
    redraw_on_own_inputs(ctx, tab)
    return tab
