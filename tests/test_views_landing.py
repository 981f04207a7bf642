"""Selections that land on rows (issue 25, defect 1): narrowed dropdowns with counts, the
sequence length and precision picked when the model changes, the empty message naming what
exists, and a page that does not open on a CPU smoke run."""

from __future__ import annotations

import pandas as pd

from sweep.analysis.answer import answer
from sweep.analysis.landing import best_for_model, narrowed_choices, what_exists
from sweep.analysis.memory import memory_fit, memory_points
from sweep.analysis.selection import ANY, MEASURED_DATASET, default_filters


def _frame():
    rows = []
    for gpu in ("NVIDIA H200", "NVIDIA A100-SXM4-40GB", "Tesla V100-DGXS-16GB"):
        rows.append(("roberta-large", 512, "fp16-mixed", gpu, "ok", "ref"))
    rows.append(("roberta-large", 128, "bf16-mixed", "NVIDIA H200", "ok", "ref"))
    rows.append(("roberta-large", 128, "bf16-mixed", "NVIDIA H200", "ok", "ref"))
    rows.append(("roberta-large", 2048, "fp16-mixed", "NVIDIA H200", "oom", "ref"))
    rows.append(("bert-tiny", 128, "fp32", "cpu", "ok", MEASURED_DATASET))
    cols = ["model", "seq_len", "precision", "gpu", "status", "dataset"]
    df = pd.DataFrame(rows, columns=cols)
    return df.assign(batch_size=8, tokens_per_s=1000.0)


def test_dropdowns_offer_only_values_with_rows_and_count_gpus():
    df = _frame()
    seq = narrowed_choices(df, {"model": "roberta-large", "precision": ANY}, "seq_len")
    assert seq == [(ANY, ANY), ("128 · 1 GPU", "128"), ("512 · 3 GPUs", "512")]  # no 2048: oom
    prec = narrowed_choices(df, {"model": "roberta-large", "seq_len": "512"}, "precision")
    assert [v for _, v in prec] == [ANY, "fp16-mixed"]  # no fp32 (bert-tiny's) under roberta
    kept = narrowed_choices(df, {"model": "roberta-large", "precision": "fp32"}, "precision")
    assert ("fp32 · no rows here", "fp32") in kept  # the current value is never dropped


def test_every_model_is_one_pick_away_whatever_the_sequence_length_and_precision():
    # choosing a model picks its sequence length and precision (best_for_model): bert-tiny,
    # measured in fp32 at 128 only, is offered under roberta-large's 512 in fp16
    df = _frame()
    at = {"model": "roberta-large", "seq_len": "512", "precision": "fp16-mixed"}
    assert narrowed_choices(df, at, "model") == [
        (ANY, ANY),
        ("bert-tiny · 1 GPU", "bert-tiny"),
        ("roberta-large · 3 GPUs", "roberta-large"),
    ]


def test_a_new_model_picks_the_sequence_length_and_precision_with_most_gpus():
    assert best_for_model(_frame(), "roberta-large", {"precision": "fp32"}) == {
        "seq_len": "512",
        "precision": "fp16-mixed",
    }
    assert best_for_model(_frame(), "gpt2", {}) == {}


def test_the_empty_message_names_what_exists():
    df = _frame()
    text = what_exists(df, {"model": "roberta-large", "seq_len": "2048"})
    assert "seq_len 512 in fp16-mixed (3 GPUs)" in text and "seq_len 128" in text
    a = answer(df.assign(batch_size=8), "roberta-large", 2048, "fp16-mixed")
    assert "Measured for roberta-large: seq_len 512 in fp16-mixed (3 GPUs)" in a.notes[-1]


def test_the_empty_message_lists_lengths_under_the_other_filters_held():
    # gpt2: seq-cls at 1,024, causal-lm at 512 only. Asked causal-lm at 1,024, the message
    # listed 1,024 (the seq-cls rows): the length just refused
    df = _frame().assign(task="seq-cls")
    extra = pd.DataFrame(
        [("gpt2", 1024, "bf16-mixed", "NVIDIA H200", "ok", "ref", "seq-cls"),
         ("gpt2", 512, "bf16-mixed", "NVIDIA H200", "ok", "ref", "causal-lm")],
        columns=["model", "seq_len", "precision", "gpu", "status", "dataset", "task"],
    ).assign(batch_size=8, tokens_per_s=1000.0)  # fmt: skip
    df = pd.concat([df, extra], ignore_index=True)
    text = what_exists(df, {"model": "gpt2", "seq_len": "1024", "task": "causal-lm"})
    assert text == "Measured for gpt2 with task causal-lm: seq_len 512 in bf16-mixed (1 GPU)."
    none = what_exists(df, {"model": "roberta-large", "task": "causal-lm"})
    assert none == "roberta-large has no ok measurement with task causal-lm: set it back to (any)."


def test_the_page_does_not_open_on_a_cpu_smoke_run():
    assert default_filters(_frame()) == {
        "model": "roberta-large",
        "seq_len": "512",
        "precision": "fp16-mixed",
    }


def test_memory_fit_of_no_rows_is_an_empty_table():
    fit = memory_fit(memory_points(_frame().iloc[0:0], "nvml_peak_used_gib"))
    assert fit.empty and "series" in fit
