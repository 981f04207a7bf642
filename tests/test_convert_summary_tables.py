"""scripts/convert_summary_tables.py: a sweep's printed summary table back into trial rows,
each matched to the one configuration its sweep planned (no GPU)."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from sweep.results.record import MEASURED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "convert_summary_tables.py")
_spec = importlib.util.spec_from_file_location("convert_summary_tables", SCRIPT)
cst = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cst)

ENV = {
    "gpu_name": "NVIDIA H200",
    "driver_version": "1",
    "cuda_version": "13.0",
    "torch_version": "2.11.0",
    "transformers_version": "5.17.0",
    "lightning_version": "2.6.6",
    "git_commit": "abc",
}

# a table as `python -m sweep run` printed it on the H200: run 2's harness sweep, its header,
# both roberta-base batch-8 rows and the native roberta-large row
with open(os.path.join(cst.DEFAULT_RUN, "harness_sweep.out"), encoding="utf-8") as _fh:
    _LINES = _fh.read().splitlines()
HARNESS = "\n".join([_LINES[0], _LINES[1], _LINES[2], _LINES[6]]) + "\n"


def _write(tmp_path, text):
    path = tmp_path / "table.out"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_rows_become_trials_of_the_planned_configurations(tmp_path):
    trials = cst.convert_table(
        _write(tmp_path, HARNESS), "benchmarks/sweeps/h200-harness.yaml", ENV
    )
    assert len(trials) == 3
    light, native, large = trials
    # the whole planned configuration, fixed fields included, not only the printed columns
    assert light.config["harness"] == "lightning" and native.config["harness"] == "native"
    assert light.config["optimizer"] == "adamw-fused" and light.config["steps"] == 20
    assert large.config["model"] == "roberta-large" and large.config["batch_size"] == 32
    # the printed figures, unchanged; nothing else measured is invented
    assert light.metrics == {
        "sequences_per_s": 199.4,
        "tokens_per_s": 25520.0,
        "peak_allocated_gib": 2.541,
        "mfu": 0.01357,
    }
    assert all(t.source == MEASURED and t.sweep == "h200-harness" for t in trials)
    assert all(t.key.startswith("run2-") and t.env == ENV for t in trials)
    assert len({t.key for t in trials}) == 3
    assert "summary table" in light.provenance and "abc" in light.provenance


def test_a_row_the_sweep_never_planned_is_an_error(tmp_path):
    text = HARNESS.replace(
        "roberta-large      512          32", "roberta-large      512          64"
    )
    with pytest.raises(cst.ConvertError, match="row 3: 0 planned configurations"):
        cst.convert_table(_write(tmp_path, text), "benchmarks/sweeps/h200-harness.yaml", ENV)


def test_a_median_over_repeats_is_not_taken_for_one_trial(tmp_path):
    text = HARNESS.replace("NVIDIA H200     ok  1 ", "NVIDIA H200     ok  5 ", 1)
    with pytest.raises(cst.ConvertError, match="aggregates 5 repeats"):
        cst.convert_table(_write(tmp_path, text), "benchmarks/sweeps/h200-harness.yaml", ENV)


def test_the_shipped_run_converts_to_what_is_committed(tmp_path):
    # the committed records.jsonl is exactly what the script makes from the committed tables
    out = tmp_path / "records.jsonl"
    assert cst.main(["--out", str(out)]) == 0
    committed = os.path.join(cst.DEFAULT_RUN, "records.jsonl")
    with open(committed, encoding="utf-8") as fh:
        assert out.read_text(encoding="utf-8") == fh.read()
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 54 + 54 + 16 + 8 + 6
    assert rows[0]["env"]["gpu_name"] == "NVIDIA H200"
