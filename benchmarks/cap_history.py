"""Why an emulated card fits less than the real one: the allocator's history under the cap.

On the H100 (2026-12-07, docs/RESULTS.md) Llama-3.2-1B LoRA with gradient checkpointing at
batch 1 fitted 49,792 tokens on the whole 80 GB card, while the same card capped to its own 80 GB
(``capacity_gb: 80``) ran out of memory from 48,128 tokens with about 23 GiB reserved but
unallocated. The capped trial differs from the uncapped one in two ways: the fraction cap itself,
and ``capacity.recap`` emptying the allocator's cache after the warm-up (the uncapped trial keeps
the warm-up's segments). This runs the trial five ways, each in a fresh process, at the two
lengths:

  default       the product's capped trial
  keep-cache    the same with the cache not emptied after the warm-up (empty_cache a no-op)
  expandable    the same with the trial option allocator: expandable (expandable_segments:True,
                set in the trial: sweep/trial/allocator.py; until 2026-12-07 the environment
                variable PYTORCH_CUDA_ALLOC_CONF)
  whole         not capped (on a card of capacity_gb: the real card's answer)
  whole-empty   not capped, the cache emptied after the warm-up as the capped trial does
  whole-expandable  not capped, allocator: expandable (does the real card then fit the length
                its default allocator failed at by fragmentation?)

    python benchmarks/cap_history.py --json OUT.jsonl [--capacity-gb 80] [--seq-lens 48128 49792]

One JSON line per trial (variant, length, status, peaks, the out-of-memory figures, the whole
record under "record") and the machine. A GPU run only: without CUDA it says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = ("default", "keep-cache", "expandable", "whole", "whole-empty", "whole-expandable")
KEEP = (
    "peak_allocated_gib",
    "peak_reserved_gib",
    "nvml_peak_used_gib",
    "capacity_cap_gib",
    "outside_allocator_gib",
    "oom_request_gib",
    "oom_allocated_gib",
    "oom_cached_gib",
    "tokens_per_s",
)


def _one(variant: str, capacity_gb: float, seq_len: int, model: str) -> dict:
    """In this (fresh) process: one capped trial of the variant; its figures."""
    import torch

    if variant == "keep-cache":
        torch.cuda.empty_cache = lambda: None  # recap's (and release's) emptying left out
    import sweep.trial.transforms as transforms
    from sweep.plan.config import TrialConfig
    from sweep.trial.run import run_trial

    if variant == "whole-empty":
        transforms.after_warmup_all = lambda config, facts: torch.cuda.empty_cache

    config = TrialConfig(
        model=model,
        task="causal-lm",
        finetune="lora",
        gradient_checkpointing=True,
        precision="bf16-mixed",
        optimizer="adamw-fused",
        batch_size=1,
        seq_len=seq_len,
        capacity_gb=None if variant.startswith("whole") else capacity_gb,
        allocator="expandable" if variant.endswith("expandable") else "default",
        device="cuda",
        warmup_steps=3,
        steps=5,
    )
    record = run_trial(config)
    stats = torch.cuda.memory_stats()
    out = {
        "variant": variant,
        "seq_len": seq_len,
        "capacity_gb": capacity_gb,
        "status": record.status,
        "error": (record.error or "")[:400],
        "num_alloc_retries": stats.get("num_alloc_retries"),
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
    }
    out.update({k: record.metrics.get(k) for k in KEEP if k in record.metrics})
    out["record"] = json.loads(record.to_json())  # the whole record, to ship or to read again
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True, help="JSONL file to append the trials to")
    p.add_argument("--capacity-gb", type=float, default=80.0)
    p.add_argument("--seq-lens", type=int, nargs="+", default=[48128, 49792])
    p.add_argument("--model", default="llama-3.2-1b")
    p.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=["default", "keep-cache", "expandable"]
    )
    p.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, args.capacity_gb, args.seq_lens[0], args.model)))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("cap_history: needs a CUDA GPU (none here)", file=sys.stderr)
        return 2
    print(f"machine: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    for seq in args.seq_lens:
        for variant in args.variants:
            env = dict(os.environ)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--json",
                    args.json,
                    "--one",
                    variant,
                    "--capacity-gb",
                    str(args.capacity_gb),
                    "--seq-lens",
                    str(seq),
                    "--model",
                    args.model,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=400,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            row = (
                json.loads(lines[-1])
                if lines
                else {
                    "variant": variant,
                    "seq_len": seq,
                    "status": f"crashed rc={proc.returncode}",
                    "error": proc.stderr[-400:],
                }
            )
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
            shown = {
                k: (round(v, 2) if isinstance(v, float) else v)
                for k, v in row.items()
                if k
                in (
                    "variant",
                    "seq_len",
                    "status",
                    "peak_allocated_gib",
                    "peak_reserved_gib",
                    "oom_cached_gib",
                    "num_alloc_retries",
                    "wall_s",
                )
            }
            print(shown, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
