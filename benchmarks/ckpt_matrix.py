"""Gradient checkpointing on every catalog decoder, with full fine-tuning, LoRA and QLoRA, through
the product's trial (issue 23: "gradient checkpointing works on every catalog decoder"). One
short trial each (batch 1, a few steps), in this process one after the other; a JSONL line per
trial and a table at the end. ``--diagnose`` first runs the small decoder's checkpointed step
by hand in the ways the product's step differs from a plain loop (an all-ones mask, a FLOP
count before the first step), to say which one a failure comes from.

    python benchmarks/ckpt_matrix.py --out ckpt.jsonl [--models smollm2-135m llama-3.2-1b]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DECODERS = (
    "smollm2-135m",
    "qwen2.5-0.5b",
    "llama-3.2-1b",
    "qwen2.5-1.5b",
    "llama-3.2-3b",
    "mistral-7b-v0.3",
    "qwen2.5-7b",
    "llama-3.1-8b",
)


def diagnose(model_name: str = "smollm2-135m") -> list[str]:
    """The checkpointed step by hand: plain, with an all-ones mask, after a FlopCounterMode
    count of one sequence (eager attention, as the product counts grouped queries)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoConfig, AutoModelForCausalLM

    from sweep.plan.catalog import get_spec

    spec = get_spec(model_name)
    lines = []
    for variant in ("plain", "mask", "count-first", "count-first+mask"):
        cfg = AutoConfig.for_model(spec.model_type, **spec.hparams)
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        ids = torch.randint(3, spec.vocab_size - 1, (2, 512), device="cuda")
        extra = {"attention_mask": torch.ones_like(ids)} if "mask" in variant else {}
        try:
            if variant.startswith("count-first"):
                model.config._attn_implementation = "eager"
                with FlopCounterMode(display=False):
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        loss = model(input_ids=ids[:1], labels=ids[:1], **extra).loss
                    loss.backward()
                model.config._attn_implementation = "sdpa"
                model.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids, **extra).loss
            loss.backward()
            lines.append(f"{variant}: ok loss {loss.item():.4f}")
        except Exception as exc:
            lines.append(f"{variant}: {type(exc).__name__}: {str(exc)[:300]}")
        del model
        torch.cuda.empty_cache()
    return lines


def configs(models, seq_len: int):
    from sweep.plan.catalog import get_spec

    for name in models:
        big = get_spec(name).num_layers * get_spec(name).hidden_size >= 28 * 3584
        for finetune in ("full", "lora", "qlora"):
            precision = "bf16-true" if finetune == "full" and big else "bf16-mixed"
            yield dict(
                model=name,
                task="causal-lm",
                finetune=finetune,
                precision=precision,
                gradient_checkpointing=True,
                batch_size=1,
                seq_len=seq_len,
                warmup_steps=1,
                steps=2,
                device="cuda",
            )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(DECODERS))
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--diagnose", action="store_true")
    p.add_argument("--out", default="ckpt.jsonl")
    args = p.parse_args(argv)
    from sweep.plan.config import TrialConfig
    from sweep.trial.run import run_trial

    if args.diagnose:
        for line in diagnose():
            print("diagnose", line, flush=True)
    rows = []
    with open(args.out, "w", encoding="utf-8") as fh:
        for kw in configs(args.models, args.seq_len):
            t0 = time.perf_counter()
            rec = run_trial(TrialConfig(**kw))
            fh.write(rec.to_json() + "\n")
            fh.flush()
            m = rec.metrics
            rows.append((kw["model"], kw["finetune"], kw["precision"], rec.status))
            print(
                f"{kw['model']:16} {kw['finetune']:6} {kw['precision']:10} {rec.status:11} "
                f"{time.perf_counter() - t0:6.1f}s setup {m.get('setup_s') or 0:5.1f}s "
                f"peak {m.get('peak_allocated_gib') or 0:6.2f} GiB {(rec.error or '')[:160]}",
                flush=True,
            )
    ok = sum(r[3] == "ok" for r in rows)
    print(f"{ok} of {len(rows)} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
