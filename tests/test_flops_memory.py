"""The driver's memory of FLOPs per sequence (sweep.engine.flops): what a trial of a shape counted
reaches the next trial of that shape in its request, and nothing else does."""

from __future__ import annotations

from sweep.engine.flops import FlopsByShape
from sweep.plan.config import TrialConfig

CFG = TrialConfig(model="bert-tiny", batch_size=4, seq_len=16, device="cpu").to_dict()


def test_an_ok_count_is_kept_per_sequence_for_the_same_shape_at_any_batch():
    memory = FlopsByShape()
    memory.remember(CFG, "ok", {"flops_per_step": 4 * 1000})
    assert memory.per_sequence({**CFG, "batch_size": 64}) == 1000
    # another shape (sequence length, an option, the fine-tuning method) never gets it
    assert memory.per_sequence({**CFG, "seq_len": 32}) is None
    assert memory.per_sequence({**CFG, "gradient_checkpointing": True}) is None
    assert memory.per_sequence({**CFG, "liger": True}) is None


def test_failed_or_inexact_counts_are_not_kept():
    memory = FlopsByShape()
    memory.remember(CFG, "oom", {"flops_per_step": 4000})
    memory.remember(CFG, "ok", {"flops_per_step": 4001})  # not a multiple of the batch
    memory.remember(CFG, "ok", None)
    assert memory.per_sequence(CFG) is None
