"""Named model architectures, described as data (no transformers import here).

Each entry is the published hyper-parameters of a checkpoint's ``config.json``; models are built
with ``AutoConfig.for_model(model_type, **hparams)`` and ``from_config`` (random weights, no hub).
``max_seq_len`` is the longest input the model can take: for RoBERTa the position table has
``max_position_embeddings = 514`` but positions start after ``padding_idx = 1``, so 512 tokens fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from sweep.plan import configjson

ENCODER = "encoder"
DECODER = "decoder"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model_type: str  # transformers model_type, e.g. "bert"
    family: str  # ENCODER or DECODER
    max_seq_len: int  # longest sequence (tokens) the model accepts
    vocab_size: int
    hidden_size: int
    num_layers: int
    hparams: dict[str, Any] = field(default_factory=dict)  # passed to AutoConfig.for_model
    source: str = ""  # where the hyper-parameters come from
    tiny: bool = False  # a CPU-sized stand-in, not a published checkpoint


def _bert(name, layers, hidden, heads, inter, src, tiny=False):
    hp = dict(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=inter,
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=0,
    )
    return ModelSpec(name, "bert", ENCODER, 512, 30522, hidden, layers, hp, src, tiny)


def _roberta(name, layers, hidden, heads, inter, src):
    hp = dict(
        vocab_size=50265,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=inter,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return ModelSpec(name, "roberta", ENCODER, 512, 50265, hidden, layers, hp, src)


def _gpt2(name, layers, hidden, heads, src, tiny=False, n_positions=1024):
    hp = dict(
        vocab_size=50257,
        n_positions=n_positions,
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        bos_token_id=50256,
        eos_token_id=50256,
        pad_token_id=50256,
    )
    return ModelSpec(name, "gpt2", DECODER, n_positions, 50257, hidden, layers, hp, src, tiny)


def _llama(
    name,
    model_type,
    layers,
    hidden,
    heads,
    kv,
    inter,
    vocab,
    max_pos,
    theta,
    src,
    tiny=False,
    tie=True,
    **extra,
):
    hp = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        max_position_embeddings=max_pos,
        rope_theta=theta,
        rms_norm_eps=1e-5 if model_type in ("llama", "mistral") else 1e-6,
        tie_word_embeddings=tie,
        pad_token_id=0,
        **extra,
    )
    return ModelSpec(name, model_type, DECODER, max_pos, vocab, hidden, layers, hp, src, tiny)


_HF = "https://huggingface.co/{}/blob/main/config.json"


def _llama3_rope(factor: float) -> dict[str, Any]:
    """Llama 3.1/3.2's RoPE scaling ("llama3": frequencies rescaled past 8192 positions)."""
    return dict(
        rope_scaling=dict(
            rope_type="llama3",
            factor=factor,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=8192,
        )
    )


