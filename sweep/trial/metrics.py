"""Pure functions from raw timings and counts to reported metrics. No torch, no clock.

Units are in the names: milliseconds (``_ms``), seconds (``_s``), per second (``_per_s``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between order statistics
    (numpy's default "linear" method)."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize_ms(samples_ms: Sequence[float], prefix: str = "step_time_ms") -> dict[str, float]:
    """Median, p10, p90, mean, std (population) and count of per-step times in ms."""
    n = len(samples_ms)
    if n == 0:
        raise ValueError(f"{prefix}: no measured steps")
    mean = sum(samples_ms) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in samples_ms) / n)
    return {
        f"{prefix}_p50": percentile(samples_ms, 50),
        f"{prefix}_p10": percentile(samples_ms, 10),
        f"{prefix}_p90": percentile(samples_ms, 90),
        f"{prefix}_mean": mean,
        f"{prefix}_std": std,
    }


def throughput(batch_size: int, seq_len: int, step_time_ms: float) -> dict[str, float]:
    """Sequences and tokens per second from one step's time (the optimizer step included)."""
    if step_time_ms <= 0:
        raise ValueError(f"step time must be positive, got {step_time_ms} ms")
    seq_per_s = batch_size * 1000.0 / step_time_ms
    return {"sequences_per_s": seq_per_s, "tokens_per_s": seq_per_s * seq_len}


def analytic_flops_per_token(
    n_matmul_params: int,
    num_layers: int,
    hidden: int,
    seq_len: int,
    train: bool = True,
    n_frozen: int = 0,
) -> float:
    """Model FLOPs per token: 6N + 12*L*d*T for a training step (PaLM, Chowdhery et al. 2022,
    appendix B; nanoGPT's ``estimate_mfu``): 2N forward and 4N backward for the weight matrices
    (2N for the input's gradient, 2N for the weight's), plus the attention score and value
    products. A forward pass alone is a third of that.

    N counts the parameters that take part in matrix products (linear layers, a tied LM head),
    not embedding look-ups. ``n_frozen`` of them are frozen (a LoRA/QLoRA base): their weight
    gradient is never computed, so they cost 4 per token, not 6 (4N frozen + 6N trainable).
    Activation recomputation (gradient checkpointing) is not model FLOPs and is not counted.
    """
    if not train:
        return 2.0 * n_matmul_params + 4.0 * num_layers * hidden * seq_len
    trainable = n_matmul_params - n_frozen
    return 6.0 * trainable + 4.0 * n_frozen + 12.0 * num_layers * hidden * seq_len


def achieved_tflops(flops_per_step: float | None, step_time_ms: float) -> float | None:
    if flops_per_step is None or step_time_ms <= 0:
        return None
    return flops_per_step / (step_time_ms / 1000.0) / 1e12


def mfu(achieved: float | None, peak: float | None) -> float | None:
    """Model FLOPs utilization: achieved / peak TFLOP/s. Unknown peak -> None (never guessed)."""
    if achieved is None or not peak:
        return None
    return achieved / peak


def joules_per_token(energy_j: float | None, tokens: int) -> float | None:
    if energy_j is None or tokens <= 0:
        return None
    return energy_j / tokens


def cv(mean: float, std: float) -> float | None:
    """Coefficient of variation (std / mean)."""
    return std / mean if mean > 0 else None


def phase_split_ms(boundaries_ms: Sequence[Sequence[float]], names: Sequence[str]):
    """Per-step phase durations from event timestamps.

    ``boundaries_ms[i]`` holds step i's timestamps (ms, any origin): its start, then the end of
    each named phase in order. The step lasts until the next step's start; what lies between
    the last phase's end and the next start goes to ``other``. So each step's phases add up to
    its step time exactly. The final row only needs its first value: the time the last measured
    step ended (the next step's start).

    Returns (step_times_ms, {name: [ms per step], "other": [...]}).
    """
    if len(boundaries_ms) < 2:
        raise ValueError("need at least two steps of timestamps")
    steps: list[float] = []
    phases: dict[str, list[float]] = {n: [] for n in (*names, "other")}
    for cur, nxt in zip(boundaries_ms, boundaries_ms[1:], strict=False):
        if len(cur) != len(names) + 1:
            raise ValueError(f"expected {len(names) + 1} timestamps per step, got {len(cur)}")
        steps.append(nxt[0] - cur[0])
        for j, n in enumerate(names):
            phases[n].append(cur[j + 1] - cur[j])
        phases["other"].append(nxt[0] - cur[-1])
    return steps, phases


def union_ms(intervals_ms: Sequence[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals, ms: time covered by at least one of them
    (kernels on several streams overlap; their sum would count the overlap twice)."""
    total = 0.0
    cur_start = cur_end = None
    for start, end in sorted(intervals_ms):
        if end < start:
            raise ValueError(f"interval ends before it starts: ({start}, {end})")
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def launch_bound_pct(busy_intervals_ms: Sequence[tuple[float, float]], wall_ms: float) -> float:
    """Share of a step's wall time (ms) in which no GPU work ran, %: 100 x (1 - union of the
    busy intervals / wall). Clamped at 0: the busy intervals come from the profiler's clock and
    the wall from the host's, so a GPU-bound step can read a hair over its wall time."""
    if not wall_ms > 0:
        raise ValueError(f"wall time must be positive, got {wall_ms} ms")
    return max(0.0, 100.0 * (1.0 - union_ms(busy_intervals_ms) / wall_ms))


def bus_bandwidth_gb_s(nbytes: int, seconds: float, world: int) -> float:
    """All-reduce bus bandwidth in GB/s (1e9 bytes): the algorithm bandwidth (bytes / time) times
    2(n-1)/n, the share of the data each rank sends and receives in a ring all-reduce, so that
    the figure compares with the links' speed whatever the number of ranks (nccl-tests,
    doc/PERFORMANCE.md)."""
    if seconds <= 0 or world < 1:
        raise ValueError(
            f"bus bandwidth needs a positive time and world size, got {seconds}, {world}"
        )
    return nbytes / seconds / 1e9 * 2.0 * (world - 1) / world


def scale_throughput(metrics: dict, world: int) -> dict[str, float]:
    """An N-GPU trial's throughput: each rank measured its own batch (``sequences_per_s``,
    ``tokens_per_s`` per GPU); the job does ``world`` of them per step."""
    out = {}
    for name in ("sequences_per_s", "tokens_per_s"):
        if metrics.get(name) is not None:
            out[f"{name}_per_gpu"] = metrics[name]
            out[name] = metrics[name] * world
    return out
