"""MFU of the best options against the datasheet peak and against the card's measured ceiling.

In one process: the bf16 matmul ceiling of this GPU (8192^3 products on random data, CUDA
events, warm-up excluded), then trials of bert-large-uncased at seq 512 with compile, fused
AdamW, sdpa and bf16-mixed over a few batch sizes. Target (issue 5): MFU >= 50% of the measured
ceiling.

    python benchmarks/mfu_ceiling.py [--batch-sizes 16 32 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def matmul_ceiling_tflops(n: int = 8192, reps: int = 20, warmup: int = 5) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(warmup):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1000) / 1e12


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="bert-large-uncased")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--compile", choices=["true", "false", "both"], default="both")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--json")
    args = p.parse_args()

    from benchmarks._machine import machine
    from sweep.plan.config import TrialConfig
    from sweep.trial.run import run_trial

    ceiling = matmul_ceiling_tflops()
    print(f"machine: {machine()}")
    print(f"measured bf16 matmul ceiling: {ceiling:.1f} TFLOP/s (8192^3, random data)")
    compiles = {"true": [True], "false": [False], "both": [False, True]}[args.compile]
    rows = []
    for comp in compiles:
        for bs in args.batch_sizes:
            rec = run_trial(
                TrialConfig(
                    model=args.model,
                    seq_len=args.seq_len,
                    batch_size=bs,
                    precision="bf16-mixed",
                    attention="sdpa",
                    compile=comp,
                    optimizer="adamw-fused",
                    warmup_steps=5,
                    steps=args.steps,
                    device="cuda",
                )
            )
            m = rec.metrics
            row = {
                "compile": comp,
                "batch_size": bs,
                "status": rec.status,
                "tokens_per_s": m.get("tokens_per_s"),
                "tflops_per_s": m.get("tflops_per_s"),
                "mfu_datasheet": m.get("mfu"),
                "peak_tflops": m.get("peak_tflops"),
                "peak_allocated_gib": m.get("peak_allocated_gib"),
                "step_time_ms_p50": m.get("step_time_ms_p50"),
                "forward_ms_p50": m.get("forward_ms_p50"),
                "backward_ms_p50": m.get("backward_ms_p50"),
                "optimizer_ms_p50": m.get("optimizer_ms_p50"),
                "warmup_s": m.get("warmup_s"),
            }
            if rec.status == "ok":
                row["mfu_of_ceiling"] = m["tflops_per_s"] / ceiling
                print(
                    f"  compile={comp!s:<5} batch {bs:>4}: {m['tokens_per_s']:>9.0f} tok/s, "
                    f"{m['tflops_per_s']:.1f} TFLOP/s, MFU {m['mfu']:.3f} of datasheet "
                    f"{m['peak_tflops']} / {row['mfu_of_ceiling']:.3f} of measured ceiling; "
                    f"peak {m['peak_allocated_gib']:.1f} GiB; fwd/bwd/opt "
                    f"{m['forward_ms_p50']:.1f}/{m['backward_ms_p50']:.1f}/"
                    f"{m['optimizer_ms_p50']:.1f} ms"
                )
            else:
                print(f"  compile={comp!s:<5} batch {bs:>4}: {rec.status} {rec.error[:100]}")
            rows.append(row)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "ceiling_tflops": ceiling, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
