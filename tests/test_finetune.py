"""Fine-tuning trials on the CPU with tiny decoders: LoRA and QLoRA train only their adapters,
bf16-true keeps everything in bf16, the 8-bit optimizers run, what cannot run here is an
``unsupported`` row naming why, and bad values are one error naming the field."""

from __future__ import annotations

import pytest
import torch

from sweep.plan.config import TrialConfig
from sweep.trial.run import run_trial
from sweep.trial.workload import build_workload, train_step

pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")

LM = dict(
    model="llama-tiny",
    task="causal-lm",
    batch_size=2,
    seq_len=16,
    device="cpu",
    steps=2,
    warmup_steps=1,
    precision="fp32",
)


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("finetune, precision", [("lora", "fp32"), ("qlora", "bf16-mixed")])
def test_adapters_train_and_nothing_else_moves(finetune, precision):
    w = build_workload(TrialConfig(**{**LM, "finetune": finetune, "precision": precision}), "cpu")
    before = _snapshot(w.model)
    for _ in range(2):
        train_step(w)
    after = _snapshot(w.model)
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    trainable = {n for n, p in w.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert moved == trainable  # every adapter moved (lora_B starts at zero), no base weight did
    # the optimizer holds the adapters alone
    held = {id(p) for g in w.optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in w.model.parameters() if p.requires_grad}
    assert w.params["n_params_trainable"] == sum(
        p.numel() for p in w.model.parameters() if p.requires_grad
    )


def test_qlora_base_is_4bit_the_head_is_not_and_counts_stay_logical():
    import bitsandbytes as bnb

    lora = build_workload(
        TrialConfig(**{**LM, "finetune": "lora", "precision": "bf16-mixed"}), "cpu"
    )
    qlora = build_workload(
        TrialConfig(**{**LM, "finetune": "qlora", "precision": "bf16-mixed"}), "cpu"
    )
    four_bit = [m for m in qlora.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    head = qlora.model.get_output_embeddings()
    assert not isinstance(head, bnb.nn.Linear4bit)
    # a 4-bit weight counts its elements, not its bytes: the same model as LoRA's
    for name in ("n_params", "n_matmul_params", "n_params_trainable"):
        assert qlora.params[name] == lora.params[name], name
    from sweep.trial.memory import memory_parts

    four, plain = memory_parts(qlora.model, None, None), memory_parts(lora.model, None, None)
    assert four["weights_gib"] < plain["weights_gib"]


def test_bf16_true_keeps_weights_gradients_and_state_in_bf16():
    w = build_workload(TrialConfig(**{**LM, "precision": "bf16-true"}), "cpu")
    train_step(w)
    assert {p.dtype for p in w.model.parameters()} == {torch.bfloat16}
    assert w.autocast().__class__.__name__ == "nullcontext"  # no autocast: nothing to cast
    states = [v for s in w.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    assert {t.dtype for t in states if t.dim() > 0} == {torch.bfloat16}


def test_bf16_true_under_lightning_is_the_native_step():
    # Lightning's harness had no bf16-true entry: a KeyError row
    config = {**LM, "precision": "bf16-true"}
    native = run_trial(TrialConfig(**config))
    lightning = run_trial(TrialConfig(**{**config, "harness": "lightning"}))
    assert lightning.status == "ok", lightning.error
    assert lightning.metrics["losses"] == native.metrics["losses"]
    assert lightning.metrics["weights_gib"] == native.metrics["weights_gib"]


def test_paged_optimizer_and_qlora_of_conv1d_blocks_are_unsupported_not_silently_other():
    # bitsandbytes ran paged-adamw-8bit unpaged on the CPU, and QLoRA left GPT-2's Conv1D
    # blocks in bf16: both stored as ok rows under a label they did not run
    paged = run_trial(TrialConfig(**{**LM, "optimizer": "paged-adamw-8bit"}))
    assert paged.status == "unsupported" and "needs a CUDA GPU" in paged.error
    gpt2 = {**LM, "model": "gpt2-tiny", "finetune": "qlora", "precision": "bf16-mixed"}
    rec = run_trial(TrialConfig(**gpt2))
    assert rec.status == "unsupported" and "gpt2's blocks are Conv1D layers" in rec.error
    from sweep.trial.finetune import quantize_4bit
    from sweep.trial.outcome import Unsupported

    with pytest.raises(Unsupported, match="no linear layer"):  # another layout without one
        quantize_4bit(torch.nn.Sequential(torch.nn.Conv1d(2, 2, 1)), TrialConfig(**gpt2))


def test_attention_targets_a_model_without_those_projections_cannot_have_is_unsupported():
    from sweep.trial.finetune import lora_targets
    from sweep.trial.outcome import Unsupported

    bloom_like = torch.nn.Module()
    bloom_like.config = type("Config", (), {"model_type": "bloom"})()
    bloom_like.query_key_value = torch.nn.Linear(4, 12)
    with pytest.raises(Unsupported, match="model type bloom has none of them"):
        lora_targets(bloom_like, "attention")
    attention = TrialConfig(**{**LM, "finetune": "lora", "lora_targets": "attention"})
    w = build_workload(attention, "cpu")
    assert {n.split(".")[-4] for n, p in w.model.named_parameters() if p.requires_grad} == {
        "q_proj", "k_proj", "v_proj", "o_proj"
    }  # fmt: skip


def test_8bit_optimizer_trains_and_keeps_8bit_state():
    rec = run_trial(TrialConfig(**{**LM, "optimizer": "adamw-8bit"}))
    assert rec.status == "ok", rec.error
    m = rec.metrics
    # two 8-bit moments per weight (+ their block statistics): about a quarter of fp32 AdamW's
    full = run_trial(TrialConfig(**LM)).metrics
    assert m["optimizer_state_gib"] < 0.35 * full["optimizer_state_gib"]
    assert len(m["losses"]) == m["steps_measured"]


def test_the_record_says_where_the_memory_goes_and_what_trains():
    rec = run_trial(TrialConfig(**{**LM, "finetune": "lora", "gradient_checkpointing": True}))
    assert rec.status == "ok", rec.error
    m = rec.metrics
    assert 0 < m["n_params_trainable"] < m["n_params"] / 20
    # adapter gradients and AdamW's two fp32 moments of them
    assert m["gradients_gib"] == pytest.approx(m["n_params_trainable"] * 4 / 2**30)
    assert m["optimizer_state_gib"] == pytest.approx(2 * m["gradients_gib"], rel=0.01)
    assert m["weights_gib"] > 10 * m["gradients_gib"]
    # model FLOPs: 4 per frozen matmul parameter and token, 6 per trainable one, + attention
    frozen = m["n_matmul_params"] - m["n_matmul_params_trainable"]
    attention = 12 * 2 * 128 * LM["seq_len"]
    per_token = 4 * frozen + 6 * m["n_matmul_params_trainable"] + attention
    assert m["model_flops_per_token"] == per_token
    # what the counter saw includes the recomputed forward: more than the model FLOPs
    assert m["flops_per_step"] > m["flops_per_step_analytic"]
    assert len(m["losses"]) == m["steps_measured"] and m["loss_mean"] > 0


@pytest.mark.parametrize(
    "changes, why",
    [
        ({"liger": True}, "liger: Liger's kernels are Triton kernels and need a CUDA GPU"),
        ({"liger": True, "model": "bert-tiny", "task": "seq-cls"}, "liger:"),
    ],
)
def test_what_cannot_run_here_is_an_unsupported_row_naming_why(changes, why):
    rec = run_trial(TrialConfig(**{**LM, **changes}))
    assert rec.status == "unsupported"
    assert rec.error.startswith(why)


def test_a_missing_package_says_what_to_install(monkeypatch):
    import importlib

    real = importlib.import_module

    def no_peft(name, *a, **k):
        if name == "peft":
            raise ImportError("No module named 'peft'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_peft)
    rec = run_trial(TrialConfig(**{**LM, "finetune": "lora"}))
    assert rec.status == "unsupported"
    assert "finetune: needs the peft package" in rec.error and "pip install" in rec.error


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"finetune": "lora", "lora_rank": 0}, "lora_rank"),
        ({"finetune": "lora", "lora_rank": 10**6}, "lora_rank"),
        ({"finetune": "lora", "lora_rank": True}, "lora_rank"),
        ({"finetune": "lora", "lora_targets": "mlp"}, "lora_targets"),
        ({"finetune": "dora"}, "finetune"),
        ({"finetune": "qlora", "precision": "fp32"}, "finetune"),
        ({"finetune": "qlora", "precision": "fp16-mixed"}, "finetune"),
        ({"finetune": "lora", "mode": "inference"}, "finetune"),
        ({"optimizer": "adamw-4bit"}, "optimizer"),
        ({"precision": "bf16-pure"}, "precision"),
        ({"liger": "yes"}, "liger"),
    ],
)
def test_bad_fine_tuning_values_are_one_error_naming_the_field(changes, field):
    with pytest.raises(ValueError) as err:
        TrialConfig(**{**LM, **changes})
    assert str(err.value).startswith(f"{field}:")


