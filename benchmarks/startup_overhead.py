"""What a fresh trial process pays before its first step, piece by piece.

Runs in a fresh interpreter (run it as a script): import torch, import transformers, CUDA
start-up, then building a model with random weights on the CPU and copying it versus building
it directly on the GPU (what the trial does). Prints seconds per piece.

    python benchmarks/startup_overhead.py [--model roberta-large]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="roberta-large")
    args = p.parse_args()
    t = time.perf_counter()
    import torch

    t_torch = time.perf_counter() - t
    t = time.perf_counter()
    import transformers  # noqa: F401
    from transformers import AutoConfig, AutoModelForSequenceClassification

    t_tf = time.perf_counter() - t
    t = time.perf_counter()
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    t_cuda = time.perf_counter() - t

    from sweep.plan.catalog import get_spec

    spec = get_spec(args.model)
    cfg = AutoConfig.for_model(spec.model_type, **spec.hparams)

    def build(device):
        t0 = time.perf_counter()
        with torch.device(device):
            m = AutoModelForSequenceClassification.from_config(cfg, dtype=torch.float32)
        m = m.to("cuda")
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    t_cpu = build("cpu")
    t_gpu = build("cuda")
    t_cpu2 = build("cpu")  # again, to show the first build's one-off costs
    t_gpu2 = build("cuda")
    from benchmarks._machine import machine

    print(f"machine: {machine()}")
    print(
        f"import torch {t_torch:.2f} s; import transformers {t_tf:.2f} s; "
        f"CUDA start-up {t_cuda:.2f} s"
    )
    print(
        f"build {args.model}: on CPU then copy {t_cpu:.2f} s (again {t_cpu2:.2f} s); "
        f"directly on GPU {t_gpu:.2f} s (again {t_gpu2:.2f} s)"
    )


if __name__ == "__main__":
    main()
