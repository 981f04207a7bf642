"""The harnesses that run a workload's steps in this process and time them.

``native``: a plain PyTorch loop (``native_stepper`` through sweep/trial/measure.py's loop).
``lightning``: a LightningModule driven by a Trainer, as the original project did; the Trainer
owns the loop, so it shares the measurement window and ``timing`` but not the loop. Both return
the same ``RawTiming`` so that their difference is the framework's overhead. The CUDA-graph step
is sweep/trial/graph.py; which harness runs a configuration is sweep/trial/harnesses.py's table.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from sweep.trial.measure import MAX_STEPS, RawTiming, Stepper, measure, timing
from sweep.trial.window import MeasurementWindow, synchronize
from sweep.trial.workload import Workload, inference_step, train_step


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


def native_stepper(w: Workload) -> Stepper:
    """The plain loop's step: forward (with the loss), backward, optimizer; forward alone in
    inference mode."""
    if w.config.mode == "train":
        return Stepper(lambda mark: train_step(w, mark), ("forward", "backward", "optimizer"))
    return Stepper(lambda mark: inference_step(w, mark), ("forward",))


def run_native(w: Workload, uuid: str | None = None) -> RawTiming:
    # A compile mode that replays CUDA graphs (cudagraph trees) records them in the warm-up, in a
    # private pool whose blocks the replays reuse without asking the allocator, which shows them
    # as free after the recording: the measured window's allocated peak misses them, and the
    # recording's own peak is short of them too (docs/DECISIONS.md, "compile modes that replay
    # CUDA graphs: where their peak memory is", has the figures). The
    # peak is the larger of the warm-up's and the measured window's plus what the private pools
    # hold: at most what the allocator reserved, and enough to run the trial (tests/test_gpu.py
    # runs it capped to that figure).
    pool = w.compiled_graphs and w.device.type == "cuda"
    stepper = native_stepper(w)
    warmup_peak: list[int] = []
    if pool:
        torch.cuda.reset_peak_memory_stats()
        stepper.prepare = lambda: warmup_peak.append(torch.cuda.max_memory_allocated())
    raw = measure(w, stepper, uuid)
    if warmup_peak:
        window_peak = raw.peak_allocated_bytes or 0
        raw.peak_allocated_bytes = graphs_peak_bytes(
            warmup_peak[0], window_peak, private_pool_bytes()
        )
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
                if w.after_warmup is not None:
                    w.after_warmup()
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

    # bf16-true: the model is built in bf16 and the native loop runs it without autocast, as
    # "32-true" does here; Lightning's own "bf16-true" would also make bf16 the default dtype
    # inside forward (tensors made there, RoPE's, in bf16): another step than the native one
    precision = {
        "fp32": "32-true",
        "tf32": "32-true",
        "fp16-mixed": "16-mixed",
        "bf16-mixed": "bf16-mixed",
        "bf16-true": "32-true",
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
