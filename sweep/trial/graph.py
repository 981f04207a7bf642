"""The CUDA-graph step (``cuda_graph: true``): the step captured after the warm-up, replayed for
the measured steps.

One graph per phase, forward with the loss, backward, optimizer, captured on one stream into one
memory pool (``torch.cuda.graph_pool_handle``) and replayed in the order they were captured, as
graphs that share a pool must be. The MeasurementWindow's marks are CUDA events recorded on the
current stream between the replays, so the forward / backward / optimizer split is measured the
same way as the eager step's. Inference mode captures the forward alone.

The recipe is PyTorch's "whole network capture" (CUDA semantics, CUDA Graphs): static inputs
(the synthetic batch is the same every step), warm-up on a side stream, gradients set to None
before the capture so that the backward graph allocates them in the pool and every replay
rewrites them, an optimizer whose step count lives on the device (AdamW ``capturable=True``),
autocast without its weight cache. What torch's allocator hands out during capture comes from
the graph's private pool and is counted in its statistics (allocated and reserved, like any
block); replays allocate nothing, so a graphed trial's peak allocated memory is the larger of
the capture's peak and the measured replays'.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import torch

from sweep.plan.config import COMPILE_MODES_WITH_GRAPHS, TrialConfig
from sweep.trial.measure import RawTiming, Stepper, measure
from sweep.trial.outcome import Unsupported, is_oom
from sweep.trial.window import synchronize
from sweep.trial.workload import Workload

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 600


def check_graph_support(config: TrialConfig, device_type: str) -> str | None:
    """Why this configuration cannot be captured (naming the field), or None."""
    if device_type != "cuda":
        return "cuda_graph: CUDA graphs need a CUDA GPU (this trial runs on the CPU)"
    if config.harness == "lightning":
        return (
            "cuda_graph: the Lightning harness runs its own loop and hooks around each step; "
            "CUDA graphs are measured with the native harness"
        )
    if config.precision == "fp16-mixed" and config.mode == "train":
        # GradScaler decides on the host whether to skip the step and how to change the scale
        # (it reads found_inf back), which a captured step cannot do.
        return (
            "cuda_graph: fp16-mixed training needs the dynamic grad scaler, whose skip-and-"
            "rescale decision is taken on the host and cannot be captured (use bf16-mixed)"
        )
    if config.optimizer == "apex-fused-adam" and config.mode == "train":
        return (
            "cuda_graph: apex-fused-adam has no capturable mode (its step count is on the host); "
            "use adamw-fused, captured with capturable=True"
        )
    if config.optimizer in ("adamw-8bit", "paged-adamw-8bit") and config.mode == "train":
        return (
            f"cuda_graph: {config.optimizer} (bitsandbytes) has no capturable mode (its step "
            "count is on the host); use adamw-fused"
        )
    if config.compile in COMPILE_MODES_WITH_GRAPHS:
        return (
            f"cuda_graph: compile mode {config.compile} replays CUDA graphs of its own, which "
            "cannot be captured inside another graph (use compile true or "
            "max-autotune-no-cudagraphs with cuda_graph)"
        )
    return None


def graph_inputs(batch: dict[str, torch.Tensor], compiled: bool = False) -> dict[str, torch.Tensor]:
    """The batch the captured step reads. An attention mask of all ones is dropped: transformers'
    mask helpers check ``mask.all()`` on the host, a synchronization that capture forbids, and
    a mask that masks nothing computes what no mask computes (a test checks the losses agree).
    Checked once here, before the capture. A compiled model keeps it: torch.compile traces the
    helpers (they skip the host check while compiling) and, given no mask, rebuilds one expanded
    with a stride of 0 in its last dimension, which SDPA's fused kernels refuse (docs/DECISIONS.md,
    "a compiled graphed step keeps its all-ones mask")."""
    mask = batch.get("attention_mask")
    if not compiled and mask is not None and bool(mask.all()):
        return {k: v for k, v in batch.items() if k != "attention_mask"}
    return dict(batch)


_ORIGINAL_IS_TRACING: Callable[..., bool] | None = None


def _is_tracing_blind_to_capture(tensor=None) -> bool:
    if tensor is None:
        return torch.compiler.is_compiling() or torch.jit.is_tracing()
    assert _ORIGINAL_IS_TRACING is not None
    return _ORIGINAL_IS_TRACING(tensor)


@contextlib.contextmanager
def mask_helpers_blind_to_capture():
    """While the step is warmed up and captured, transformers' mask helpers answer as they do in
    the eager step. They ask ``is_tracing(padding_mask)``, which is true while a CUDA stream
    captures, and then build a full attention mask (and, for causal models, drop ``is_causal``)
    instead of passing SDPA no mask: SDPA then leaves its flash kernel for a masked one, or for
    the math path with the attention matrix materialised (docs/DECISIONS.md, "CUDA-graph capture
    and transformers' mask helpers", has the figures). With no padding mask there is
    nothing to read on the host, so capture changes nothing the helpers need to know; a mask
    that is present (one that masks something) still counts as traced and is never read during
    capture. Only the name transformers' masking module looks up is replaced, by one function
    object for the life of the process: torch.compile guards on it, so the warm-up (where a
    compiled model is traced) and the capture must see the same one, or the capture would
    recompile and fail (compile true with cuda_graph; same entry). Re-entrant."""
    global _ORIGINAL_IS_TRACING
    try:
        import transformers.masking_utils as masking
    except ImportError:  # pragma: no cover - transformers is a dependency
        yield
        return
    current = getattr(masking, "is_tracing", None)
    if current is None or current is _is_tracing_blind_to_capture:
        yield
        return
    _ORIGINAL_IS_TRACING = current
    masking.is_tracing = _is_tracing_blind_to_capture
    try:
        yield
    finally:
        masking.is_tracing = current


def _cause(exc: BaseException) -> str:
    """What raised, with the first error of a chain: a failed capture's own exit raises a
    second error ("operation not permitted when stream is capturing") over the first one."""
    chain = [exc]
    while chain[-1].__context__ is not None and len(chain) < 5:
        chain.append(chain[-1].__context__)
    parts = [f"{type(e).__name__}: {e}" for e in reversed(chain)]
    return " <- then: ".join(parts)[:_MAX_ERROR_CHARS]


class GraphStep:
    """The captured phases of one step. ``phases``: (name, graph) in capture (= replay) order;
    ``loss``: the static loss tensor the forward graph writes (None in inference mode)."""

    def __init__(self, w: Workload) -> None:
        self.w = w
        self.train = w.config.mode == "train"
        self.inputs = graph_inputs(w.batch, compiled=bool(w.config.compile))
        self.phases: list[tuple[str, torch.cuda.CUDAGraph]] = []
        self.loss: torch.Tensor | None = None
        self.output = None  # keeps the inference graph's static outputs alive
        self.capture_s: float | None = None
        self.capture_peak_allocated_bytes: int | None = None

    # The eager step the graphs capture, phase by phase (the warm-up runs these too).
    def _forward(self):
        if self.train:
            with self.w.autocast(cache_enabled=False):
                return self.w.run_model(**self.inputs).loss
        with torch.inference_mode(), self.w.autocast(cache_enabled=False):
            return self.w.run_model(**self.inputs)

    def warm_up(self, steps: int) -> None:
        """Eager steps on a side stream (lazy initialisation, optimizer state, compilation happen
        here and not in the capture), then back on the current stream."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with mask_helpers_blind_to_capture(), torch.cuda.stream(side):
            for _ in range(steps):
                out = self._forward()
                if self.train:
                    out.backward()
                    self.w.optimizer.step()
                    self.w.optimizer.zero_grad(set_to_none=True)
        torch.cuda.current_stream().wait_stream(side)
        synchronize("cuda")

    def capture(self) -> None:
        """Capture the phases; any failure but running out of memory is Unsupported, naming
        what raised."""
        t0 = time.perf_counter()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()  # one capture stream: the backward runs where the forward ran
        try:
            if self.train:
                self.w.optimizer.zero_grad(set_to_none=True)
            fwd = torch.cuda.CUDAGraph()
            with mask_helpers_blind_to_capture(), torch.cuda.graph(fwd, pool=pool, stream=stream):
                out = self._forward()
            self.phases.append(("forward", fwd))
            if self.train:
                self.loss = out
                bwd = torch.cuda.CUDAGraph()
                with torch.cuda.graph(bwd, pool=pool, stream=stream):
                    out.backward()
                self.phases.append(("backward", bwd))
                opt = torch.cuda.CUDAGraph()
                with torch.cuda.graph(opt, pool=pool, stream=stream):
                    self.w.optimizer.step()
                self.phases.append(("optimizer", opt))
            else:
                self.output = out
            torch.cuda.synchronize()
        except Exception as exc:
            if is_oom(exc):
                raise
            raise Unsupported(f"cuda_graph: capture failed: {_cause(exc)}") from None
        self.capture_s = time.perf_counter() - t0
        self.capture_peak_allocated_bytes = torch.cuda.max_memory_allocated()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.phases)

    def replay(self, mark: Callable[[], None] | None = None) -> torch.Tensor | None:
        """One step: each phase's graph in capture order, ``mark`` before the first and after
        each. Returns a copy of the step's loss (the static one is rewritten by the next
        replay), without synchronizing."""
        if mark:
            mark()
        for _, graph in self.phases:
            graph.replay()
            if mark:
                mark()
        return self.loss.detach().clone() if self.loss is not None else None


def run_graphed(w: Workload, uuid: str | None = None) -> RawTiming:
    """The native harness's measurement with the step replayed from CUDA graphs: warm-up
    (eager, side stream), capture (timed apart), then the measured replays in one window."""
    step = GraphStep(w)
    # the phase names are the captured graphs': known once ``prepare`` (the capture) has run
    names = ("forward", "backward", "optimizer") if step.train else ("forward",)
    stepper = Stepper(
        step.replay, names, warm_up=step.warm_up, prepare=step.capture, profile=step.replay
    )
    raw = measure(w, stepper, uuid)
    assert step.names == names, (step.names, names)
    raw.graph_captured = True
    raw.graph_capture_s = step.capture_s
    if step.capture_peak_allocated_bytes is not None:
        raw.peak_allocated_bytes = max(
            raw.peak_allocated_bytes or 0, step.capture_peak_allocated_bytes
        )
    return raw
