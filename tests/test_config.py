"""Bad input gets one clear error naming the field, before any model is built."""

import json
import subprocess
import sys

import pytest

from sweep.plan.catalog import CATALOG, get_spec
from sweep.plan.config import TrialConfig


@pytest.mark.parametrize(
    "changes,field,hint",
    [
        ({"model": "bert-huge"}, "model", "bert-base-uncased"),
        ({"task": "qa"}, "task", "seq-cls"),
        ({"precision": "fp8"}, "precision", "bf16-mixed"),
        ({"attention": "xformers"}, "attention", "sdpa"),
        ({"optimizer": "sgd"}, "optimizer", "adamw-fused"),
        ({"harness": "keras"}, "harness", "lightning"),
        ({"mode": "eval"}, "mode", "inference"),
        ({"device": "tpu"}, "device", "cuda"),
        ({"batch_size": 0}, "batch_size", "at least 1"),
        ({"batch_size": -4}, "batch_size", "at least 1"),
        ({"seq_len": 0}, "seq_len", "at least 1"),
        ({"seq_len": 513, "model": "bert-base-uncased"}, "seq_len", "512"),
        ({"seq_len": 1025, "model": "gpt2"}, "seq_len", "1024"),
        ({"warmup_steps": 0}, "warmup_steps", "at least 1"),
        ({"steps": 0}, "steps", "at least 1"),
        ({"batch_size": "8"}, "batch_size", "integer"),
        ({"batch_size": True}, "batch_size", "integer"),
        ({"compile": "yes"}, "compile", "true or false"),
        ({"compile": "reduce_overhead"}, "compile", "max-autotune-no-cudagraphs"),
        ({"compile": 1}, "compile", "reduce-overhead"),
        ({"compile": None}, "compile", "true or false"),
        ({"cuda_graph": "true"}, "cuda_graph", "true or false"),
        ({"cuda_graph": 1}, "cuda_graph", "true or false"),
        ({"profile_step": "no"}, "profile_step", "true or false"),
        ({"min_measure_s": -1.0}, "min_measure_s", ">= 0"),
        ({"task": "causal-lm", "model": "bert-tiny"}, "task", "decoder"),
    ],
)
def test_bad_config_names_the_field(changes, field, hint):
    with pytest.raises(ValueError) as err:
        TrialConfig(**changes)
    assert str(err.value).startswith(f"{field}:")
    assert hint in str(err.value)


def test_config_json_path(tmp_path):
    missing = tmp_path / "nope" / "config.json"
    with pytest.raises(ValueError, match="model: config file .* does not exist"):
        TrialConfig(model=str(missing))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="model: config file .* does not parse"):
        TrialConfig(model=str(bad))
    no_type = tmp_path / "notype.json"
    no_type.write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ValueError, match="model_type"):
        TrialConfig(model=str(no_type))
    good = tmp_path / "roberta.json"
    good.write_text(
        json.dumps(
            {
                "model_type": "roberta",
                "max_position_embeddings": 514,
                "pad_token_id": 1,
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 128,
                "vocab_size": 1000,
            }
        )
    )
    assert TrialConfig(model=str(good), seq_len=512).seq_len == 512
    with pytest.raises(ValueError, match="seq_len: 513"):
        TrialConfig(model=str(good), seq_len=513)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown trial field.*batchsize"):
        TrialConfig.from_dict({"batchsize": 8})
    c = TrialConfig(model="gpt2-tiny", batch_size=3)
    assert TrialConfig.from_dict(c.to_dict()) == c


def test_catalog_holds_published_shapes():
    # spot checks against the published config.json files cited in the catalog
    assert get_spec("bert-large-uncased").hidden_size == 1024
    assert get_spec("bert-large-uncased").num_layers == 24
    assert get_spec("roberta-base").max_seq_len == 512
    assert get_spec("gpt2-medium").max_seq_len == 1024
    assert get_spec("smollm2-135m").hparams["num_key_value_heads"] == 3
    assert get_spec("distilbert-base-uncased").num_layers == 6
    for name in (
        "bert-base-uncased",
        "bert-large-uncased",
        "roberta-base",
        "roberta-large",
        "distilroberta-base",
        "distilbert-base-uncased",
        "gpt2",
        "gpt2-medium",
        "smollm2-135m",
        "qwen2.5-0.5b",
        "bert-tiny",
        "bert-mini",
        "gpt2-tiny",
    ):
        assert name in CATALOG


