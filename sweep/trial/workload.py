"""What one trial runs: the model, its synthetic batch, the optimizer and the precision.

Built directly on the trial's device (``with torch.device(...)``), so a large model is never
initialised on the CPU and then copied. Weights are random: a throughput benchmark needs the
architecture, not the checkpoint, and nothing is fetched from a hub.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from sweep.plan.catalog import DECODER, ModelSpec, get_spec
from sweep.plan.config import COMPILE_MODES_WITH_GRAPHS, TrialConfig
from sweep.plan.handoff import REQUIRE_GPU_ENV
from sweep.trial.finetune import base_dtype, optimizer_check
from sweep.trial.outcome import NoCuda, is_oom
from sweep.trial.transforms import apply_all

log = logging.getLogger(__name__)


def resolve_device(config: TrialConfig) -> str:
    """Where the trial measures. A trial that was given a GPU (REQUIRE_GPU_ENV) never falls back
    to the CPU: device auto without CUDA there raises NoCuda, like device cuda does."""
    required = os.environ.get(REQUIRE_GPU_ENV) == "1"
    if config.device == "auto" and not required:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if config.device in ("cuda", "auto") and not torch.cuda.is_available():
        why = "device: cuda asked for" if config.device == "cuda" else "Ray gave this trial a GPU"
        raise NoCuda(f"{why}, but no CUDA device is visible in the trial's process")
    return "cuda" if config.device == "auto" else config.device


def refusal(config: TrialConfig, device_type: str) -> str | None:
    """Why this machine cannot run the workload (naming the field), or None."""
    if device_type == "cpu":
        if config.precision in ("fp16-mixed", "tf32"):
            return (
                f"precision: {config.precision} needs a CUDA GPU "
                "(use fp32 or bf16-mixed on the CPU)"
            )
        if config.optimizer == "apex-fused-adam":
            return "optimizer: apex-fused-adam needs a CUDA GPU"
        if config.attention == "flash_attention_2":
            return "attention: flash_attention_2 needs a CUDA GPU"
    else:
        major, _ = torch.cuda.get_device_capability(0)
        # bf16-true and QLoRA's bf16 compute too (QLoRA asks a bf16 precision)
        if config.precision.startswith("bf16") and not torch.cuda.is_bf16_supported():
            return (
                f"precision: {config.precision} needs compute capability 8.0 or newer "
                f"(this GPU has {major}.x)"
            )
    if config.attention == "flash_attention_2" and not _imports("flash_attn"):
        return "attention: flash_attention_2 needs the flash-attn package, which is not installed"
    reason = optimizer_check(config, device_type)
    if reason:
        return reason
    if config.optimizer == "apex-fused-adam" and not _imports("apex.optimizers"):
        return (
            "optimizer: apex-fused-adam needs NVIDIA apex, which does not "
            "import here (it is not on PyPI; the NGC PyTorch image ships it)"
        )
    return None


def _imports(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def set_matmul_precision(precision: str) -> None:
    """fp32 means true fp32 matrix products; tf32 lets them use TF32 tensor cores."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def autocast_dtype(precision: str):
    """The autocast dtype of a *-mixed precision; None (no autocast) otherwise: fp32, tf32, and
    bf16-true, whose weights are bf16 already."""
    return {"fp16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)


def _numel(p: torch.Tensor) -> int:
    """A parameter's logical element count (a 4-bit one packs two per byte: its quant_state
    keeps the shape)."""
    state = getattr(p, "quant_state", None)
    return int(torch.Size(state.shape).numel()) if state is not None else p.numel()


def count_params(model: torch.nn.Module) -> dict[str, int]:
    """All parameters; those outside embeddings; those that train; those in matrix products
    (linear layers, GPT-2's Conv1D, a tied LM head counted once per use, LoRA's adapters), for
    the model-FLOPs estimate, and those of them that train. Logical counts: a 4-bit weight
    counts its elements, not its bytes."""
    params = list(model.parameters())
    total = sum(_numel(p) for p in params)
    emb = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    matmul = matmul_trainable = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            n = m.in_features * m.out_features
        elif type(m).__name__ == "Conv1D":
            n = m.weight.numel()
        else:
            continue
        matmul += n
        matmul_trainable += n if m.weight.requires_grad else 0
    return {
        "n_params": total,
        "n_params_nonembedding": total - emb,
        "n_params_trainable": sum(_numel(p) for p in params if p.requires_grad),
        "n_matmul_params": matmul,
        "n_matmul_params_trainable": matmul_trainable,
    }


def build_model(spec: ModelSpec, config: TrialConfig, device: torch.device) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    hf_config = AutoConfig.for_model(spec.model_type, **spec.hparams)
    hf_config.num_labels = 2
    if getattr(hf_config, "pad_token_id", None) is None and spec.family == DECODER:
        # Sequence classification on a decoder finds each row's last token through the pad id.
        hf_config.pad_token_id = getattr(hf_config, "eos_token_id", None) or 0
    cls = AutoModelForCausalLM if config.task == "causal-lm" else AutoModelForSequenceClassification
    with torch.device(device):
        model = cls.from_config(
            hf_config, attn_implementation=config.attention, dtype=base_dtype(config)
        )
    model.train(config.mode == "train")
    return model


def synthetic_batch(
    spec: ModelSpec, config: TrialConfig, device: torch.device, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Token ids of exactly (batch, seq_len), never a special id (0..2) nor the last id (GPT-2's
    pad/eos), so that no row looks padded; labels for the task."""
    shape = (config.batch_size, config.seq_len)
    high = max(spec.vocab_size - 1, 4)
    ids = torch.randint(3, high, shape, generator=generator).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if config.mode == "train":
        if config.task == "causal-lm":
            batch["labels"] = ids.clone()
        else:
            batch["labels"] = torch.randint(0, 2, (config.batch_size,), generator=generator).to(
                device
            )
    return batch


def _bnb(name: str):
    def build(params, lr: float, capturable: bool):
        import bitsandbytes as bnb

        return getattr(bnb.optim, name)(params, lr=lr)

    return build


# name -> builder(params, lr, capturable). ``capturable``: the step count and bias corrections stay
# on the device, so that the step can be captured in a CUDA graph (torch's fused and foreach
# AdamW); the others cannot be captured (sweep/trial/graph.py refuses them).
OPTIMIZER_BUILDERS = {
    # torch picks foreach on CUDA
    "adamw": lambda params, lr, capturable: torch.optim.AdamW(params, lr=lr, capturable=capturable),
    "adamw-fused": lambda params, lr, capturable: torch.optim.AdamW(
        params, lr=lr, fused=True, capturable=capturable
    ),
    "apex-fused-adam": lambda params, lr, capturable: _apex(params, lr),
    "adamw-8bit": _bnb("AdamW8bit"),
    "paged-adamw-8bit": _bnb("PagedAdamW8bit"),
}


def _apex(params, lr: float):
    from apex.optimizers import FusedAdam

    return FusedAdam(params, lr=lr, adam_w_mode=True)


def build_optimizer(name: str, params, lr: float = 2e-5, capturable: bool = False):
    return OPTIMIZER_BUILDERS[name](params, lr, capturable)


@dataclass
class Workload:
    config: TrialConfig
    spec: ModelSpec
    device: torch.device
    model: torch.nn.Module  # eager model (FLOP counting, Lightning's registry)
    run_model: Any  # what the step calls: the model, or torch.compile(model)
    batch: dict[str, torch.Tensor]
    optimizer: Any
    scaler: Any  # torch.amp.GradScaler for fp16-mixed, else None
    params: dict[str, int]
    # what the harness calls between the warm-up and the measured steps (the capped allocator's
    # second cap: sweep/trial/transforms.py, after_warmup_all); None: nothing
    after_warmup: Callable[[], None] | None = None

    def autocast(self, cache_enabled: bool = True):
        """The step's autocast. A CUDA-graph capture needs ``cache_enabled=False``: the cast
        weights autocast caches are freed when the context exits, under the captured kernels."""
        dtype = autocast_dtype(self.config.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=cache_enabled)

    @property
    def compiled_graphs(self) -> bool:
        """Whether the compiled model replays CUDA graphs of its own (cudagraph trees): each step
        must then be marked, and an output kept past the next step must be copied."""
        return self.config.compile in COMPILE_MODES_WITH_GRAPHS


def build_workload(config: TrialConfig, device_type: str) -> Workload:
    spec = get_spec(config.model)
    device = torch.device(device_type)
    torch.manual_seed(config.seed)
    set_matmul_precision(config.precision)
    model = apply_all(build_model(spec, config, device), config)
    gen = torch.Generator().manual_seed(config.seed)
    batch = synthetic_batch(spec, config, device, gen)
    optimizer = None
    scaler = None
    if config.mode == "train":
        trainable = [p for p in model.parameters() if p.requires_grad]  # a frozen base stays out
        optimizer = build_optimizer(config.optimizer, trainable, capturable=config.cuda_graph)
        if config.precision == "fp16-mixed" and config.harness == "native":
            scaler = torch.amp.GradScaler(device_type)
    run_model = torch.compile(model, mode=config.compile_mode) if config.compile else model
    return Workload(
        config, spec, device, model, run_model, batch, optimizer, scaler, count_params(model)
    )


def train_step(w: Workload, mark=None) -> torch.Tensor:
    """One training step: forward (with the loss), backward, optimizer (with zero_grad).
    ``mark`` (if given) is called at the start and after each phase. Returns the detached loss
    without synchronizing (the caller checks losses after the measured steps)."""
    if w.compiled_graphs:
        torch.compiler.cudagraph_mark_step_begin()
    if mark:
        mark()
    with w.autocast():
        loss = w.run_model(**w.batch).loss
    if mark:
        mark()
    if w.scaler is not None:
        w.scaler.scale(loss).backward()
    else:
        loss.backward()
    if mark:
        mark()
    if w.scaler is not None:
        w.scaler.step(w.optimizer)
        w.scaler.update()
    else:
        w.optimizer.step()
    w.optimizer.zero_grad(set_to_none=True)
    if mark:
        mark()
    # a cudagraph tree's output is overwritten by the next step's replay
    return loss.detach().clone() if w.compiled_graphs else loss.detach()


def inference_step(w: Workload, mark=None) -> None:
    """One forward pass under inference mode (no autograd), marks at start and end."""
    if w.compiled_graphs:
        torch.compiler.cudagraph_mark_step_begin()
    if mark:
        mark()
    with torch.inference_mode(), w.autocast():
        w.run_model(**w.batch)
    if mark:
        mark()


def _count_once(w: Workload, one: dict[str, torch.Tensor]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    if w.config.mode == "train":
        with counter:
            with w.autocast():
                loss = w.model(**one).loss
            loss.backward()
        w.model.zero_grad(set_to_none=True)
    else:
        with counter, torch.inference_mode(), w.autocast():
            w.model(**one)
    return counter.get_total_flops()


def step_flops(w: Workload, per_sequence: int | None, timings: dict[str, float]) -> int | None:
    """The step's FLOPs: ``per_sequence`` (an earlier trial's count for this shape, passed by the
    worker) scaled to this batch, or counted now (``count_flops``), timed apart."""
    import time

    if per_sequence:
        timings["flops_reused"] = 1
        return int(per_sequence) * w.config.batch_size
    if w.config.capacity_gb is not None:
        # an emulated card's row says what fits, never a speed (sweep/trial/capacity.py): the
        # count would only be read for a speed, and at a long length it costs three short steps
        # of every atlas probe (2.6-6.4 s a trial on the H100, 2026-12-07)
        timings["flops_not_counted"] = 1
        return None
    t0 = time.perf_counter()
    try:
        flops = count_flops(w)
    except Exception as exc:
        if is_oom(exc):
            raise
        # The counter itself can fail on a kernel's call (Liger's fused loss calls addmm with
        # out=, which torch's addmm formula rejects: docs/DECISIONS.md, "FLOPs the counter
        # cannot count"): the step is still measured; the model FLOPs (flops_per_step_analytic,
        # mfu_analytic) stand, the counted ones are left empty rather than guessed.
        log.warning("FLOP count failed (%s: %s); counted FLOPs left empty", type(exc).__name__, exc)
        w.model.zero_grad(set_to_none=True)
        flops = None
        timings["flops_count_failed"] = 1
    timings["time_flops_s"] = time.perf_counter() - t0
    timings["flops_reused"] = 0
    return flops


def count_flops(w: Workload) -> int:
    """FLOPs of one step as torch's FlopCounterMode counts them, on the eager model.

    Counted on a batch of one and multiplied by the batch size: every operation in these
    models is per-sequence, so the count is exactly linear in the batch (a test checks it),
    and a batch of one cannot run out of memory where the measured batch just fit.

    torch's FLOP formula for the fused attention kernels rejects grouped-query attention (keys
    and values with fewer heads than queries, as in Llama/Qwen/Mistral: "sdpa_flop_count:
    query/key/value shapes are incompatible"; docs/DECISIONS.md, "FLOPs of grouped-query
    attention"). Such a model is counted with
    transformers' eager attention from the start, which repeats the key/value heads and
    multiplies the same matrices: the same arithmetic, in operations the counter knows. (Not
    by trying the fused kernel first: a count that fails part-way through a forward under
    gradient checkpointing must not be the first thing the model runs.) Any other model whose
    fused count fails is counted the same way.
    """
    one = {k: v[:1] for k, v in w.batch.items()}
    cfg = getattr(w.model, "config", None)
    if cfg is not None and _grouped_query(cfg):
        return _count_eager(w, one)
    try:
        return _count_once(w, one) * w.config.batch_size
    except Exception as exc:
        if getattr(cfg, "_attn_implementation", "eager") == "eager":
            raise
        log.info("FLOP count with %s attention failed (%s)", cfg._attn_implementation, exc)
        w.model.zero_grad(set_to_none=True)
        return _count_eager(w, one)


def _grouped_query(cfg) -> bool:
    heads = getattr(cfg, "num_attention_heads", None)
    kv = getattr(cfg, "num_key_value_heads", None)
    return bool(heads and kv and kv < heads)


# Eager attention keeps every layer's score matrix (heads x seq^2) for the backward: counted at
# the trial's own length it would need more memory than the step it counts (at 4k tokens a 1B
# Llama's scores take tens of GB), so a long sequence, a capped card or a max-seq probe would end
# as an out-of-memory the step never had. Longer than this, the count is taken at three short
# lengths and carried to the trial's by the exact polynomial (``_count_by_length``).
COUNT_AT_TOKENS = 256


def _count_eager(w: Workload, one: dict[str, torch.Tensor]) -> int:
    """The count with transformers' eager attention, the model's own restored after."""
    cfg = w.model.config
    previous = getattr(cfg, "_attn_implementation", "eager")
    cfg._attn_implementation = "eager"
    try:
        seq = one["input_ids"].shape[-1]
        if seq > 3 * COUNT_AT_TOKENS:
            return _count_by_length(w, one, seq) * w.config.batch_size
        return _count_once(w, one) * w.config.batch_size
    finally:
        cfg._attn_implementation = previous


def _count_by_length(w: Workload, one: dict[str, torch.Tensor], seq: int) -> int:
    """The count of one sequence of ``seq`` tokens from counts at k, 2k and 3k tokens: in these
    decoders a sequence's FLOPs are exactly c0 + c1*s + c2*s^2 (projections, MLP and logits grow
    with s, the score and value products with s^2; nothing else is counted), so three counts fix
    the polynomial (a test checks it against the direct count)."""
    k = COUNT_AT_TOKENS
    f1, f2, f3 = (_count_once(w, {n: v[..., : i * k] for n, v in one.items()}) for i in (1, 2, 3))
    # second and first differences over steps of k tokens, in integers: 2*c2*k^2 and the rest
    d2 = f3 - 2 * f2 + f1
    d1 = f2 - f1
    n = Fraction(seq, k) - 1  # steps of k from the first point
    total = f1 + n * d1 + n * (n - 1) / 2 * d2
    if total.denominator != 1:  # a count not quadratic in the length: say so, never round
        raise ValueError(f"FLOPs not a quadratic in the sequence length ({f1}, {f2}, {f3})")
    return int(total)
