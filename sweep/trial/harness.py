"""The two harnesses that run a workload's steps and time them.

``native``: a plain PyTorch loop. ``lightning``: a LightningModule driven by a Trainer, as the
original project did. Both return the same ``RawTiming`` so that their difference is the
framework's overhead. Warm-up steps run first and are timed apart; the measured steps are
bracketed by one ``MeasurementWindow`` (sweep/trial/window.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from sweep.trial.profile import StepProfile, maybe_profile
from sweep.trial.window import MeasurementWindow, WindowResult, synchronize
from sweep.trial.workload import Workload, inference_step, train_step

MAX_STEPS = 100_000  # a bound on min_measure_s loops


@dataclass
class RawTiming:
    """What a harness measured, before any arithmetic. Times in ms (per step) and s."""

    phase_names: tuple[str, ...]
    rows_ms: list[list[float]]  # per measured step: start, then each phase's end; last: [end]
    warmup_steps: int
    warmup_s: float
    measure_s: float
    losses: list[float] = field(default_factory=list)
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    nvml: dict[str, Any] = field(default_factory=dict)
    graph_captured: bool = False  # the measured steps were CUDA-graph replays
    graph_capture_s: float | None = None
    profile: StepProfile | None = None  # the profiled step after the measured ones


def _rows(flat: list[float], per_step: int) -> list[list[float]]:
    n = (len(flat) - 1) // per_step
    rows = [flat[i * per_step : (i + 1) * per_step] for i in range(n)]
    rows.append([flat[-1]])
    return rows


def timing(
    names: tuple[str, ...],
    per_step: int,
    warmup_steps: int,
    warmup_s: float,
    r: WindowResult,
    losses: list[torch.Tensor],
) -> RawTiming:
    return RawTiming(
        names,
        _rows(r.marks_ms, per_step),
        warmup_steps,
        warmup_s,
        r.measure_s,
        _losses(losses),
        r.peak_allocated_bytes,
        r.peak_reserved_bytes,
        r.nvml,
    )


def _losses(losses: list[torch.Tensor]) -> list[float]:
    return torch.stack(losses).float().cpu().tolist() if losses else []


def private_pool_bytes(snapshot: list[dict] | None = None, device: int | None = None) -> int:
    """Bytes the CUDA caching allocator holds in private pools (CUDA graphs' and cudagraph
    trees') on one device, from its segment snapshot: the default pool's id is (0, 0)."""
    if snapshot is None:
        snapshot, device = torch.cuda.memory_snapshot(), torch.cuda.current_device()
    return sum(
        s["total_size"]
        for s in snapshot
        if tuple(s.get("segment_pool_id", (0, 0))) != (0, 0)
        and (device is None or s.get("device", device) == device)
    )


def graphs_peak_bytes(warmup_peak: int, window_peak: int, pool_bytes: int) -> int:
    """The peak of a compile mode that replays CUDA graphs (see run_native): the larger of the
    warm-up's allocated peak and the measured window's plus what the private pools hold."""
    return max(warmup_peak, window_peak + pool_bytes)


def run_native(w: Workload, uuid: str | None = None) -> RawTiming:
    cfg = w.config
    train = cfg.mode == "train"
    step = train_step if train else inference_step
    # A compile mode that replays CUDA graphs (cudagraph trees) records them in the warm-up, in a
    # private pool whose blocks the replays reuse without asking the allocator, which shows them
    # as free after the recording: the measured window's allocated peak misses them (1.23 GiB
    # against 4.26 for compile default on the H200, 2026-12-02), and the recording's own peak is
    # short of them too (bert-mini b32 s128 on the H200, 2026-12-03, each in a fresh process:
    # warm-up peak 0.320 GiB, window 0.126 + pools 0.236 = 0.362 against 0.352 for compile
    # default; benchmarks/compile_pool_memory.py). The peak is the larger of the warm-up's and
    # the measured window's plus what the private pools hold: at most what the allocator
    # reserved, and enough to run the trial (tests/test_gpu.py runs it capped to that figure).
    pool = w.compiled_graphs and w.device.type == "cuda"
    if pool:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(cfg.warmup_steps):
        step(w)
    synchronize(w.device.type)
    warmup_s = time.perf_counter() - t0
    warmup_peak = torch.cuda.max_memory_allocated() if pool else None

    window = MeasurementWindow(w.device.type, uuid)
    window.begin()
    losses: list[torch.Tensor] = []
    n = 0
    while n < cfg.steps or (window.elapsed_s() < cfg.min_measure_s and n < MAX_STEPS):
        out = step(w, window.mark)
        if train:
            losses.append(out)
        n += 1
    result = window.end()
    names = ("forward", "backward", "optimizer") if train else ("forward",)
    # each step marked its start and each phase's end; train_step marks 4, inference 2
    raw = timing(names, len(names) + 1, cfg.warmup_steps, warmup_s, result, losses)
    if warmup_peak is not None:
        window_peak = raw.peak_allocated_bytes or 0
        raw.peak_allocated_bytes = graphs_peak_bytes(warmup_peak, window_peak, private_pool_bytes())
    raw.profile = maybe_profile(w, lambda: step(w))
    return raw


def run_lightning(w: Workload, uuid: str | None = None) -> RawTiming:
    """Train with a Trainer; marks come from hooks. Per step: batch start, training_step start,
    before backward (forward and loss done), after backward, batch end; the gap to the next
    batch start is Lightning's data fetch and loop bookkeeping."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, IterableDataset

    cfg = w.config
    total = cfg.warmup_steps + (cfg.steps if cfg.min_measure_s <= 0 else MAX_STEPS)
    window = MeasurementWindow(w.device.type, uuid)
    state: dict[str, Any] = {"losses": [], "t0": None, "warmup_s": None, "result": None, "n": 0}
    cpu_batch = {k: v.cpu() for k, v in w.batch.items()}
    if w.device.type == "cuda":
        cpu_batch = {k: v.pin_memory() for k, v in cpu_batch.items()}

    class SameBatch(IterableDataset):
        def __iter__(self):
            while True:
                yield cpu_batch

    def measuring() -> bool:
        return window.open and state["result"] is None

    mark = window.mark

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = w.model
            object.__setattr__(self, "_run_model", w.run_model)  # keep compiled copy unregistered

        def training_step(self, batch, batch_idx):
            mark()
            return self._run_model(**batch).loss

        def on_before_backward(self, loss):
            mark()
            if measuring():
                state["losses"].append(loss.detach())

        def on_after_backward(self):
            mark()

        def configure_optimizers(self):
            return w.optimizer

    class Timer(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            state["t0"] = time.perf_counter()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == cfg.warmup_steps:
                synchronize(w.device.type)
                state["warmup_s"] = time.perf_counter() - state["t0"]
                window.begin()
            if measuring():
                mark()

        def on_train_end(self, trainer, pl_module):
            # The measured steps end here, before Lightning's teardown moves the model back to
            # the CPU: that copy must not land in the last step's time.
            # NVML's window ends with the measured steps too: the GPU is idle in the teardown.
            if measuring():
                state["result"] = window.end()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if not measuring():
                return
            mark()
            state["n"] += 1
            if (
                cfg.min_measure_s > 0
                and state["n"] >= cfg.steps
                and window.elapsed_s() >= cfg.min_measure_s
            ):
                trainer.should_stop = True

    precision = {
        "fp32": "32-true",
        "tf32": "32-true",
        "fp16-mixed": "16-mixed",
        "bf16-mixed": "bf16-mixed",
    }[cfg.precision]
    trainer = pl.Trainer(
        accelerator="gpu" if w.device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=total,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        callbacks=[Timer()],
    )
    loader = DataLoader(SameBatch(), batch_size=None, num_workers=0)
    trainer.fit(Module(), train_dataloaders=loader)
    if state["result"] is None:
        raise RuntimeError("lightning: training ended before the measured steps began")
    # per step: batch start, step start, fwd end, bwd end, batch end -> 5 marks
    names = ("hooks", "forward", "backward", "optimizer")
    # no profiled step: Lightning's teardown has moved the model back to the CPU by now
    return timing(names, 5, cfg.warmup_steps, state["warmup_s"], state["result"], state["losses"])
