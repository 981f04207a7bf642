"""Selections that land on rows: each filter's choices narrowed to the values that exist under
the other choices (with how many GPUs measured each), the sequence length and precision to pick
when the model changes, and a sentence naming what does exist when a selection is empty."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sweep.analysis.selection import (
    ANY,
    CONFIG_FIELDS,
    config_text,
    filter_choices,
    gpu_column,
    select,
)
from sweep.results.record import OK

# The filters a model's choice sets (``best_for_model``): they never narrow the model's choices.
FOLLOW_MODEL = ("seq_len", "precision")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == OK] if "status" in df else df


def _gpus(n: int) -> str:
    return f"{n} GPU" + ("" if n == 1 else "s")


def narrowed_choices(
    df: pd.DataFrame, filters: dict[str, Any], column: str
) -> list[tuple[str, str]]:
    """``column``'s dropdown choices as (label, value): "(any)", then each value with ok rows
    under the other filters' choices, labelled with how many GPUs measured it ("512 · 3 GPUs").
    The current value stays, marked "no rows", so that a dropdown never loses its value.
    The model's choices ignore the sequence length and precision: choosing a model picks those
    (``best_for_model``), so every model with rows under the other filters is one pick away."""
    follow = FOLLOW_MODEL if column == "model" else ()
    others = {k: v for k, v in filters.items() if k != column and k not in follow}
    ok = _ok(select(df, others))
    counts: dict[str, int] = {}
    if column in ok and len(ok):
        # keyed as the choices are written and select reads them (a capacity of 40.0: "40")
        value = config_text(ok, column) if column in CONFIG_FIELDS else ok[column].astype(str)
        per = ok.assign(_gpu=gpu_column(ok).astype(str)).groupby(value)["_gpu"]
        counts = per.nunique().to_dict()
    out = [(ANY, ANY)]
    current = str(filters.get(column)) if filters.get(column) not in (None, "") else ANY
    for value in filter_choices(df, column):
        if value in counts:
            out.append((f"{value} · {_gpus(counts[value])}", value))
        elif value == current:
            out.append((f"{value} · no rows here", value))
    return out


def best_for_model(df: pd.DataFrame, model: Any, filters: dict[str, Any]) -> dict[str, str]:
    """The sequence length and precision with the most GPUs for ``model`` (then the most ok
    rows), under the other ``filters`` but those two: what to show when the model changes.
    Empty where the model has no ok row."""
    others = {k: v for k, v in filters.items() if k not in ("model", *FOLLOW_MODEL)}
    ok = _ok(select(df, {**others, "model": model}))
    if ok.empty or not {"seq_len", "precision"} <= set(ok.columns):
        return {}
    ranked = (
        ok.assign(_gpu=gpu_column(ok).astype(str))
        .groupby(["seq_len", "precision"])
        .agg(gpus=("_gpu", "nunique"), n=("_gpu", "size"))
        .sort_values(["gpus", "n"], ascending=False)
    )
    seq_len, precision = ranked.index[0]
    return {"seq_len": str(seq_len), "precision": str(precision)}


def what_exists(df: pd.DataFrame, filters: dict[str, Any]) -> str:
    """For an empty selection: what the chosen model has ("measured for bert-tiny: seq_len 128
    in fp32 (1 GPU)"), or the models that have rows under the other choices."""
    model = filters.get("model")
    if model not in (None, "", ANY):
        # the other choices hold, but for the two this lists (task causal-lm: its lengths)
        held = {
            k: v
            for k, v in filters.items()
            if k not in ("model", "seq_len", "precision") and v not in (None, "", ANY)
        }
        said = ", ".join(f"{k} {v}" for k, v in held.items())
        ok = _ok(select(df, {"model": model, **held}))
        if ok.empty and held and not _ok(select(df, {"model": model})).empty:
            return f"{model} has no ok measurement with {said}: set it back to (any)."
        if ok.empty:
            return f"{model} has no ok measurement in the data shown."
        per = (
            ok.assign(_gpu=gpu_column(ok).astype(str))
            .groupby(["seq_len", "precision"])["_gpu"]
            .nunique()
            .sort_values(ascending=False)
        )
        bits = [f"seq_len {s} in {p} ({_gpus(n)})" for (s, p), n in per.head(6).items()]
        return f"Measured for {model}{f' with {said}' if said else ''}: " + "; ".join(bits) + "."
    others = {k: v for k, v in filters.items() if k != "model"}
    models = filter_choices(_ok(select(df, others)), "model")
    if not models:
        return "Nothing is measured under these choices: set some filters back to (any)."
    return "Models measured under these choices: " + ", ".join(models[:8]) + "."
