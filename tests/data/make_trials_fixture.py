"""Write tests/data/trials_small.jsonl: a small, realistic set of trial records for the UI tests.

The numbers follow a simple model of a training step, so that the views have something true to
find: step_ms = overhead + tokens * FLOPs-per-token / (peak * MFU); memory = fixed state + a
per-sequence activation term; a batch whose memory exceeds the GPU is an OOM row. FLOPs per token
are 6N + 12*L*s*d (PaLM appendix B, as in nanoGPT's estimate_mfu); peaks are NVIDIA's dense BF16
datasheet figures (H200 989, A100 312, L4 121 TFLOP/s).

    .venv/bin/python tests/data/make_trials_fixture.py

It also holds statuses a real sweep produces besides ok and oom (skipped_oom, unsupported,
crashed, timeout), one CPU row, repeats, a compile variant, and one row of an older record version
(schema_version 0, without the fields added since). Deterministic: no randomness.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from sweep.plan.config import TrialConfig  # noqa: E402
from sweep.results.record import Trial, trial_key  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trials_small.jsonl")
GIB = 2**30

GPUS = {
    # name, usable GiB, dense bf16 TFLOP/s, saturated MFU, step overhead ms, power W
    "H200": ("NVIDIA H200", 139.8, 989.0, 0.36, 7.0, 640.0, "9.0", 700),
    "A100": ("NVIDIA A100-SXM4-80GB", 79.1, 312.0, 0.46, 9.0, 370.0, "8.0", 400),
    "L4": ("NVIDIA L4", 22.0, 121.0, 0.40, 12.0, 70.0, "8.9", 72),
}
MODELS = {  # non-embedding params, layers, hidden, total params, fixed GiB, GiB per 1k tokens
    "bert-base-uncased": (85.6e6, 12, 768, 109.5e6, 2.4, 0.85),
    "gpt2": (85.0e6, 12, 768, 124.4e6, 2.9, 1.10),
}


def env(gpu: str) -> dict:
    name, total, *_rest, cc, plimit = GPUS[gpu]
    return {
        "device": "cuda",
        "gpu_name": name,
        "gpu_uuid": f"GPU-{gpu.lower()}-0000",
        "gpu_memory_total_gib": total + 0.5,
        "compute_capability": cc,
        "driver_version": "570.133.20",
        "cuda_version": "12.8",
        "cudnn_version": "91002",
        "power_limit_w": plimit,
        "torch_version": "2.11.0+cu128",
        "transformers_version": "5.17.0",
        "lightning_version": "2.6.6",
        "ray_version": "2.60.0",
        "python_version": "3.12.3",
        "cpu_model": "AMD EPYC 9654",
        "hostname": f"node-{gpu.lower()}-1",
        "git_commit": "0e4a542",
    }


def trial(gpu, model, seq, bs, *, compile=False, repeat=0, task="seq-cls", sweep="fixture"):
    config = TrialConfig(
        model=model,
        task=task,
        batch_size=bs,
        seq_len=seq,
        precision="bf16-mixed",
        compile=compile,
        device="cuda",
    ).to_dict()
    name, total, peak, mfu_sat, overhead, power, _cc, _pl = GPUS[gpu]
    n_ne, layers, hidden, n_all, fixed, per_k = MODELS[model]
    mem = fixed + per_k * bs * seq / 1000
    common = dict(
        config=config,
        gpu_type=gpu,
        repeat=repeat,
        sweep=sweep,
        env=env(gpu),
        node=f"node-{gpu.lower()}-1",
        ray_trial_id="t" + trial_key(config, gpu, repeat)[:8],
        started_at="2026-05-02T10:00:00+00:00",
        finished_at="2026-05-02T10:01:00+00:00",
    )
    if mem > total:
        return Trial(
            status="oom",
            error=f"CUDA out of memory. Tried to allocate "
            f"{(mem - total) + 1:.2f} GiB. GPU 0 has a total capacity of {total:.2f} GiB",
            error_type="OutOfMemoryError",
            **common,
        )
    tokens = bs * seq
    flops_tok = 6 * n_ne + 12 * layers * seq * hidden
    # MFU rises with the batch and saturates (small batches cannot fill the GPU).
    mfu = mfu_sat * tokens / (tokens + 4096) * (1.15 if compile else 1.0)
    compute_ms = tokens * flops_tok / (peak * 1e12 * mfu) * 1e3
    step = overhead * (0.7 if compile else 1.0) + compute_ms + 0.3 * repeat
    fwd, bwd = compute_ms / 3, compute_ms * 2 / 3
    opt = overhead * 0.6
    metrics = {
        "step_time_ms_p50": round(step, 3),
        "step_time_ms_p10": round(step * 0.99, 3),
        "step_time_ms_p90": round(step * 1.02, 3),
        "step_time_ms_mean": round(step * 1.004, 3),
        "step_time_ms_std": round(step * 0.012, 3),
        "step_time_cv": 0.012,
        "steps_measured": 20,
        "forward_ms_p50": round(fwd, 3),
        "backward_ms_p50": round(bwd, 3),
        "optimizer_ms_p50": round(opt, 3),
        "other_ms_p50": round(step - fwd - bwd - opt, 3),
        "sequences_per_s": round(bs / step * 1e3, 3),
        "tokens_per_s": round(tokens / step * 1e3, 1),
        "warmup_steps": 3,
        "warmup_s": 41.0 if compile else 2.1,
        "setup_s": 3.4,
        "measure_s": round(20 * step / 1e3, 3),
        "trial_s": round(8 + 20 * step / 1e3, 3),
        "flops_per_step": round(3 * tokens * flops_tok / 3),
        "flops_per_step_analytic": round(tokens * flops_tok),
        "tflops_per_s": round(peak * mfu, 2),
        "peak_tflops": peak,
        "mfu": round(mfu, 4),
        "n_params": int(n_all),
        "n_params_nonembedding": int(n_ne),
        "peak_allocated_gib": round(mem * 0.9, 3),
        "peak_reserved_gib": round(mem * 0.96, 3),
        "nvml_peak_used_gib": round(mem, 3),
        "device_total_gib": total + 0.5,
        "gpu_util_pct_mean": round(min(99.0, 40 + 60 * mfu / mfu_sat), 1),
        "mem_util_pct_mean": round(30 * mfu / mfu_sat, 1),
        "sm_clock_mhz_mean": 1755.0,
        "power_w_mean": round(power * (0.5 + 0.5 * mfu / mfu_sat), 1),
        "temperature_c_max": 61.0,
        "energy_j": round(power * (0.5 + 0.5 * mfu / mfu_sat) * 20 * step / 1e3, 2),
        "joules_per_token": round(power * (0.5 + 0.5 * mfu / mfu_sat) * step / 1e3 / tokens, 6),
        "throttle_reasons": "",
        "loss_first": 0.7042,
        "loss_last": 0.6871,
    }
    return Trial(status="ok", metrics=metrics, **common)


def build() -> list[Trial]:
    out = []
    for gpu in ("H200", "A100", "L4"):
        for seq in (128, 512):
            oomed = False
            for bs in (8, 16, 32, 64, 128, 256, 512):
                t = trial(gpu, "bert-base-uncased", seq, bs)
                if oomed:  # the engine skips larger batches once one ran out of memory
                    t = t.replace(
                        status="skipped_oom",
                        metrics={},
                        error=f"skipped: batch {bs} > a batch that ran out of memory",
                        error_type=None,
                    )
                oomed = oomed or t.status == "oom"
                out.append(t)
    # repeats and a compile variant on H200
    out.append(trial("H200", "bert-base-uncased", 128, 64, repeat=1))
    out.append(trial("H200", "bert-base-uncased", 128, 64, repeat=2))
    for bs in (32, 64, 128, 256):
        out.append(trial("H200", "bert-base-uncased", 128, bs, compile=True))
    # a decoder on two GPUs
    for gpu in ("H200", "A100"):
        for bs in (8, 32, 128):
            out.append(trial(gpu, "gpt2", 512, bs, task="causal-lm"))
    # statuses a sweep produces besides ok/oom
    base = trial("A100", "bert-base-uncased", 128, 32)
    fa2 = base.config | {"attention": "flash_attention_2"}
    out.append(
        Trial(
            config=fa2,
            status="unsupported",
            gpu_type="A100",
            sweep="fixture",
            env=base.env,
            error="flash_attention_2 needs the flash-attn package",
            error_type="ImportError",
        )
    )
    out.append(
        Trial(
            config=base.config | {"batch_size": 48},
            status="crashed",
            gpu_type="A100",
            sweep="fixture",
            error="the node died (Ray: ActorDiedError)",
            error_type="ActorDiedError",
        )
    )
    out.append(
        Trial(
            config=base.config | {"batch_size": 96},
            status="timeout",
            gpu_type="L4",
            sweep="fixture",
            error="trial exceeded 900 s",
            error_type="TimeoutError",
        )
    )
    # a CPU row with a tiny model
    cpu = TrialConfig(model="bert-tiny", batch_size=8, seq_len=128, device="cpu").to_dict()
    out.append(
        Trial(
            config=cpu,
            status="ok",
            sweep="fixture",
            env={
                "device": "cpu",
                "torch_version": "2.13.0+cpu",
                "python_version": "3.11.2",
                "cpu_model": "Intel Xeon",
                "hostname": "laptop",
            },
            metrics={
                "step_time_ms_p50": 21.4,
                "sequences_per_s": 373.8,
                "tokens_per_s": 47850.5,
                "forward_ms_p50": 6.1,
                "backward_ms_p50": 11.9,
                "optimizer_ms_p50": 2.8,
                "other_ms_p50": 0.6,
                "peak_allocated_gib": None,
            },
        )
    )
    return out


def main() -> None:
    trials = build()
    lines = [t.to_json() for t in trials]
    # One row as an older version of the record wrote it: schema_version 0, no source or
    # provenance fields, and fewer metrics.
    old = json.loads(trial("A100", "bert-base-uncased", 128, 16, repeat=3).to_json())
    for k in ("source", "provenance"):
        old.pop(k)
    old["schema_version"] = 0
    old["metrics"] = {
        k: old["metrics"][k]
        for k in ("step_time_ms_p50", "sequences_per_s", "tokens_per_s", "peak_allocated_gib")
    }
    lines.append(json.dumps(old, sort_keys=True))
    with open(OUT, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} records to {OUT}")


if __name__ == "__main__":
    main()