# (hidden, layers, heads, kv heads, intermediate, vocab, tied, rope theta, parameters): each
# model's published config.json, and the parameter count its model card states
DECODERS = {
    "llama-3.2-1b": (2048, 16, 32, 8, 8192, 128256, True, 5e5, 1_235_814_400),
    "llama-3.2-3b": (3072, 28, 24, 8, 8192, 128256, True, 5e5, 3_212_749_824),
    "llama-3.1-8b": (4096, 32, 32, 8, 14336, 128256, False, 5e5, 8_030_261_248),
    "qwen2.5-1.5b": (1536, 28, 12, 2, 8960, 151936, True, 1e6, 1_543_714_304),
    "qwen2.5-7b": (3584, 28, 28, 4, 18944, 152064, False, 1e6, 7_615_616_512),
    "mistral-7b-v0.3": (4096, 32, 32, 8, 14336, 32768, False, 1e6, 7_248_023_552),
}


@pytest.mark.parametrize("name", DECODERS)
def test_fine_tuning_decoders_hold_their_published_shapes_and_sizes(name):
    from sweep.plan.fixed_memory import decoder_params

    spec = get_spec(name)
    hp = spec.hparams
    shape = (
        hp["hidden_size"],
        hp["num_hidden_layers"],
        hp["num_attention_heads"],
        hp["num_key_value_heads"],
        hp["intermediate_size"],
        hp["vocab_size"],
        hp["tie_word_embeddings"],
        hp["rope_theta"],
    )
    assert shape == DECODERS[name][:8]
    assert sum(decoder_params(spec).values()) == DECODERS[name][8]
    # what transformers builds from them (on the meta device: no memory) holds as many
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(spec.model_type, **hp))
    assert sum(p.numel() for p in model.parameters()) == DECODERS[name][8]
    llama3 = hp.get("rope_scaling") or {}
    if name.startswith("llama-3"):  # Llama 3.1/3.2's long-context RoPE
        assert llama3.get("rope_type") == "llama3"
        assert llama3["factor"] == (8.0 if name == "llama-3.1-8b" else 32.0)
        assert llama3["original_max_position_embeddings"] == 8192


def test_cli_bad_input_is_one_clear_error():
    out = subprocess.run(
        [sys.executable, "-m", "sweep", "trial", "--seq-len", "600", "--model", "bert-tiny"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stdout == ""
    assert "seq_len: 600 is longer than bert-tiny supports (512 tokens)" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "sweep", "trial", "--precision", "fp8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--precision" in out.stderr and "bf16-mixed" in out.stderr


def test_cli_help_lists_every_field_and_its_values():
    out = subprocess.run(
        [sys.executable, "-m", "sweep", "trial", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0
    from sweep.plan.config import field_names

    for name in field_names():
        assert "--" + name.replace("_", "-") in out.stdout
    for value in (
        "fp16-mixed",
        "flash_attention_2",
        "apex-fused-adam",
        "lightning",
        "causal-lm",
        "roberta-large",
    ):
        assert value in out.stdout


def test_compile_takes_a_mode_and_default_is_true():
    from sweep.results.record import trial_key

    assert TrialConfig(compile="default").compile is True
    assert TrialConfig(compile="default").compile_mode == "default"
    assert TrialConfig().compile_mode is None
    for mode in ("reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        assert TrialConfig(compile=mode).compile_mode == mode
    # a stored compile: true and a new "default" are the same trial, with the same key
    stored = TrialConfig(compile=True).to_dict()
    again = TrialConfig.from_dict({**stored, "compile": "default"}).to_dict()
    assert again == stored and trial_key(again, None) == trial_key(stored, None)
    assert trial_key(TrialConfig(compile="max-autotune").to_dict(), None) != trial_key(stored, None)


def test_cli_compile_flag_takes_the_same_values():
    import argparse

    from sweep.plan.flags import add_trial_arguments

    parser = argparse.ArgumentParser()
    add_trial_arguments(parser)
    assert parser.parse_args(["--compile", "reduce-overhead"]).compile == "reduce-overhead"
    assert parser.parse_args(["--compile", "true"]).compile is True
    assert parser.parse_args(["--compile", "off"]).compile is False
    assert TrialConfig(compile=parser.parse_args(["--compile", "default"]).compile).compile is True
    assert parser.parse_args(["--cuda-graph", "yes"]).cuda_graph is True
    assert parser.parse_args([]).profile_step is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--compile", "fast"])
