"""The fine-tune planner (sweep.analysis.planner) on invented rows: each column's rule, an honest
"not measured", capped rows that never give a speed, the cost arithmetic."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from sweep.analysis.cost import DEFAULT_PRICES
from sweep.analysis.plan_evidence import card_of, knobs_of
from sweep.analysis.planner import COLUMNS, plan
from sweep.analysis.selection import combine
from sweep.results.frame import trials_frame
from sweep.results.record import Trial

H200 = "NVIDIA H200"
A100 = "NVIDIA A100-SXM4-40GB"
MEMORY = {H200: 139.8, A100: 39.4}
MODEL = "llama-3.1-8b"


def row(gpu, batch, tokens=None, status="ok", seq_len=4096, mem=None, losses=None, **cfg):
    config = {
        "model": MODEL,
        "task": "causal-lm",
        "seq_len": seq_len,
        "precision": "bf16-mixed",
        "batch_size": batch,
        "finetune": "lora",
        "optimizer": "adamw-fused",
        "gradient_checkpointing": False,
        "liger": False,
        "device": "cuda",
        **cfg,
    }
    metrics = {}
    if status == "ok":
        metrics = {"tokens_per_s": tokens, "step_time_ms_p50": 100.0}
        if mem is not None:
            metrics["nvml_peak_used_gib"] = mem
        if losses is not None:
            metrics["losses"] = losses
    return Trial(
        config=config,
        status=status,
        metrics=metrics,
        env={"gpu_name": gpu, "gpu_memory_total_gib": MEMORY[gpu]},
        gpu_type=gpu.split()[1].split("-")[0],
        sweep="s",
    )


def frame(trials, capped=()):
    """A results frame; the rows at the indices of ``capped`` ran on an allocator capped at the
    size given (index -> GB), as the capacity field will say."""
    f = combine(trials_frame(trials), {})
    cap = pd.Series([float("nan")] * len(f), index=f.index)
    for i, gb in dict(capped).items():
        cap.iloc[i] = gb
    return f.assign(capacity_gb=cap)


def line(table, card, method="LoRA"):
    got = table[(table["Card"] == card) & (table["Method"] == method)]
    assert len(got) == 1, (card, method, table)
    return got.iloc[0]


def fleet():
    return [
        # H200, LoRA: plain up to 8 (16 OOM); with checkpointing 2000 tokens/s at 16
        row(H200, 4, 3000.0, mem=40.0, losses=[2.0, 1.9]),
        row(H200, 8, 3200.0, mem=70.0, losses=[2.0, 1.9]),
        row(H200, 16, status="oom"),
        row(H200, 16, 2000.0, gradient_checkpointing=True, losses=[2.0, 1.9]),
        row(H200, 1, 1500.0, seq_len=8192, mem=30.0),
        # A100 40GB, LoRA: out of memory at batch 1 plain; fits with checkpointing
        row(A100, 1, status="oom"),
        row(A100, 1, 900.0, gradient_checkpointing=True),
        # H200, full: out of memory from batch 2 (nothing smaller tried)
        row(H200, 2, status="oom", finetune="full"),
    ]


def test_one_row_per_card_and_method_then_per_measured_gpu():
    t = plan(frame(fleet()), MODEL, 4096, 50e6).table
    assert list(t.columns) == COLUMNS
    cards = ["16 GB", "24 GB", "40 GB", "48 GB", "80 GB", "141 GB"]
    assert (
        list(t["Card"])
        == [c for c in cards for _ in range(3)] + ["A100-SXM4-40GB"] * 3 + ["H200"] * 3
    )
    assert list(t["Method"][:3]) == ["Full", "LoRA", "QLoRA"]


def test_measured_gpu_row_fastest_fitting_configuration_and_its_knobs():
    t = plan(frame(fleet()), MODEL, 4096, 50e6).table
    h = line(t, "H200")
    assert h["Fits"] == "yes" and h["Known from"] == "measured on H200"
    assert h["Knobs"] == "none"  # 3200 tokens/s plain beats 2000 with checkpointing
    assert h["Tokens/s"] == 3200.0 and h["At batch"] == 8 and h["Largest batch"] == 8
    assert h["Longest sequence"] == 8192  # the same configuration ran at 8192
    a = line(t, "A100-SXM4-40GB")
    assert a["Fits"] == "yes" and a["Knobs"] == "gradient checkpointing"
    assert a["Largest batch"] == 1


def test_card_rows_take_a_real_gpu_of_that_size_as_measured():
    t = plan(frame(fleet()), MODEL, 4096, 50e6).table
    assert line(t, "141 GB")["Known from"] == "measured on H200"
    assert line(t, "40 GB")["Known from"] == "measured on A100-SXM4-40GB"
    assert line(t, "40 GB")["Tokens/s"] == 900.0


def test_out_of_memory_only_says_no_and_from_which_batch():
    t = plan(frame(fleet()), MODEL, 4096, 50e6).table
    full = line(t, "H200", "Full")
    assert full["Fits"] == "not at batch 2 or more"
    assert full["Known from"] == "measured on H200" and pd.isna(full["Tokens/s"])
    assert "none of 1 configuration" in full["Knobs"]


def test_not_measured_is_said_honestly():
    t = plan(frame(fleet()), MODEL, 4096, 50e6).table
    q = line(t, "24 GB", "QLoRA")
    assert q["Fits"] == "unknown" and q["Known from"] == "not measured"
    assert pd.isna(q["Tokens/s"]) and pd.isna(q["Hours"]) and pd.isna(q["$"])
    empty = plan(frame(fleet()), "qwen2.5-7b", 4096, 50e6)
    assert set(empty.table["Known from"]) == {"not measured"}
    assert "No training rows" in empty.notes[0]


def test_a_model_named_in_other_case_is_found_and_a_wrong_name_gets_suggestions():
    t = plan(frame(fleet()), "Llama-3.1-8B", 4096, 50e6).table
    assert line(t, "H200")["Known from"] == "measured on H200"
    note = plan(frame(fleet()), "llama-3.1-8x", 4096, 50e6).notes[0]
    assert note.startswith("No training rows of 'llama-3.1-8x'") and "llama-3.1-8b" in note


def test_a_length_nothing_answers_names_the_lengths_that_were_measured():
    # rows at 1,024 tokens only (one batch each: no memory model): 4,096 is not measured,
    # and the note says what is instead of leaving 18 rows of "not measured" unexplained
    rows = [row(H200, 2, 5000.0, seq_len=1024), row(A100, 1, 900.0, seq_len=1024, finetune="full")]
    p = plan(frame(rows), MODEL, 4096, 50e6)
    assert set(p.table["Known from"]) == {"not measured"}
    assert p.notes[-1].endswith("Lengths measured: A100-SXM4-40GB: 1,024; H200: 1,024.")
    assert not any("Lengths measured" in n for n in plan(frame(fleet()), MODEL, 4096, 1e6).notes)


def test_predicted_by_the_memory_model_without_a_speed():
    # H200 LoRA plain: 40 GiB at batch 4, 70 at 8: 10 + 7.5 GiB per sequence
    t = plan(frame(fleet()), MODEL, 4096, 50e6).table
    p = line(t, "24 GB")
    assert p["Fits"] == "yes" and p["Known from"].startswith("predicted by the memory model")
    assert p["Largest batch"] == 1  # (24 * 0.98 - 10) / 7.5 = 1.8
    assert pd.isna(p["Tokens/s"]) and pd.isna(p["Hours"])
    assert line(t, "16 GB")["Fits"] == "no"  # (16 * 0.98 - 10) / 7.5 < 1


def test_capped_rows_are_emulated_fits_and_never_give_a_speed():
    trials = fleet() + [row(H200, 2, 2500.0, gradient_checkpointing=True, liger=True)]
    t = plan(frame(trials, capped={len(trials) - 1: 16}), MODEL, 4096, 50e6).table
    e = line(t, "16 GB")
    assert e["Fits"] == "yes" and e["Known from"] == "emulated on a capped H200"
    assert e["Knobs"] == "gradient checkpointing + Liger" and e["Largest batch"] == 2
    assert pd.isna(e["Tokens/s"]) and pd.isna(e["Hours"]) and pd.isna(e["$"])
    # and the capped row's speed is not the H200's either
    assert line(t, "H200")["Tokens/s"] == 3200.0


def test_a_capped_row_alone_gives_no_gpu_row():
    t = plan(frame([row(H200, 2, 9999.0)], capped={0: 24}), MODEL, 4096, 1e6).table
    assert "H200" not in set(t["Card"])
    assert 9999.0 not in set(t["Tokens/s"].dropna())
    assert line(t, "24 GB")["Known from"] == "emulated on a capped H200"


def test_hours_and_dollars_for_the_tokens_at_the_prices():
    t = plan(frame(fleet()), MODEL, 4096, 50e6).table
    h = line(t, "H200")
    hours = 50e6 / 3200.0 / 3600
    assert h["Hours"] == pytest.approx(round(hours, 2))
    assert h["$ per GPU-hour"] == 5.408
    assert h["$"] == pytest.approx(round(hours * 5.408, 2))
    prices = pd.DataFrame([["H200", 2.0, "mine"]], columns=DEFAULT_PRICES.columns)
    res = plan(frame(fleet()), MODEL, 4096, 1e9, prices=prices)
    h = line(res.table, "H200")
    assert h["$"] == pytest.approx(round(1e9 / 3200.0 / 3600 * 2.0, 2))
    assert pd.isna(line(res.table, "A100-SXM4-40GB")["$"])
    assert any("No price for: A100-SXM4-40GB" in n for n in res.notes)


def test_loss_parity_mark_of_the_configuration():
    trials = [
        row(H200, 4, 1000.0, losses=[2.0, 1.9]),
        row(H200, 4, 2000.0, liger=True, losses=[2.0, 1.5]),  # faster, and moves the loss
    ]
    t = plan(frame(trials), MODEL, 4096, 1e6).table
    h = line(t, "H200")
    assert h["Knobs"] == "Liger" and h["Loss parity"].startswith("differs")
    solo = plan(frame([row(H200, 4, 1000.0)]), MODEL, 4096, 1e6).table
    assert line(solo, "H200")["Loss parity"] == "plain (no knob)"


def test_methods_and_capacities_are_chosen():
    t = plan(frame(fleet()), MODEL, 4096, 1e6, methods=["qlora"], capacities=(24,)).table
    assert list(t["Card"]) == ["24 GB", "A100-SXM4-40GB", "H200"]
    assert set(t["Method"]) == {"QLoRA"}


def test_helpers():
    assert card_of(139.8, (80, 141)) == 141 and card_of(39.4, (16, 40, 80)) == 40
    assert card_of(60.0, (40, 80)) is None and card_of(None, (40,)) is None
    assert knobs_of({"optimizer": "paged-adamw-8bit", "liger": "True"}) == (
        "Liger",
        "8-bit optimizer",
    )


def test_the_question_the_app_opens_on_and_the_models_offered():
    from sweep.analysis.planner import default_question, model_choices

    assert default_question(frame([])) == ("llama-3.1-8b", 4096)
    gpt2 = [row(H200, b, 1.0, model="gpt2", finetune="full", seq_len=1024) for b in (1, 2, 4)]
    assert default_question(frame(gpt2)) == ("gpt2", 1024)  # causal LM, full
    assert default_question(frame([*gpt2, row(H200, 4, 1.0)])) == (MODEL, 4096)  # LoRA first
    models = model_choices(frame(gpt2))
    assert models[0] == "gpt2" and "llama-3.1-8b" in models and "bert-base-uncased" not in models


def test_predicted_from_one_measured_peak_on_a_bigger_card():
    # One batch measured on the H200 (NVML peak 20 GiB, the context in it): no line, but a card
    # that shows more than that, with the margin, holds that batch; a smaller one is not known.
    t = plan(frame([row(H200, 4, 3000.0, mem=20.0)]), MODEL, 4096, 1e6).table
    p = line(t, "24 GB")  # 24 * 0.985 * 0.98 = 23.2 GiB
    assert p["Fits"] == "yes" and p["Largest batch"] == 4
    assert p["Known from"] == "predicted from a peak measured on H200 (20.0 GiB at batch 4)"
    assert pd.isna(p["Tokens/s"]) and pd.isna(p["Hours"])  # never a speed on another card
    assert line(t, "16 GB")["Fits"] == "unknown"  # 15.4 GiB: a peak over it says nothing
    assert line(t, "141 GB")["Known from"] == "measured on H200"  # its own card: measured
    # torch's exact reserved peak plus the least context where NVML read less (or nothing)
    reserved = row(H200, 4, 3000.0, mem=20.0)
    reserved.metrics["peak_reserved_gib"] = 22.9  # + 0.5 = 23.4 GiB: over a 24 GB card
    t = plan(frame([reserved]), MODEL, 4096, 1e6).table
    assert line(t, "24 GB")["Fits"] == "unknown" and line(t, "40 GB")["Fits"] == "yes"
    # a peak at another length says nothing at this one
    t = plan(frame([row(H200, 4, 3000.0, mem=20.0, seq_len=2048)]), MODEL, 4096, 1e6).table
    assert line(t, "24 GB")["Fits"] == "unknown"
    # NVML's peak counts the driver's own region (NVML's total less CUDA's: 0.6 GiB on the
    # H200), which a card's shown total leaves out: 23.5 GiB read is 22.9 GiB of a 24 GB card
    driver = row(H200, 4, 3000.0, mem=23.5)
    driver.metrics.update(nvml_total_gib=140.4, device_total_gib=139.8)
    assert line(plan(frame([driver]), MODEL, 4096, 1e6).table, "24 GB")["Fits"] == "yes"
    del driver.metrics["nvml_total_gib"]  # without NVML's total: as read, over 23.2 GiB
    assert line(plan(frame([driver]), MODEL, 4096, 1e6).table, "24 GB")["Fits"] == "unknown"


def test_a_batch_that_fitted_a_longer_sequence_fits_a_shorter_one():
    # A max-seq atlas's probes on a capped card: batch 1 fitted 5,760 tokens, 5,888 did not.
    # Memory grows with the length: at 4,096 tokens batch 1 fits that card; at 6,144 it does not.
    trials = [row(H200, 1, 100.0, seq_len=5760), row(H200, 1, status="oom", seq_len=5888)]
    capped = frame(trials, capped={0: 24, 1: 24})
    at = {s: line(plan(capped, MODEL, s, 1e6).table, "24 GB") for s in (4096, 6144)}
    assert at[4096]["Fits"] == "yes" and at[4096]["Largest batch"] == 1
    assert at[4096]["Known from"] == "emulated on a capped H200 at 5,760 tokens"
    assert pd.isna(at[4096]["Tokens/s"])
    assert at[6144]["Fits"] == "no"
    # on the card itself: fits at the shorter length, its speed only where it ran
    t = plan(frame([row(H200, 2, 100.0, seq_len=8192)]), MODEL, 4096, 1e6).table
    h = line(t, "H200")
    assert h["Fits"] == "yes" and h["Known from"] == "measured on H200 at 8,192 tokens"
    assert h["Largest batch"] == 2 and pd.isna(h["Tokens/s"]) and pd.isna(h["Hours"])


def _capped_once(trial, cap_gib, reserved, allocated, outside=None):
    """A capped row's memory readings as the trial writes them (``outside``: the second cap's)."""
    trial.metrics.update(
        capacity_cap_gib=cap_gib, peak_reserved_gib=reserved, peak_allocated_gib=allocated
    )
    if outside is not None:
        trial.metrics["outside_allocator_gib"] = outside
    return trial


def test_a_row_capped_once_with_little_to_spare_fits_only_probably():
    # The H100 atlas of 2026-12-07 (capped once): Llama-3.2-1B LoRA fitted 5,760 tokens under a
    # 24 GB card's cap of 23.239 GiB with 0.032 GiB to spare, where the cap was up to 0.25 GiB
    # above what a real card leaves: at 5,760 tokens that may not fit a real 24 GB card.
    def probes():
        return [
            _capped_once(row(H200, 1, 100.0, seq_len=5760), 23.239, 23.207, 20.821),
            row(H200, 1, status="oom", seq_len=5888),
        ]

    capped = frame(probes(), capped={0: 24, 1: 24})
    e = line(plan(capped, MODEL, 5760, 1e6).table, "24 GB")
    assert e["Fits"] == "probably"
    assert e["Known from"] == "emulated on a capped H200, 0.03 GiB spare"
    # the same probe capped again after its warm-up (the cap then is the card's): a sure fit
    again = probes()
    again[0].metrics["outside_allocator_gib"] = 0.749
    e = line(plan(frame(again, capped={0: 24, 1: 24}), MODEL, 5760, 1e6).table, "24 GB")
    assert e["Fits"] == "yes" and e["Known from"] == "emulated on a capped H200"
    # at 4,096 tokens the step allocates 5.3 GiB less (measured uncapped): surely fits
    uncapped = row(H200, 1, 900.0, seq_len=4096)
    uncapped.metrics["peak_allocated_gib"] = 15.531
    both = frame([*probes(), uncapped], capped={0: 24, 1: 24})
    e = line(plan(both, MODEL, 4096, 1e6).table, "24 GB")
    assert e["Fits"] == "yes" and e["Known from"] == "emulated on a capped H200 at 5,760 tokens"
    # without that measurement nothing says how much less: still only probably
    e = line(plan(capped, MODEL, 4096, 1e6).table, "24 GB")
    assert e["Fits"] == "probably"


def test_a_sure_fit_with_a_knob_is_shown_before_a_narrow_one_without():
    plain = _capped_once(row(H200, 1, 100.0), 23.239, 23.1, 21.0)
    ckpt = _capped_once(row(H200, 1, 100.0, gradient_checkpointing=True), 23.239, 20.0, 19.0)
    t = plan(frame([plain, ckpt], capped={0: 24, 1: 24}), MODEL, 4096, 1e6).table
    e = line(t, "24 GB")
    assert e["Fits"] == "yes" and e["Knobs"] == "gradient checkpointing"
    # a row with 0.25 GiB or more to spare is sure whether or not it was capped again
    roomy = _capped_once(row(H200, 1, 100.0), 23.239, 22.9, 21.0)
    t = plan(frame([roomy, ckpt], capped={0: 24, 1: 24}), MODEL, 4096, 1e6).table
    assert line(t, "24 GB")["Fits"] == "yes" and line(t, "24 GB")["Knobs"] == "none"


def _lengths(peaks, **cfg):
    """LoRA at batch 1 on the H200, one row per length: {seq_len: NVML peak GiB}."""
    return [row(H200, 1, 1000.0, seq_len=s, mem=m, **cfg) for s, m in peaks.items()]


def test_predicted_across_lengths_where_the_asked_one_has_a_single_batch():
    # 6 GiB fixed + 6 GiB per 2,048 tokens (an atlas's batch-1 probes): at 4,096 tokens a
    # 40 GB card (39.2 GiB with the margin) holds batch 2 (30 GiB), not 3 (42)
    t = plan(frame(_lengths({2048: 12.0, 4096: 18.0, 8192: 30.0})), MODEL, 4096, 1e6).table
    p = line(t, "40 GB")
    assert p["Fits"] == "yes" and p["Largest batch"] == 2
    assert p["Known from"] == "predicted by the memory model (H200, 3 lengths, miss <= 0.0%)"
    assert p["Longest sequence"] == 11264  # at batch 1: (39.2 - 6) / 6 * 2048 = 11,332, in 128s
    assert line(t, "16 GB")["Fits"] == "no"  # 6 + 12 > 15.7
    # 80 GB: batch 6, 24,576 tokens a step, three times the most measured (8,192)
    assert line(t, "80 GB")["Known from"].endswith(", extrapolated)")


def test_a_prediction_never_says_a_card_fits_what_a_bigger_card_ran_out_of_memory_on():
    # the model (above) says a 40 GB card holds 11,264 tokens and batch 2 at 4,096; a 48 GB
    # capped run failed at 10,240 tokens, and one at batch 2: measured limits the model is over
    lengths = _lengths({2048: 12.0, 4096: 18.0, 8192: 30.0})
    oom = [row(H200, 1, seq_len=10240, status="oom"), row(H200, 2, seq_len=4096, status="oom")]
    capped = {len(lengths): 48.0, len(lengths) + 1: 48.0}
    p = line(plan(frame(lengths + oom, capped), MODEL, 4096, 1e6).table, "40 GB")
    assert p["Known from"].startswith("predicted by the memory model")
    assert p["Longest sequence"] == 10112 and p["Largest batch"] == 1
    # a failure on a smaller card says nothing of a bigger one
    capped = {len(lengths): 24.0, len(lengths) + 1: 24.0}
    p = line(plan(frame(lengths + oom, capped), MODEL, 4096, 1e6).table, "40 GB")
    assert p["Longest sequence"] == 11264 and p["Largest batch"] == 2


def test_the_longest_sequence_is_the_cards_with_its_knobs_and_at_least_a_smaller_cards():
    # a capped 24 GB card: plain LoRA ran up to 5,760 tokens, with checkpointing 12,672; a
    # 48 GB one only plain, to 8,064. The row shows the plain configuration (fewest knobs) but
    # the card's longest; it said 5,760 on 24 GB and 8,064 on 48 GB (a bigger card, shorter)
    ckpt = {"gradient_checkpointing": True}
    trials = [
        row(H200, 1, seq_len=4096),
        row(H200, 1, seq_len=5760),
        row(H200, 1, seq_len=4096, **ckpt),
        row(H200, 1, seq_len=12672, **ckpt),
        row(H200, 1, seq_len=4096),
        row(H200, 1, seq_len=8064),
    ]
    capped = {0: 24.0, 1: 24.0, 2: 24.0, 3: 24.0, 4: 48.0, 5: 48.0}
    t = plan(frame(trials, capped), MODEL, 4096, 1e6, capacities=(24, 40, 48)).table
    small, big = line(t, "24 GB"), line(t, "48 GB")
    assert small["Knobs"] == "none" and small["Longest sequence"] == 12672
    assert small["Longest with"] == "gradient checkpointing"
    assert big["Longest sequence"] == 12672
    assert big["Longest with"] == "gradient checkpointing (as on the 24 GB card)"
    assert line(t, "40 GB")["Known from"] == "not measured"  # nothing known: nothing raised
    assert pd.isna(line(t, "40 GB")["Longest sequence"])


def test_a_short_point_under_the_line_is_left_out_and_one_above_it_stops_the_model():
    ckpt = {"gradient_checkpointing": True}
    # checkpointing: at 1,024 tokens the optimizer's peak (8 GiB) is under the line (9 GiB)
    under = _lengths({1024: 8.0, 2048: 12.0, 4096: 18.0, 8192: 30.0}, **ckpt)
    p = line(plan(frame(under), MODEL, 4096, 1e6).table, "40 GB")
    assert p["Largest batch"] == 2 and "3 lengths, miss <= 0.0%" in p["Known from"]
    # a point above the line (NVML holding cache) cannot be left out: the model says nothing
    above = _lengths({1024: 11.0, 2048: 12.0, 4096: 18.0, 8192: 30.0}, **ckpt)
    p = line(plan(frame(above), MODEL, 4096, 1e6).table, "40 GB")
    assert not p["Known from"].startswith("predicted by the memory model")


def test_batches_at_one_length_say_nothing_of_longer_sequences():
    # the line of one length (4 and 8 sequences at 4,096 tokens) predicts batches there, but
    # no length: nothing was measured across lengths
    rows = [row(H200, 4, 3000.0, mem=40.0), row(H200, 8, 3200.0, mem=70.0)]
    p = line(plan(frame(rows), MODEL, 4096, 1e6).table, "24 GB")
    assert p["Known from"] == "predicted by the memory model (H200, miss <= 0.0%)"
    assert p["Largest batch"] == 1 and pd.isna(p["Longest sequence"])


def _oom(trial, asked, free):
    return dataclasses.replace(trial, metrics={"oom_request_gib": asked, "oom_cached_gib": free})


def test_out_of_memory_by_fragmentation_makes_a_longer_fit_only_probable():
    # The H100 (2026-12-07, benchmarks/results/2026-12-07-h100-b): Llama-3.2-1B LoRA +
    # checkpointing at batch 1 fitted 49,792 tokens on the whole card, ran out of memory at
    # 48,128 with 23.00 GiB asked and 23.29 GiB reserved free (fragmentation), and at 49,920
    # with 23.85 asked and 1.13 free (capacity). Figures as measured, on the H200 rows' card.
    fit = row(H200, 1, 100.0, seq_len=49792)
    split = _oom(row(H200, 1, status="oom", seq_len=48128), 23.00, 23.29)
    full = _oom(row(H200, 1, status="oom", seq_len=49920), 23.85, 1.13)
    ask = {
        s: line(plan(frame([fit, split, full]), MODEL, s, 1e6).table, "H200")
        for s in (47000, 48128, 49792, 49920)
    }
    # read from the longer fit across the fragmentation failure: probable, and said why
    for s in (47000, 48128):
        assert ask[s]["Fits"] == "probably", s
        assert ask[s]["Known from"] == (
            "measured on H200 at 49,792 tokens; out of memory by fragmentation at 48,128 tokens "
            "(23.0 GiB asked, 23.3 GiB reserved free)"
        )
    assert ask[49792]["Fits"] == "yes"  # the length itself ran
    assert ask[49920]["Fits"] == "no"  # out of memory with the memory gone: capacity
    # the same failure by capacity (little reserved free) still says no, as before
    wall = _oom(row(H200, 1, status="oom", seq_len=48128), 23.00, 0.76)
    assert line(plan(frame([fit, wall]), MODEL, 47000, 1e6).table, "H200")["Fits"] == "yes"
    assert line(plan(frame([fit, wall]), MODEL, 48128, 1e6).table, "H200")["Fits"] == "no"
    # a row stored before the figures: read from its message (the H100's, as PyTorch wrote it);
    # without one an out-of-memory row counts as capacity
    said = dataclasses.replace(
        row(H200, 1, status="oom", seq_len=48128),
        error="CUDA out of memory. Tried to allocate 23.00 GiB. GPU 0 has a total capacity of "
        "79.18 GiB of which 3.34 GiB is free. Of the allocated memory 51.80 GiB is allocated by "
        "PyTorch, and 23.29 GiB is reserved by PyTorch but unallocated.",
    )
    assert line(plan(frame([fit, said]), MODEL, 48128, 1e6).table, "H200")["Fits"] == "probably"
    bare = row(H200, 1, status="oom", seq_len=48128)
    assert line(plan(frame([fit, bare]), MODEL, 48128, 1e6).table, "H200")["Fits"] == "no"
