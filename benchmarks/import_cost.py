"""What a fine-tuning trial pays to import peft, bitsandbytes and Liger after the fork server's
preload (sweep/trial/preload.py), and whether the import starts CUDA (which would forbid
importing them in the fork server). Run on the GPU host, each case in a fresh interpreter:

    python benchmarks/import_cost.py [--json OUT]

Cases: "plain" imports the three as a QLoRA trial does; "lora" imports peft as a LoRA trial does
(sweep/trial/finetune.py hides bitsandbytes from it); "nvml-capability" first replaces
torch.cuda.get_device_capability with NVML's reading (what a fork server could do so that
bitsandbytes' import reads the compute capability without starting CUDA), then says whether
torch's CUDA and the CUDA driver (libcuda mapped into the process) were started by the import.
Prints one JSON line per case, with the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASE = r"""
import json, os, sys, time
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
import sweep.trial.preload  # what every trial process starts with
import torch

case = sys.argv[1]
if case == "nvml-capability":
    import pynvml

    def capability(device=None):
        pynvml.nvmlInit()
        index = getattr(device, "idx", device) or 0
        h = pynvml.nvmlDeviceGetHandleByIndex(int(index))
        return tuple(pynvml.nvmlDeviceGetCudaComputeCapability(h))

    torch.cuda.get_device_capability = capability
out = {"case": case}
if case == "lora":  # what a LoRA trial imports now: peft with bitsandbytes hidden
    from sweep.plan.config import TrialConfig
    from sweep.trial.finetune import peft_without_bitsandbytes

    t0 = time.perf_counter()
    with peft_without_bitsandbytes(TrialConfig(model="llama-tiny", finetune="lora")):
        import peft
    out["peft_s"] = round(time.perf_counter() - t0, 3)
    out["bitsandbytes_loaded"] = "bitsandbytes" in sys.modules
for name in ("bitsandbytes", "peft", "liger_kernel.transformers") if case != "lora" else ():
    t0 = time.perf_counter()
    try:
        __import__(name)
        out[name + "_s"] = round(time.perf_counter() - t0, 3)
    except Exception as exc:
        out[name + "_error"] = f"{type(exc).__name__}: {exc}"[:300]
out["torch_cuda_initialized"] = torch.cuda.is_initialized()
with open("/proc/self/maps") as f:
    maps = f.read()
out["libcuda_mapped"] = "libcuda.so" in maps
if torch.cuda.is_available():
    t0 = time.perf_counter()
    torch.zeros(1, device="cuda")
    out["cuda_start_after_s"] = round(time.perf_counter() - t0, 3)
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the cases here as JSON lines")
    args = ap.parse_args()
    lines = []
    for case in ("plain", "nvml-capability", "lora"):
        p = subprocess.run(
            [sys.executable, "-c", CASE, case], capture_output=True, text=True, timeout=300
        )
        line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        if p.returncode != 0 or not line:
            line = json.dumps({"case": case, "rc": p.returncode, "stderr": p.stderr[-800:]})
        print(line, flush=True)
        lines.append(line)
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        gpu = "no nvidia-smi"
    print(f"machine: {gpu}; python {sys.version.split()[0]}")
    if args.json:
        with open(args.json, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
