"""Small hostile files (issue 26): a YAML nested 500 deep, config.json files that crash Python's
readers or ask for a model no machine holds. Each is one ``error:`` line naming the file and the
field, exit 2, in bounded time and memory, before anything is built. Pure, no Ray instance."""

from __future__ import annotations

import json
import resource
import time

import pytest

from sweep import cli
from sweep.plan import configjson
from sweep.plan.catalog import CATALOG

# (what the file holds, the field the error must name)
HOSTILE_CONFIGS = {
    "infinity": ('{"model_type": "bert", "max_position_embeddings": Infinity}', "max_position"),
    "deep": ('{"model_type": "bert", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "'x'"),
    "null": ('{"model_type": "bert", "max_position_embeddings": null}', "max_position"),
    "digits": ('{"model_type": "bert", "vocab_size": ' + "9" * 100_000 + "}", "vocab_size"),
    "float_layers": ('{"model_type": "bert", "num_hidden_layers": 1e9}', "num_hidden_layers"),
    "layers": (
        '{"model_type": "bert", "num_hidden_layers": 1000000000, "hidden_size": 8, '
        '"num_attention_heads": 1, "intermediate_size": 8}',
        "num_hidden_layers",
    ),
    "hidden": ('{"model_type": "bert", "hidden_size": 1000000000}', "hidden_size"),
    "params": (
        '{"model_type": "llama", "num_hidden_layers": 1000, "hidden_size": 32768, '
        '"intermediate_size": 131072}',
        "num_hidden_layers+hidden_size+intermediate_size",
    ),
    "nan_nested": (
        '{"model_type": "llama", "rope_scaling": {"factor": NaN}}',
        "rope_scaling.factor",
    ),
}


def _plan(tmp_path, capsys, yaml_text: str) -> tuple[int, str, float, int]:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml_text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    code = cli.main(["plan", "--no-cluster", str(sweep), "--db", str(tmp_path / "r.db")])
    took = time.perf_counter() - t0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return code, lines[0], took, grown_kib


@pytest.mark.parametrize("name", sorted(HOSTILE_CONFIGS))
def test_a_hostile_config_json_is_one_line_naming_file_and_field(tmp_path, capsys, name):
    text, field = HOSTILE_CONFIGS[name]
    path = tmp_path / f"{name}.json"
    path.write_text(text)
    code, line, took, grown_kib = _plan(
        tmp_path, capsys, f"name: h\naxes:\n  model: ['{path}']\nfixed: {{device: cpu}}\n"
    )
    assert code == 2 and line.startswith("error: ")
    assert f"{name}.json" in line and field in line, line
    assert len(line) < 500  # the tmp paths are most of it
    assert took < 2 and grown_kib < 100_000


def test_a_yaml_nested_500_deep_in_1_kb_is_one_line(tmp_path, capsys):
    text = "name: d\nfixed:\n  seed: " + "[" * 500 + "]" * 500 + "\n"
    assert len(text) < 1100
    code, line, took, grown_kib = _plan(tmp_path, capsys, text)
    assert code == 2
    assert "s.yaml" in line and "'fixed.seed' nests deeper than" in line, line
    assert took < 2 and grown_kib < 100_000


# Llama-3.1-8B and Qwen2.5-7B, as their config.json files publish them
# (https://huggingface.co/meta-llama/Llama-3.1-8B, https://huggingface.co/Qwen/Qwen2.5-7B)
LLAMA_8B = dict(
    model_type="llama",
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=131072,
)
QWEN_7B = dict(
    model_type="qwen2",
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    vocab_size=152064,
    max_position_embeddings=131072,
)


def test_the_size_bounds_pass_the_catalog_and_8b_models_with_room(tmp_path):
    for spec in CATALOG.values():
        configjson.check_sizes(spec.name, spec.hparams)
    for raw, published in ((LLAMA_8B, 8.03e9), (QWEN_7B, 7.62e9)):
        configjson.check_sizes("x", raw)
        n = configjson.estimate_parameters(raw)
        assert 0.9 < n / published < 1.15, n
        assert n * 20 < configjson.MAX_PARAMETERS  # room
    bert_base = configjson.estimate_parameters(CATALOG["bert-base-uncased"].hparams)
    assert 1.0 < bert_base / 110e6 < 1.3, bert_base  # an upper bound: its MLP has no gate
    path = tmp_path / "llama8b.json"
    path.write_text(json.dumps(LLAMA_8B))
    from sweep.plan.catalog import get_spec

    spec = get_spec(str(path))
    assert (spec.num_layers, spec.hidden_size, spec.max_seq_len) == (32, 4096, 131072)