CATALOG: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        _bert("bert-base-uncased", 12, 768, 12, 3072, _HF.format("google-bert/bert-base-uncased")),
        _bert(
            "bert-large-uncased", 24, 1024, 16, 4096, _HF.format("google-bert/bert-large-uncased")
        ),
        _roberta("roberta-base", 12, 768, 12, 3072, _HF.format("FacebookAI/roberta-base")),
        _roberta("roberta-large", 24, 1024, 16, 4096, _HF.format("FacebookAI/roberta-large")),
        _roberta(
            "distilroberta-base", 6, 768, 12, 3072, _HF.format("distilbert/distilroberta-base")
        ),
        ModelSpec(
            "distilbert-base-uncased",
            "distilbert",
            ENCODER,
            512,
            30522,
            768,
            6,
            dict(
                vocab_size=30522,
                dim=768,
                n_layers=6,
                n_heads=12,
                hidden_dim=3072,
                max_position_embeddings=512,
                pad_token_id=0,
            ),
            _HF.format("distilbert/distilbert-base-uncased"),
        ),
        _gpt2("gpt2", 12, 768, 12, _HF.format("openai-community/gpt2")),
        _gpt2("gpt2-medium", 24, 1024, 16, _HF.format("openai-community/gpt2-medium")),
        _gpt2("gpt2-large", 36, 1280, 20, _HF.format("openai-community/gpt2-large")),
        _llama(
            "smollm2-135m",
            "llama",
            30,
            576,
            9,
            3,
            1536,
            49152,
            8192,
            100000.0,
            _HF.format("HuggingFaceTB/SmolLM2-135M"),
        ),
        _llama(
            "qwen2.5-0.5b",
            "qwen2",
            24,
            896,
            14,
            2,
            4864,
            151936,
            32768,
            1000000.0,
            _HF.format("Qwen/Qwen2.5-0.5B"),
        ),
        # Decoders people fine-tune on one GPU (1B to 8B): each config.json's shape, vocabulary,
        # positions, RoPE and tying. The Llama checkpoints are gated; their configs are public.
        _llama(
            "llama-3.2-1b",
            "llama",
            16,
            2048,
            32,
            8,
            8192,
            128256,
            131072,
            500000.0,
            _HF.format("meta-llama/Llama-3.2-1B"),
            **_llama3_rope(32.0),
        ),
        _llama(
            "llama-3.2-3b",
            "llama",
            28,
            3072,
            24,
            8,
            8192,
            128256,
            131072,
            500000.0,
            _HF.format("meta-llama/Llama-3.2-3B"),
            **_llama3_rope(32.0),
        ),
        _llama(
            "llama-3.1-8b",
            "llama",
            32,
            4096,
            32,
            8,
            14336,
            128256,
            131072,
            500000.0,
            _HF.format("meta-llama/Llama-3.1-8B"),
            tie=False,
            **_llama3_rope(8.0),
        ),
        _llama(
            "qwen2.5-1.5b",
            "qwen2",
            28,
            1536,
            12,
            2,
            8960,
            151936,
            131072,
            1000000.0,
            _HF.format("Qwen/Qwen2.5-1.5B"),
        ),
        _llama(
            "qwen2.5-7b",
            "qwen2",
            28,
            3584,
            28,
            4,
            18944,
            152064,
            131072,
            1000000.0,
            _HF.format("Qwen/Qwen2.5-7B"),
            tie=False,
        ),
        _llama(
            "mistral-7b-v0.3",
            "mistral",
            32,
            4096,
            32,
            8,
            14336,
            32768,
            32768,
            1000000.0,
            _HF.format("mistralai/Mistral-7B-v0.3"),
            tie=False,
            sliding_window=None,
        ),
        # Tiny stand-ins for CPU work. bert-tiny/bert-mini are Turc et al. 2019's compact BERTs
        # (google/bert_uncased_L-2_H-128_A-2, L-4_H-256_A-4); the others are shrunk here.
        _bert("bert-tiny", 2, 128, 2, 512, _HF.format("google/bert_uncased_L-2_H-128_A-2"), True),
        _bert("bert-mini", 4, 256, 4, 1024, _HF.format("google/bert_uncased_L-4_H-256_A-4"), True),
        _gpt2("gpt2-tiny", 2, 128, 2, "gpt2 shrunk to 2 layers, width 128 (this project)", True),
        _llama(
            "llama-tiny",
            "llama",
            2,
            128,
            4,
            2,
            256,
            32000,
            2048,
            10000.0,
            "Llama shape shrunk to 2 layers, width 128 (this project)",
            True,
        ),
    ]
}

# Where a config.json names its sequence limit, in the order we look.
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


def spec_from_config_file(path: str) -> ModelSpec:
    """Read a user's ``config.json`` into a ModelSpec. Raises ValueError naming the problem."""
    if not os.path.isfile(path):
        raise ValueError(f"model: config file {_cut(path)} does not exist")
    raw = configjson.read_config(path)  # bounded: depth, numbers (sweep/plan/configjson.py)
    if "model_type" not in raw:
        raise ValueError(f"model: config file {_cut(path)} has no 'model_type' key")
    mtype = raw["model_type"]
    if not isinstance(mtype, str):
        raise ValueError(f"model: config file {_cut(path)}: field 'model_type': expected a name")
    configjson.check_sizes(path, raw)  # every size bounded before anything is built
    max_len = next((raw[k] for k in _POSITION_KEYS if k in raw), None)
    pad = raw.get("pad_token_id")
    if mtype in ("roberta", "xlm-roberta", "camembert") and max_len is not None:
        # positions start after padding_idx
        max_len -= (pad if isinstance(pad, int) and 0 <= pad < max_len else 1) + 1
    decoder = bool(raw.get("is_decoder")) or mtype in DECODER_TYPES
    hparams = {
        k: v
        for k, v in raw.items()
        if k
        not in (
            "model_type",
            "architectures",
            "transformers_version",
            "torch_dtype",
            "dtype",
            "_name_or_path",
        )
    }
    return ModelSpec(
        name=path,
        model_type=mtype,
        family=DECODER if decoder else ENCODER,
        max_seq_len=max_len or 10**9,
        vocab_size=raw.get("vocab_size", 0),
        hidden_size=next((raw[k] for k in ("hidden_size", "n_embd", "dim") if k in raw), 0),
        num_layers=next(
            (raw[k] for k in ("num_hidden_layers", "n_layer", "n_layers") if k in raw), 0
        ),
        hparams=hparams,
        source=f"file {path}",
    )


DECODER_TYPES = {
    "gpt2",
    "gpt_neo",
    "gptj",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "phi",
    "phi3",
    "opt",
    "bloom",
    "falcon",
    "olmo",
    "smollm3",
}


def get_spec(model: str) -> ModelSpec:
    """The ModelSpec for a catalog name or a path to a config.json."""
    if model in CATALOG:
        return CATALOG[model]
    if model.endswith(".json") or os.sep in model:
        return spec_from_config_file(model)
    raise ValueError(
        f"model: unknown model {_cut(model)}; known: {', '.join(CATALOG)} "
        "(or a path to a config.json)"
    )


def _cut(text: str, limit: int = 80) -> str:
    """The repr of a name from a user's file, cut to ``limit`` characters for an error message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."
