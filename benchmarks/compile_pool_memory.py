"""Where a compile mode's memory goes, on one GPU: compile default against reduce-overhead.

reduce-overhead replays cudagraph trees from a private pool that the caching allocator shows as
free after the recording, so the allocator's peak alone misses it; the product reports the larger
of the warm-up's peak and the measured window's peak plus the private pools' bytes
(sweep/trial/harness.py). This benchmark shows each part beside what the process physically
holds, per mode, each in a fresh child process (a fresh allocator and compile cache):

- ``warmup_peak``: the allocator's peak over the warm-up (compile and, for reduce-overhead, the
  cudagraph trees' recording);
- ``window_peak``: the allocator's peak over the measured steps, after ``empty_cache``;
- ``pool``: the private pools' segments (0 for compile default);
- ``reported``: the product's figure from the three;
- ``window_reserved``: the allocator's reserved peak over the measured steps after
  ``empty_cache`` released what the warm-up cached: what the steady steps hold (with the
  allocator's fragmentation);
- ``device_used``: the device's used memory (``cudaMemGetInfo``) at the end, less what it was
  before the model was built (the CUDA context; compile's loaded kernels are counted).

With ``--fit``, then the product itself (``run_trial``) in a child under
``set_per_process_memory_fraction`` capped to the reported peak x1.1 + 128 MiB: ``fits`` says
whether the reported figure is enough to run the trial. All in GiB; one JSON line per mode, then
a table.

    python benchmarks/compile_pool_memory.py [--shapes bert-mini:32:128 bert-base-uncased:64:128]
        [--modes true reduce-overhead] [--fit] [--json out.jsonl] [--timeout-s 240]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

GIB = 2**30

CHILD = r"""
import json, sys, torch
from sweep.plan.config import TrialConfig
from sweep.trial.harness import graphs_peak_bytes, private_pool_bytes
from sweep.trial.workload import build_workload, train_step
cfg = TrialConfig(**json.loads(sys.argv[1]))
torch.cuda.init(); torch.empty(1, device="cuda")
free, total = torch.cuda.mem_get_info(); base = total - free
w = build_workload(cfg, "cuda")
torch.cuda.reset_peak_memory_stats()
for _ in range(cfg.warmup_steps):
    train_step(w)
torch.cuda.synchronize()
warmup_peak = torch.cuda.max_memory_allocated()
torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
for _ in range(cfg.steps):
    train_step(w)
torch.cuda.synchronize()
window_peak, pool = torch.cuda.max_memory_allocated(), private_pool_bytes()
free, _ = torch.cuda.mem_get_info()
g = 2**30
print("RESULT " + json.dumps({
    "warmup_peak": warmup_peak / g, "window_peak": window_peak / g, "pool": pool / g,
    "reported": (graphs_peak_bytes(warmup_peak, window_peak, pool) if w.compiled_graphs
                 else window_peak) / g,
    "window_reserved": torch.cuda.max_memory_reserved() / g,
    "device_used": (total - free - base) / g}))
"""

CAPPED = r"""
import json, sys, torch
from sweep.plan.config import TrialConfig
from sweep.trial.run import run_trial
cap = float(sys.argv[2])
if cap > 0:
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap * 2**30 / total))
rec = run_trial(TrialConfig(**json.loads(sys.argv[1])))
print("RESULT " + json.dumps({"status": rec.status, "error": rec.error, "metrics": rec.metrics}))
"""


def _child(code: str, args: list[str], timeout_s: float) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        p = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": f"exit {p.returncode}: {p.stderr.strip()[-2000:]}"}


def trial_in_child(cfg: dict, cap_gib: float = 0.0, timeout_s: float = 300) -> dict:
    """The product's trial (``run_trial``) in a fresh process (a fresh allocator: no pool or
    cache left by an earlier trial), its allocator capped to ``cap_gib`` when given: its status,
    error and metrics, or ``error`` alone if the child gave no record."""
    return _child(CAPPED, [json.dumps(cfg), str(cap_gib)], timeout_s)


def parse_mode(text: str):
    return {"true": True, "false": False}.get(text, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["bert-mini:32:128", "bert-base-uncased:64:128"])
    ap.add_argument("--modes", nargs="+", default=["true", "reduce-overhead"])
    ap.add_argument("--fit", action="store_true", help="run each trial again, capped")
    ap.add_argument("--json", default=None)
    ap.add_argument("--timeout-s", type=float, default=240)
    a = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("compile_pool_memory: no CUDA device on this machine")
        return 1
    from benchmarks._machine import machine

    rows = []
    for shape in a.shapes:
        model, batch, seq = shape.split(":")
        for mode in a.modes:
            cfg = dict(
                model=model,
                batch_size=int(batch),
                seq_len=int(seq),
                device="cuda",
                precision="bf16-mixed",
                optimizer="adamw-fused",
                warmup_steps=5,
                steps=20,
                compile=parse_mode(mode),
            )
            row = {"model": model, "batch_size": int(batch), "seq_len": int(seq), "compile": mode}
            row.update(_child(CHILD, [json.dumps(cfg)], a.timeout_s))
            if a.fit and "reported" in row:
                cap = row["reported"] * 1.1 + 0.125
                fit = trial_in_child(cfg, cap, a.timeout_s)
                capped = {"status": fit.get("status"), "error": (fit.get("error") or "")[:200]}
                capped["peak"] = (fit.get("metrics") or {}).get("peak_allocated_gib")
                row.update(cap=cap, fits=fit.get("status") == "ok", capped=capped)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    keys = ("warmup_peak", "window_peak", "pool", "reported", "window_reserved", "device_used")
    print("\nshape | compile | " + " | ".join(keys) + " | fits at reported x1.1 + 0.125 GiB")
    for r in rows:
        vals = " | ".join(f"{r[k]:.3f}" if k in r else "-" for k in keys)
        print(
            f"{r['model']} b{r['batch_size']} s{r['seq_len']} | {r['compile']} | {vals} | "
            f"{r.get('fits', r.get('error'))}"
        )
    print(machine())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
