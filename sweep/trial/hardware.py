"""Hardware facts in one table behind one function: dense peak TFLOP/s per GPU and precision.

Every entry is the vendor datasheet's **dense** figure (the "with sparsity" numbers are twice
these). ``None`` means the GPU cannot run that precision on tensor cores (bf16 on a V100) and
an unknown GPU gives ``None``: MFU is then left empty, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuPeak:
    label: str
    tf16: float | None  # fp16 / bf16 tensor-core dense peak, TFLOP/s
    bf16: float | None
    tf32: float | None  # TF32 tensor-core dense peak (None: no TF32; fp32 math is used)
    fp32: float  # plain fp32 (CUDA cores)
    source: str


_H100 = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
_H200 = "https://www.nvidia.com/en-us/data-center/h200/"
_A100 = (
    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
    "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
)
_V100 = "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf"
_L4 = "https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet"
_L40S = "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413"
_A10 = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/a10-datasheet.pdf"
_T4 = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf"
_B200 = "https://resources.nvidia.com/en-us-blackwell-architecture/hgx-b200-datasheet"

# Ordered: the first pattern found in the lower-cased device name wins (so "h200 nvl" before
# "h200", "h100 pcie" before "h100").
PEAKS: list[tuple[str, GpuPeak]] = [
    ("b200", GpuPeak("B200", 2250.0, 2250.0, 1100.0, 75.0, _B200)),
    ("h200 nvl", GpuPeak("H200 NVL", 835.5, 835.5, 417.5, 60.0, _H200)),
    ("h200", GpuPeak("H200 SXM", 989.4, 989.4, 494.7, 66.9, _H200)),
    ("h100 nvl", GpuPeak("H100 NVL", 835.5, 835.5, 417.5, 60.0, _H100)),
    ("h100 pcie", GpuPeak("H100 PCIe", 756.5, 756.5, 378.0, 51.2, _H100)),
    ("h100", GpuPeak("H100 SXM", 989.4, 989.4, 494.7, 66.9, _H100)),
    ("a100", GpuPeak("A100", 312.0, 312.0, 156.0, 19.5, _A100)),
    ("v100s", GpuPeak("V100S PCIe", 130.0, None, None, 16.4, _V100)),
    ("v100-pcie", GpuPeak("V100 PCIe", 112.0, None, None, 14.0, _V100)),
    ("v100", GpuPeak("V100 SXM2", 125.0, None, None, 15.7, _V100)),  # SXM2 and DGX Station
    ("l40s", GpuPeak("L40S", 362.05, 362.05, 183.0, 91.6, _L40S)),
    (
        "a10g",
        GpuPeak(
            "A10G",
            70.0,
            70.0,
            35.0,
            31.2,  # AWS's A10G: g5 instances
            "https://aws.amazon.com/ec2/instance-types/g5/",
        ),
    ),
    ("a10", GpuPeak("A10", 125.0, 125.0, 62.5, 31.2, _A10)),
    ("l4", GpuPeak("L4", 121.0, 121.0, 60.0, 30.3, _L4)),
    ("t4", GpuPeak("T4", 65.0, None, None, 8.1, _T4)),
]


def gpu_peak(gpu_name: str | None) -> GpuPeak | None:
    """The datasheet entry for a CUDA device name (``torch.cuda.get_device_name``), or None."""
    if not gpu_name:
        return None
    low = gpu_name.lower()
    for pattern, peak in PEAKS:
        if pattern in low:
            return peak
    return None


def peak_tflops(gpu_name: str | None, precision: str) -> float | None:
    """Dense peak TFLOP/s for a trial precision (fp32, tf32, fp16-mixed, bf16-mixed, bf16-true).

    Mixed precision runs its matrix products in the half type, so its peak is the tensor-core
    figure; bf16-true runs them in bf16 too. ``tf32`` on a GPU without TF32 falls back to plain
    fp32 math, so its peak is fp32.
    """
    peak = gpu_peak(gpu_name)
    if peak is None:
        return None
    if precision in ("bf16-mixed", "bf16-true"):
        return peak.bf16
    if precision == "fp16-mixed":
        return peak.tf16
    if precision == "tf32":
        return peak.tf32 if peak.tf32 is not None else peak.fp32
    if precision == "fp32":
        return peak.fp32
    raise ValueError(f"precision: {precision!r} has no peak")
