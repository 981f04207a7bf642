"""The fine-tuning transforms: a 4-bit NF4 base (QLoRA), Liger's kernels, LoRA adapters.

Each is a ``check`` (why not here, naming the field) and an ``apply`` (model in, model out) that
sweep/trial/transforms.py lists in the order they apply: quantize the base, patch Liger's kernels
into it, turn on gradient checkpointing, then wrap it with adapters. peft, bitsandbytes and
liger-kernel are imported here only, when a configuration asks for them; a missing one is an
``unsupported`` row that says what to install.
"""

from __future__ import annotations

import contextlib
import importlib
import sys

import torch

from sweep.plan.config import TrialConfig

INSTALL = "pip install 'transformers-sweep[finetune]'"
# The attention projections LoRA's "attention" targets, by architecture (the names transformers
# gives them): Llama, Qwen2, Mistral and their kin; GPT-2's fused c_attn and its output; BERT's.
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
ATTENTION_BY_TYPE = {
    "gpt2": ("c_attn", "attn.c_proj"),
    "bert": ("query", "key", "value", "attention.output.dense"),
    "roberta": ("query", "key", "value", "attention.output.dense"),
    "distilbert": ("q_lin", "k_lin", "v_lin", "out_lin"),
}


def missing(module: str, field: str) -> str | None:
    """The reason a field's package is missing (with what to install), or None."""
    try:
        importlib.import_module(module)
    except ImportError:
        return f"{field}: needs the {module.replace('_', '-')} package ({INSTALL})"
    return None


# -- QLoRA: the base's linear layers as 4-bit NF4 (bitsandbytes) -----------------------------------


# Model types whose blocks hold transformers' Conv1D (a transposed linear) instead of nn.Linear:
# bitsandbytes' 4-bit layer replaces nn.Linear only, so their base would stay in 16 bits.
CONV1D_TYPES = ("gpt2", "openai-gpt")


def qlora_check(config: TrialConfig, device_type: str) -> str | None:
    from sweep.plan.catalog import get_spec

    model_type = get_spec(config.model).model_type
    if model_type in CONV1D_TYPES:
        return (
            f"finetune: qlora quantizes linear layers to 4 bits; {model_type}'s blocks are "
            "Conv1D layers, which bitsandbytes does not replace (the base would stay in bf16)"
        )
    return missing("bitsandbytes", "finetune")


def _output_layers(model) -> set[int]:
    """The ids of the layers that stay in bf16: the output head (the LM head, tied or not, or a
    classifier), as QLoRA leaves it (Dettmers et al. 2023 quantize the transformer blocks)."""
    keep = set()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        keep.add(id(head))
    for name in ("score", "classifier"):
        m = getattr(model, name, None)
        if m is not None:
            keep.update(id(x) for x in m.modules())
    return keep


def quantize_4bit(model, config: TrialConfig):
    """Replace each linear layer of the blocks by bitsandbytes' Linear4bit holding the same
    weights as NF4 with double quantization and bf16 compute, one layer at a time (the bf16
    weight is freed as soon as its 4-bit copy exists): no checkpoint is written or read."""
    import bitsandbytes as bnb

    keep = _output_layers(model)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or id(child) in keep:
                continue
            device = child.weight.device
            q = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=torch.bfloat16,
                compress_statistics=True,
                quant_type="nf4",
                device="meta",
            )
            weight = child.weight.data.to(torch.bfloat16)
            q.weight = bnb.nn.Params4bit(
                weight,
                requires_grad=False,
                compress_statistics=True,
                quant_type="nf4",
                module=q,
            ).to(device)  # quantizes (on the CPU too: bitsandbytes' CPU backend)
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            del weight
            setattr(parent, name, q)
            replaced += 1
    if not replaced:  # a config.json of another layout: a "qlora" row would be LoRA's
        from sweep.trial.outcome import Unsupported

        raise Unsupported("finetune: qlora found no linear layer in the model's blocks to quantize")
    return model


# -- Liger's kernels --------------------------------------------------------------------------


def liger_check(config: TrialConfig, device_type: str) -> str | None:
    if device_type != "cuda":
        return "liger: Liger's kernels are Triton kernels and need a CUDA GPU"
    reason = missing("liger_kernel", "liger")
    if reason:
        return reason
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    from sweep.plan.catalog import get_spec

    model_type = get_spec(config.model).model_type
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        return f"liger: Liger has no kernels for model type {model_type}"
    return None


