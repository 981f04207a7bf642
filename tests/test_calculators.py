"""The public memory rules (sweep/analysis/calculators.py) as their sources state them, and the
"What fits" table that sets them against invented atlas records: no GPU."""

from __future__ import annotations

import pytest

from sweep.analysis.calculators import (
    accelerate_bytes,
    llama_factory_bytes,
    unsloth_context,
    what_fits,
)
from sweep.analysis.selection import combine
from sweep.results.frame import trials_frame
from sweep.results.memory_model import GIB
from sweep.results.record import Trial

N = 8_030_261_248  # Llama-3.1-8B's parameters


def test_the_rules_as_their_sources_state_them():
    # LLaMA-Factory: 18x / 8x / 2x / x/2 GB for x billion parameters
    assert llama_factory_bytes("full", "bf16-mixed", 7e9) == 126e9
    assert llama_factory_bytes("full", "bf16-true", 7e9) == 56e9
    assert llama_factory_bytes("lora", "bf16-mixed", 7e9) == 14e9
    assert llama_factory_bytes("qlora", "bf16-mixed", 7e9) == 3.5e9
    # accelerate: the largest part for batch 1; mixed precision's is the two fp32 moments
    assert accelerate_bytes("full", "fp32", N) == 16 * N
    assert accelerate_bytes("full", "bf16-mixed", N) == 8 * N
    assert accelerate_bytes("lora", "bf16-mixed", N) is None  # no adapter rule
    # Unsloth: Llama 3.1 8B QLoRA only; a straight line of 4,719 tokens a GB from 12 to 80 GB
    assert unsloth_context("llama-3.1-8b", "qlora", 24) == (78_475, 5_789)
    assert unsloth_context("llama-3.1-8b", "lora", 24) is None
    assert unsloth_context("llama-3.2-1b", "qlora", 24) is None
    assert unsloth_context("llama-3.1-8b", "qlora", 141) is None
    cards = (12, 16, 24, 40, 48, 80)
    seqs = [unsloth_context("llama-3.1-8b", "qlora", g)[0] for g in cards]
    pairs = zip(zip(seqs, cards, strict=True), zip(seqs[1:], cards[1:], strict=True), strict=False)
    assert {round((b - a) / (gb - ga)) for (a, ga), (b, gb) in pairs} == {4719}


def _probe(seq, status="ok", cap=None, peak=None, answer=None, **cfg):
    config = {
        "model": "llama-3.1-8b", "task": "causal-lm", "precision": "bf16-mixed",
        "finetune": "qlora", "batch_size": 1, "seq_len": seq, "device": "cuda",
        "capacity_gb": cap, **cfg,
    }  # fmt: skip
    metrics = {}
    if status == "ok":
        metrics = {"tokens_per_s": 1000.0, "n_params": N, "peak_reserved_gib": 9.0}
        if peak is not None:
            metrics["nvml_peak_used_gib"] = peak
    if answer is not None:
        metrics["max_seq_len"] = answer
    env = {"gpu_name": "NVIDIA H200", "gpu_memory_total_gib": 139.8}
    return Trial(config=config, status=status, metrics=metrics, env=env, sweep="atlas")


def test_what_fits_sets_each_answer_beside_the_rules():
    trials = [
        _probe(2048, peak=10.0),  # the smallest step on the whole card: 10 GiB
        _probe(90112, answer=90112),
        _probe(90240, status="oom"),  # the next step failed: exact
        _probe(2048, cap=24),
        _probe(12160, cap=24, answer=12160),  # no failure 128 past it: the search did not end
        _probe(12416, cap=24, status="oom"),
    ]
    rows = what_fits(combine(trials_frame(trials), {}), "llama-3.1-8b")
    small, whole = rows.iloc[0], rows.iloc[1]
    assert (small["card_gb"], whole["card_gb"]) == (24.0, 141.0)
    assert whole["longest_seq"] == 90112 and whole["exact"] and whole["on"] == "H200 (whole)"
    assert small["longest_seq"] == 12160 and not small["exact"]
    assert small["peak_2048_gb"] == pytest.approx(10 * GIB / 1e9)
    # LLaMA-Factory's x/2 GB: 4.0 GB against the measured 10.7, 62% low, "fits" 24 GB
    assert small["llama_factory_gb"] == pytest.approx(N / 2 / 1e9)
    assert small["llama_factory_off_pct"] == pytest.approx((N / 2 / (10 * GIB) - 1) * 100)
    assert small["llama_factory_fits"] and pd_isna(small["accelerate_gb"])
    # Unsloth's 24 GB context against the measured 12,160
    assert small["unsloth_seq"] == 78_475
    assert small["unsloth_off_pct"] == pytest.approx((78_475 / 12_160 - 1) * 100)
    assert small["hf_fa2_off_pct"] == pytest.approx((5_789 / 12_160 - 1) * 100)
    assert pd_isna(whole["unsloth_seq"])  # no 141 GB row in its table


def pd_isna(v) -> bool:
    return v is None or v != v
