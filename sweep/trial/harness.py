"""The two harnesses that run a workload's steps and time them.

``native``: a plain PyTorch loop. ``lightning``: a LightningModule driven by a Trainer, as the
original project did. Both return the same ``RawTiming`` so that their difference is the
framework's overhead. Warm-up steps run first and are timed apart; the measured steps are
bracketed by a memory-peak reset and the NVML sampler.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from sweep.trial.telemetry import Marks, NvmlSampler, synchronize
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


def _rows(flat: list[float], per_step: int) -> list[list[float]]:
    n = (len(flat) - 1) // per_step
    rows = [flat[i * per_step : (i + 1) * per_step] for i in range(n)]
    rows.append([flat[-1]])
    return rows


def _begin_measure(w: Workload, uuid: str | None) -> NvmlSampler:
    synchronize(w.device.type)
    if w.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sampler = NvmlSampler(uuid)
    sampler.start()
    return sampler


def _peaks(w: Workload) -> tuple[int | None, int | None]:
    if w.device.type != "cuda":
        return None, None
    return torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()


def _losses(losses: list[torch.Tensor]) -> list[float]:
    return torch.stack(losses).float().cpu().tolist() if losses else []


def run_native(w: Workload, uuid: str | None = None) -> RawTiming:
    cfg = w.config
    train = cfg.mode == "train"
    step = train_step if train else inference_step
    t0 = time.perf_counter()
    for _ in range(cfg.warmup_steps):
        step(w)
    synchronize(w.device.type)
    warmup_s = time.perf_counter() - t0

    sampler = _begin_measure(w, uuid)
    marks = Marks(w.device.type)
    losses: list[torch.Tensor] = []
    t1 = time.perf_counter()
    n = 0
    while n < cfg.steps or (time.perf_counter() - t1 < cfg.min_measure_s and n < MAX_STEPS):
        out = step(w, marks.mark)
        if train:
            losses.append(out)
        n += 1
    marks.mark()
    synchronize(w.device.type)
    measure_s = time.perf_counter() - t1
    nvml = sampler.stop()
    alloc, reserved = _peaks(w)
    names = ("forward", "backward", "optimizer") if train else ("forward",)
    # each step marked its start and each phase's end; train_step marks 4, inference 2
    rows = _rows(marks.read_ms(), len(names) + 1)
    return RawTiming(
        names, rows, cfg.warmup_steps, warmup_s, measure_s, _losses(losses), alloc, reserved, nvml
    )


def run_lightning(w: Workload, uuid: str | None = None) -> RawTiming:
    """Train with a Trainer; marks come from hooks. Per step: batch start, training_step start,
    before backward (forward and loss done), after backward, batch end; the gap to the next
    batch start is Lightning's data fetch and loop bookkeeping."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, IterableDataset

    cfg = w.config
    total = cfg.warmup_steps + (cfg.steps if cfg.min_measure_s <= 0 else MAX_STEPS)
    state: dict[str, Any] = {
        "marks": None,
        "losses": [],
        "t0": None,
        "t1": None,
        "warmup_s": None,
        "sampler": None,
        "n": 0,
    }
    cpu_batch = {k: v.cpu() for k, v in w.batch.items()}
    if w.device.type == "cuda":
        cpu_batch = {k: v.pin_memory() for k, v in cpu_batch.items()}

    class SameBatch(IterableDataset):
        def __iter__(self):
            while True:
                yield cpu_batch

    def measuring() -> bool:
        return state["marks"] is not None

    def mark() -> None:
        if measuring():
            state["marks"].mark()

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
                state["sampler"] = _begin_measure(w, uuid)
                state["marks"] = Marks(w.device.type)
                state["t1"] = time.perf_counter()
            mark()

        def on_train_end(self, trainer, pl_module):
            # The measured steps end here, before Lightning's teardown moves the model back to
            # the CPU: that copy must not land in the last step's time.
            if measuring():
                mark()
                synchronize(w.device.type)
                state["t_end"] = time.perf_counter()
                # NVML's window ends with the measured steps too: the teardown after this hook
                # leaves the GPU idle, which read as 39% busy (and its energy as the steps')
                state["nvml"] = state["sampler"].stop()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if not measuring():
                return
            mark()
            state["n"] += 1
            if (
                cfg.min_measure_s > 0
                and state["n"] >= cfg.steps
                and time.perf_counter() - state["t1"] >= cfg.min_measure_s
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
    marks = state["marks"]
    if marks is None or state.get("t_end") is None:
        raise RuntimeError("lightning: training ended before the measured steps began")
    measure_s = state["t_end"] - state["t1"]
    nvml = state["nvml"]
    alloc, reserved = _peaks(w)
    flat = marks.read_ms()
    # per step: batch start, step start, fwd end, bwd end, batch end -> 5 marks
    rows = _rows(flat, 5)
    return RawTiming(
        ("hooks", "forward", "backward", "optimizer"),
        rows,
        cfg.warmup_steps,
        state["warmup_s"],
        measure_s,
        _losses(state["losses"]),
        alloc,
        reserved,
        nvml,
    )
