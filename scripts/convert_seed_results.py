"""Convert the original project's measurements into reference ``Trial`` records.

Input: ``anchors/seed-results/derived_per_config.csv`` (one row per configuration, 108 rows; see
that folder's README.md), from tlkh/transformers-benchmarking at commit 09628d5 (2020-11-24).
Output: ``ui/data/reference_seed_v100_a100.jsonl``, one ``Trial`` JSON per line, committed as
package data: the web app reads the committed file, never the anchors folder.

    python scripts/convert_seed_results.py [--src DIR] [--out FILE]

Mapping, and why:
- throughput: ``step_seq_s`` = bs / (cpu_hooks + optimizer_step), the step-based figure that
  includes the optimizer step, not the dashboard's formula (which left the optimizer out).
  Profiler means over all 300 steps: no warm-up was excluded, so they go in ``*_mean`` names.
- forward/backward/optimizer: host wall timers with no CUDA synchronization, so the split is not
  GPU time; stored as ``*_ms_host_mean`` so that no view mistakes them for synchronized medians.
- memory: a mean of nvidia-smi ``memory.used`` samples taken during the profiled run (context and
  allocator cache included), not a peak: stored as ``nvml_mean_used_gib``.
- MFU: the README's analytic estimate (6N + 12*L*s*d FLOPs per token; 125 / 312 dense FP16 TFLOP/s).
- failed configurations left no metrics: they become ``oom`` rows saying so, never vanish.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sweep.plan.config import TrialConfig  # noqa: E402
from sweep.results.record import OK, OOM, REFERENCE, Trial, trial_key  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SRC = os.path.join(HERE, "..", "..", "shared", "anchors", "seed-results")
DEFAULT_OUT = os.path.join(HERE, "..", "ui", "data", "reference_seed_v100_a100.jsonl")

SWEEP = "seed-2020"
REPO = "tlkh/transformers-benchmarking"
COMMIT = "09628d5"

# The original's GPU tags (README.md of seed-results). Ray accelerator types for gpu_type; the
# compute capabilities are NVIDIA's (https://developer.nvidia.com/cuda-gpus); power limits are the
# figures in the original's own tags.
GPUS = {
    "v100-16gb-300w": dict(
        gpu_type="V100",
        node="DGX Station",
        env=dict(
            gpu_name="Tesla V100-DGXS-16GB",
            compute_capability="7.0",
            power_limit_w=300,
            cpu_model="Intel Xeon E5-2698 v4",
            peak=125.0,
        ),
    ),
    "a100-40gb-400w": dict(
        gpu_type="A100",
        node="AWS p4d.24xlarge",
        env=dict(
            gpu_name="A100-SXM4-40GB",
            compute_capability="8.0",
            power_limit_w=400,
            cpu_model="Intel Xeon Platinum 8275CL",
            peak=312.0,
        ),
    ),
}
# NGC PyTorch 20.10 container, the same for both machines.
SOFTWARE = dict(
    device="cuda",
    torch_version="1.7.0a0",
    cuda_version="11.1",
    cudnn_version="8.0.4",
    lightning_version="1.0.7",
)

PROVENANCE = (
    f"Reference: {REPO} at commit {COMMIT} (2020-11-24), re-derived per configuration from its raw "
    "result folders (anchors/seed-results/derived_per_config.csv). NGC PyTorch 20.10, native AMP "
    "fp16, Apex FusedAdam, PyTorch Lightning 1.0.7, AutoModelForSequenceClassification, 300 steps. "
    "Caveats: throughput = batch / (hooks + optimizer_step) from PL SimpleProfiler means over all "
    "300 steps (optimizer included, no warm-up excluded, no repeats, no spread); "
    "forward/backward/optimizer times are host timers without GPU synchronization, so the split "
    "is not GPU time; memory is the mean of nvidia-smi samples during a DLProf-profiled run "
    "(CUDA context and allocator cache included), not a peak; MFU is an analytic estimate "
    "(6N + 12*L*s*d FLOPs per token, dense FP16 peak 125 TFLOP/s V100, 312 TFLOP/s A100); "
    "tokens are padded tokens."
)
OOM_ERROR = (
    "the original run left no metrics (no exp_info.json); almost certainly out of "
    "memory: the original project dropped such configurations silently"
)


def _f(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def convert_row(row: dict[str, str]) -> Trial:
    gpu = GPUS[row["gpu"]]
    bs, seq = int(row["batch_size"]), int(row["seq_len"])
    config = TrialConfig(
        model=row["model"],
        task="seq-cls",
        mode="train",
        batch_size=bs,
        seq_len=seq,
        precision="fp16-mixed",
        attention="eager",  # transformers of 2020 had only the eager attention path
        compile=False,
        optimizer="apex-fused-adam",
        gradient_checkpointing=False,
        harness="lightning",
        steps=300,
        profile_step=False,  # 2020 had no profiled step: nothing of it is in these rows
        device="cuda",
    ).to_dict()
    env = {k: v for k, v in gpu["env"].items() if k != "peak"} | SOFTWARE
    # A key of its own: a user's measured row of the same configuration must not collide with it.
    key = "ref-" + trial_key(config, gpu["gpu_type"])[:12]
    common = dict(
        config=config,
        env=env,
        gpu_type=gpu["gpu_type"],
        sweep=SWEEP,
        node=gpu["node"],
        source=REFERENCE,
        provenance=PROVENANCE,
        key=key,
    )
    if row["status"] != "ok":
        return Trial(
            status=OOM, error=OOM_ERROR, error_type="OutOfMemoryError (inferred)", **common
        )
    fwd, bwd = _f(row["fwd_s"]), _f(row["bwd_s"])
    opt_only, step, hooks = (
        _f(row["optimizer_only_s"]),
        _f(row["optimizer_step_s"]),
        _f(row["cpu_hooks_s"]),
    )
    seq_s, mfu = _f(row["step_seq_s"]), _f(row["mfu_step"])
    metrics = {
        "step_time_ms_mean": round((hooks + step) * 1e3, 4),
        "sequences_per_s": round(seq_s, 3),
        "tokens_per_s": round(_f(row["tok_s_step"]), 1),
        "forward_ms_host_mean": round(fwd * 1e3, 3),
        "backward_ms_host_mean": round(bwd * 1e3, 3),
        "optimizer_ms_host_mean": round(opt_only * 1e3, 3),
        "other_ms_host_mean": round(hooks * 1e3, 3),
        "mfu": round(mfu, 5),
        "tflops_per_s": round(mfu * gpu["env"]["peak"], 3),
        "peak_tflops": gpu["env"]["peak"],
        # nvidia-smi reports MiB; the README's mem_mean_gb is that MiB figure / 1000.
        "nvml_mean_used_gib": round(_f(row["mem_mean_gb"]) * 1000 / 1024, 3),
        "sequences_per_s_wall": round(_f(row["wall_seq_s"]), 3),
        "train_duration_s": round(_f(row["train_duration_s"]), 3),
        "steps_measured": 300,
    }
    return Trial(status=OK, metrics=metrics, **common)


def convert(src: str) -> list[Trial]:
    path = os.path.join(src, "derived_per_config.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    order = {"v100-16gb-300w": 0, "a100-40gb-400w": 1}
    rows.sort(key=lambda r: (order[r["gpu"]], r["model"], int(r["seq_len"]), int(r["batch_size"])))
    return [convert_row(r) for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", default=DEFAULT_SRC, help="the seed-results folder")
    p.add_argument("--out", default=DEFAULT_OUT, help="the JSONL file to write")
    args = p.parse_args(argv)
    trials = convert(args.src)
    with open(args.out, "w", encoding="utf-8") as fh:
        for t in trials:
            fh.write(t.to_json() + "\n")
    n_ok = sum(t.status == OK for t in trials)
    print(f"wrote {len(trials)} records ({n_ok} ok, {len(trials) - n_ok} oom) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