def apply_liger(model, config: TrialConfig):
    """Liger's kernels patched into this model instance (RMSNorm, RoPE, SwiGLU and, for a
    causal LM, the fused linear cross-entropy that never materialises the full logits)."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=model)
    return model


# -- LoRA adapters (peft) ---------------------------------------------------------------------


def needs_bitsandbytes(config: TrialConfig) -> bool:
    """Whether the configuration uses bitsandbytes: a 4-bit base or an 8-bit optimizer."""
    return config.finetune == "qlora" or config.optimizer in ("adamw-8bit", "paged-adamw-8bit")


@contextlib.contextmanager
def peft_without_bitsandbytes(config: TrialConfig):
    """Import and apply peft with bitsandbytes hidden where the configuration does not use it.

    peft 0.21 imports bitsandbytes with itself (peft/helpers.py), which a LoRA trial never uses,
    and bitsandbytes' import reads the GPU's compute capability, starting CUDA: 2.14 s of every
    LoRA probe on the H200 (benchmarks/import_cost.py, 2026-12-07), 2-3 s on a CPU. Inside this
    block a None in sys.modules makes ``import bitsandbytes`` raise ImportError and ``find_spec``
    say it is absent (peft then leaves its bitsandbytes layers out: they only match quantized
    layers, which a LoRA base has none of). After it the package is found again and peft's
    cached "is it there" answers are cleared, so that a later trial in the same process that
    needs it (a test's QLoRA) has it. Where bitsandbytes is already imported, nothing is hidden."""
    hide = not needs_bitsandbytes(config) and "bitsandbytes" not in sys.modules
    if hide:
        sys.modules["bitsandbytes"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if hide:
            if sys.modules.get("bitsandbytes", False) is None:
                del sys.modules["bitsandbytes"]
            _forget_peft_answers()


def _forget_peft_answers() -> None:
    utils = sys.modules.get("peft.import_utils")
    for name in ("is_bnb_available", "is_bnb_4bit_available"):
        clear = getattr(getattr(utils, name, None), "cache_clear", None)
        if clear is not None:
            clear()


def lora_check(config: TrialConfig, device_type: str) -> str | None:
    with peft_without_bitsandbytes(config):
        return missing("peft", "finetune")


def lora_targets(model, which: str):
    """peft's ``target_modules``: "all-linear" (peft's own: every linear layer but the output
    head), or the attention projections' names for this architecture."""
    if which == "all-linear":
        return "all-linear"
    model_type = getattr(model.config, "model_type", "")
    names = list(ATTENTION_BY_TYPE.get(model_type, ATTENTION_PROJECTIONS))
    if not any(n == t or n.endswith("." + t) for n, _ in model.named_modules() for t in names):
        from sweep.trial.outcome import Unsupported  # peft's own error would be an error row

        raise Unsupported(
            f"lora_targets: attention names the projections {', '.join(names)}; model type "
            f"{model_type or '?'} has none of them (use all-linear)"
        )
    return names


def apply_lora(model, config: TrialConfig):
    """Adapters of rank ``lora_rank`` on the targets, the base frozen (peft). Alpha is twice the
    rank and dropout 0 (torchtune's recipes' choice: dropout costs time and memory and changes
    no shape). The adapters stay fp32 under a *-mixed precision (peft's autocast_adapter_dtype)
    and take the base's dtype under bf16-true."""
    with peft_without_bitsandbytes(config):
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=2 * config.lora_rank,
            lora_dropout=0.0,
            target_modules=lora_targets(model, config.lora_targets),
            task_type="CAUSAL_LM" if config.task == "causal-lm" else "SEQ_CLS",
            bias="none",
        )
        return get_peft_model(model, lora, autocast_adapter_dtype=config.precision != "bf16-true")


# -- the 8-bit optimizers ---------------------------------------------------------------------


def optimizer_check(config: TrialConfig, device_type: str) -> str | None:
    if config.mode != "train":
        return None
    if config.optimizer == "paged-adamw-8bit" and device_type != "cuda":
        # bitsandbytes warns and runs it unpaged: a row labelled paged that was not
        return (
            "optimizer: paged-adamw-8bit pages its state through CUDA unified memory and needs "
            "a CUDA GPU (on the CPU bitsandbytes runs it unpaged: ask adamw-8bit)"
        )
    if config.optimizer in ("adamw-8bit", "paged-adamw-8bit"):
        return missing("bitsandbytes", "optimizer")
    return None


def base_dtype(config: TrialConfig) -> torch.dtype:
    """The dtype the model is built in: bf16 for bf16-true, and for the frozen base of adapters
    computed in bf16 (a LoRA base is not trained: an fp32 copy would only cost memory); fp32
    otherwise (the master weights of a *-mixed step)."""
    if config.precision == "bf16-true":
        return torch.bfloat16
    if config.adapters and config.precision == "bf16-mixed":
        return torch.bfloat16
    return torch.float32