def test_a_failing_flop_count_leaves_the_counted_flops_empty_and_the_step_measured(monkeypatch):
    # Liger's fused loss calls addmm with out=, which torch's FLOP formula rejects: the H200's
    # llama-3.2-1b full fine-tune with liger ended as an error row before this
    import sweep.trial.workload as wl

    def rejects(w, one):
        raise TypeError("addmm_flop() got multiple values for argument 'out_shape'")

    monkeypatch.setattr(wl, "_count_once", rejects)
    monkeypatch.setattr(wl, "_count_eager", lambda w, one: rejects(w, one))
    rec = run_trial(TrialConfig(**LM))
    assert rec.status == "ok", rec.error
    m = rec.metrics
    assert m["flops_per_step"] is None and m["mfu"] is None and m["flops_count_failed"] == 1
    assert m["flops_per_step_analytic"] > 0 and m["tokens_per_s"] > 0


def test_an_emulated_cards_row_counts_no_flops(monkeypatch):
    # A capped row (capacity_gb) says what fits, never a speed: its step is not counted (at a
    # long length the count is three short steps of every atlas probe). Built on the CPU, as the
    # trial builds it after the cap; the count must not even start.
    import sweep.trial.workload as wl
    from sweep.trial.workload import build_workload, step_flops

    def must_not_count(w, one):
        raise AssertionError("counted an emulated card's step")

    monkeypatch.setattr(wl, "_count_once", must_not_count)
    w = build_workload(TrialConfig(**{**LM, "capacity_gb": 24}), "cpu")
    timings: dict = {}
    assert step_flops(w, None, timings) is None and timings == {"flops_not_counted": 1}
    # an uncapped row of the same workload counts
    monkeypatch.setattr(wl, "_count_once", lambda w, one: 7)
    timings = {}
    flops = step_flops(build_workload(TrialConfig(**LM), "cpu"), None, timings)
    assert flops == 7 * LM["batch_size"] and timings["flops_reused"] == 0


PEFT_IMPORT = """
import sys, time
from sweep.plan.config import TrialConfig
from sweep.trial.run import run_trial
lm = dict(model="llama-tiny", task="causal-lm", batch_size=2, seq_len=16, device="cpu", steps=2,
          warmup_steps=1, precision="fp32")
lora = run_trial(TrialConfig(finetune="lora", **lm))
print(lora.status, "bitsandbytes" in sys.modules)
qlora = run_trial(TrialConfig(finetune="qlora", **{**lm, "precision": "bf16-mixed"}))
print(qlora.status, qlora.metrics.get("n_params_trainable"), "bitsandbytes" in sys.modules)
"""


def test_a_lora_trial_does_not_import_bitsandbytes_and_a_later_qlora_one_still_can():
    # peft 0.21 imports bitsandbytes with itself (2.14 s of a LoRA probe on the H200, starting
    # CUDA); a LoRA trial hides it, and a QLoRA trial after it in the same process finds it
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", PEFT_IMPORT], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split()
    assert lines[:2] == ["ok", "False"], out.stdout  # LoRA: trained, no bitsandbytes loaded
    assert lines[2] == "ok" and int(lines[3]) > 0 and lines[4] == "True", out.stdout
