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


def _decoder(seq: int) -> int:
    """A decoder's FLOPs per sequence at ``seq`` tokens: c0 + c1*s + c2*s^2, integers."""
    return 7_000_000 + 2_468_000_000 * seq + 131_072 * seq * seq


def test_a_length_never_counted_is_the_quadratic_through_four_counted_ones():
    memory = FlopsByShape()
    lm = {**CFG, "model": "llama-3.2-1b", "task": "causal-lm", "batch_size": 1}
    for i, seq in enumerate((2048, 4096, 8192)):
        memory.remember({**lm, "seq_len": seq}, "ok", {"flops_per_step": _decoder(seq)})
        assert memory.per_sequence({**lm, "seq_len": 6144}) is None, i  # not four yet
    memory.remember({**lm, "seq_len": 16384}, "ok", {"flops_per_step": _decoder(16384)})
    assert memory.per_sequence({**lm, "seq_len": 12160}) == _decoder(12160)
    assert memory.per_sequence({**lm, "seq_len": 12160, "batch_size": 4}) == _decoder(12160)
    # another shape of the same lengths never gets it
    assert memory.per_sequence({**lm, "seq_len": 12160, "finetune": "lora"}) is None


def test_counts_not_on_one_quadratic_keep_counting():
    memory = FlopsByShape()
    lm = {**CFG, "model": "llama-3.2-1b", "task": "causal-lm", "batch_size": 1}
    for seq in (2048, 4096, 8192):
        memory.remember({**lm, "seq_len": seq}, "ok", {"flops_per_step": _decoder(seq)})
    # a fourth count off the quadratic by one FLOP (a sliding window, an odd kernel): no guess
    memory.remember({**lm, "seq_len": 16384}, "ok", {"flops_per_step": _decoder(16384) + 1})
    assert memory.per_sequence({**lm, "seq_len": 12160}) is None
    assert memory.per_sequence({**lm, "seq_len": 8192}) == _decoder(8192)  # a counted one stays


def test_the_quadratic_of_four_real_counts_is_the_count_at_a_fifth_length():
    # torch's counter on a grouped-query decoder (llama-tiny), full fine-tuning with
    # checkpointing: the engine's quadratic must give what the trial would have counted
    from sweep.trial.workload import build_workload, count_flops

    def counted(seq: int) -> tuple[dict, int]:
        cfg = TrialConfig(
            model="llama-tiny",
            task="causal-lm",
            batch_size=1,
            seq_len=seq,
            device="cpu",
            gradient_checkpointing=True,
        )
        return cfg.to_dict(), count_flops(build_workload(cfg, "cpu"))

    memory = FlopsByShape()
    for seq in (40, 72, 100, 136):
        config, flops = counted(seq)
        memory.remember(config, "ok", {"flops_per_step": flops})
    config, flops = counted(200)
    assert memory.per_sequence(config) == flops
