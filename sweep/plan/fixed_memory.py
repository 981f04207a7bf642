"""A configuration's fixed memory before it runs: weights, gradients and optimizer state from the
parameter count, the dtypes and the fine-tuning method. Pure: the catalog's shapes, no torch.

A lower bound by construction: no activations, no CUDA context, no allocator slack, no LoRA
adapters (under 1% of a base at rank 16), so a configuration whose fixed memory alone exceeds a
card surely does not fit it, and one skipped for that reason would never have fitted.
"""

from __future__ import annotations

from sweep.plan.catalog import DECODER, ModelSpec, get_spec
from sweep.plan.config import TrialConfig

GIB = 2**30
# bytes per trained parameter besides its weight: the gradient and AdamW's two moments, in the
# dtype of the weight (fp32 master weights under *-mixed, bf16 under bf16-true: torch's AdamW
# keeps its state in the parameter's dtype)
_STATE_WORDS = 2
# bitsandbytes' 8-bit AdamW: two 1-byte moments per parameter (block-wise, its absmax aside)
_EIGHT_BIT_STATE_BYTES = 2
# bitsandbytes' NF4: 4 bits per weight plus one fp32 absmax per block of 64, quantized again
# (double quantization) to about 0.127 bits per weight (QLoRA paper, arXiv:2305.14314, 2)
NF4_BYTES_PER_PARAM = (4 + 0.127) / 8


def decoder_params(spec: ModelSpec) -> dict[str, int]:
    """The parameter count of a Llama-shaped decoder from its config (the catalog's hparams):
    ``linear`` (the blocks' projections, what QLoRA quantizes), ``other`` (embeddings, the
    untied head, norms and biases: kept in bf16 by QLoRA). Empty for other shapes."""
    hp = spec.hparams
    need = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    if spec.family != DECODER or not all(k in hp for k in need):
        return {}
    d, layers, heads = hp["hidden_size"], hp["num_hidden_layers"], hp["num_attention_heads"]
    kv = hp.get("num_key_value_heads", heads)
    head_dim = hp.get("head_dim", d // heads)
    inter, vocab = hp["intermediate_size"], hp["vocab_size"]
    attn = d * heads * head_dim * 2 + d * kv * head_dim * 2  # q, o; k, v
    mlp = 3 * d * inter  # gate, up, down
    linear = layers * (attn + mlp)
    embeddings = vocab * d * (1 if hp.get("tie_word_embeddings", True) else 2)
    norms = layers * 2 * d + d
    biases = layers * (heads + 2 * kv) * head_dim if spec.model_type == "qwen2" else 0
    return {"linear": linear, "other": embeddings + norms + biases}


def weights_bytes(config: TrialConfig) -> float | None:
    """The model's weights alone as the trial builds them (sweep/trial/finetune.py, base_dtype),
    bytes; None for a model whose parameters are not counted here (encoders, a config.json)."""
    params = decoder_params(get_spec(config.model))
    if not params:
        return None
    if config.finetune == "qlora":
        return params["linear"] * NF4_BYTES_PER_PARAM + params["other"] * 2
    return (params["linear"] + params["other"]) * _word(config)


def _word(config: TrialConfig) -> int:
    """Bytes of one weight as built: bf16 under bf16-true, and for an adapters' base under
    bf16-mixed."""
    bf16 = config.precision == "bf16-true" or (config.adapters and config.precision == "bf16-mixed")
    return 2 if bf16 else 4


def fixed_memory_bytes(config: TrialConfig) -> float | None:
    """Weights + gradients + optimizer state of ``config``, bytes (a lower bound: see the
    module); None where ``weights_bytes`` is. Adapters train too few weights to count."""
    weights = weights_bytes(config)
    if weights is None or config.adapters or config.mode != "train":
        return weights
    n, word = weights / _word(config), _word(config)
    if config.optimizer == "adamw-8bit":
        return weights + n * (word + _EIGHT_BIT_STATE_BYTES)
    if config.optimizer == "paged-adamw-8bit":  # its state can be paged out to the host
        return weights + n * word
    return weights + n * word * (1 + _STATE_WORDS)


def too_big(config: TrialConfig) -> str | None:
    """Why ``config`` cannot fit its ``capacity_gb`` before any run (its fixed memory alone
    exceeds the card), or None (it may fit, or no capacity or no count)."""
    if config.capacity_gb is None:
        return None
    fixed = fixed_memory_bytes(config)
    if fixed is None or fixed <= config.capacity_gb * GIB:
        return None
    return (
        f"fixed memory {fixed / GIB:.1f} GiB (weights, gradients, optimizer state) exceeds the "
        f"card's {config.capacity_gb:g} GiB: not run"
    )


def search_outline(configs: list[TrialConfig]) -> str | None:
    """What a max-batch or max-seq sweep's searches (one ``config`` each, its first probe) will
    do, as ``sweep plan`` says it: how many are answered without a run (``too_big``), run on the
    whole card, and run capped (each seeded from its whole-card family where the sweep has one:
    sweep/engine/seeded.py); None without a capped one."""
    capped = [c for c in configs if c.capacity_gb is not None]
    if not capped:
        return None
    whole = {repr(c) for c in configs if c.capacity_gb is None}
    run = [c for c in capped if not too_big(c)]
    seeded = sum(1 for c in run if repr(c.replace(capacity_gb=None)) in whole)
    return (
        f"{len(capped) - len(run)} answered without a run (fixed memory over the card), "
        f"{len(whole)} on the whole card, {len(run)} capped ({seeded} started from their "
        "whole-card family's probes)"
    )
