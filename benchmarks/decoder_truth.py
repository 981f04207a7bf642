"""The product's fine-tuning step against a plain hand-written loop of the same step, side by side
in one process (issue 23's truth check; benchmarks/harness_overhead.py does it for encoders).

The plain loop is written here from scratch: transformers' causal LM from its configuration,
peft's LoRA where asked, fused AdamW over the trainable parameters, autocast bf16,
``model(input_ids=ids, labels=ids)``, CUDA events around N steps, torch's allocated peak over
them. Rounds alternate: plain loop without a mask, plain loop with an all-ones attention mask, the
product's trial (``run_trial``). Printed: tokens/s of each (median of the rounds), the ratios,
FLOPs per step (the product's count against a FlopCounterMode count of the plain model on a batch
of one, eager attention), peak allocated memory.

    python benchmarks/decoder_truth.py --model llama-3.2-1b --finetune full --batch-size 8
    python benchmarks/decoder_truth.py --model llama-3.1-8b --finetune lora --batch-size 4
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _plain_model(name: str, finetune: str, rank: int, device: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from sweep.plan.catalog import get_spec

    spec = get_spec(name)
    cfg = AutoConfig.for_model(spec.model_type, **spec.hparams)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if finetune == "lora" else torch.float32  # a frozen base in bf16
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=dtype)
    if finetune == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
            task_type="CAUSAL_LM",
        )  # fmt: skip
        model = get_peft_model(model, lora)
    model.train()
    return model, spec


def plain_loop(args, with_mask: bool) -> dict:
    """tokens/s and peak allocated GiB of the simplest correct loop."""
    import torch

    model, spec = _plain_model(args.model, args.finetune, args.lora_rank, "cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-5, fused=True)
    ids = torch.randint(3, spec.vocab_size - 1, (args.batch_size, args.seq_len), device="cuda")
    extra = {"attention_mask": torch.ones_like(ids)} if with_mask else {}

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids, **extra).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(args.steps):
        step()
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000.0
    out = {
        "tokens_per_s": args.batch_size * args.seq_len * args.steps / seconds,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    return out


def _free() -> None:
    import torch

    gc.collect()
    torch.cuda.empty_cache()


def plain_flops(args) -> int:
    """FLOPs of one step of the plain model, counted on a batch of one and scaled."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model, spec = _plain_model(args.model, args.finetune, args.lora_rank, "cuda")
    model.config._attn_implementation = "eager"  # the counter's formula rejects grouped queries
    ids = torch.randint(3, spec.vocab_size - 1, (1, args.seq_len), device="cuda")
    counter = FlopCounterMode(display=False)
    with counter:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return counter.get_total_flops() * args.batch_size


def product(args) -> dict:
    from sweep.plan.config import TrialConfig
    from sweep.trial.run import run_trial

    config = TrialConfig(
        model=args.model,
        task="causal-lm",
        finetune=args.finetune,
        lora_rank=args.lora_rank,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        precision="bf16-mixed",
        optimizer="adamw-fused",
        warmup_steps=args.warmup,
        steps=args.steps,
        profile_step=False,
        device="cuda",
    )
    rec = run_trial(config)
    if rec.status != "ok":
        raise SystemExit(f"the product's trial ended {rec.status}: {rec.error}")
    return rec.metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="llama-3.2-1b")
    p.add_argument("--finetune", choices=("full", "lora"), default="full")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    from sweep.trial.env import capture

    env = capture("cuda")
    runs: dict[str, list] = {"plain": [], "plain_mask": [], "product": []}
    for _ in range(args.rounds):
        runs["plain"].append(plain_loop(args, with_mask=False))
        _free()
        runs["plain_mask"].append(plain_loop(args, with_mask=True))
        _free()
        runs["product"].append(product(args))
        _free()
    med = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    peak = {k: statistics.median(r["peak_allocated_gib"] for r in v) for k, v in runs.items()}
    flops_plain = plain_flops(args)
    flops_product = runs["product"][0]["flops_per_step"]
    out = {
        "machine": {k: env.get(k) for k in ("gpu_name", "driver_version", "torch_version")},
        "args": vars(args),
        "tokens_per_s": med,
        "product_over_plain": med["product"] / med["plain"],
        "product_over_plain_mask": med["product"] / med["plain_mask"],
        "peak_allocated_gib": peak,
        "peak_product_over_plain": peak["product"] / peak["plain"],
        "flops_per_step": {"plain": flops_plain, "product": flops_product},
        "mfu_analytic_product": statistics.median(
            r.get("mfu_analytic") or 0 for r in runs["product"]
        ),
        "runs": runs,
    }
    print(
        f"{args.model} {args.finetune} b{args.batch_size} s{args.seq_len} on "
        f"{out['machine']['gpu_name']}: tokens/s plain {med['plain']:,.0f}, plain+mask "
        f"{med['plain_mask']:,.0f}, product {med['product']:,.0f} "
        f"({out['product_over_plain']:.3f}x plain, {out['product_over_plain_mask']:.3f}x "
        f"plain+mask); peak GiB plain {peak['plain']:.2f} product {peak['product']:.2f}; "
        f"FLOPs plain {flops_plain:.4g} product {flops_product:.4g}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
