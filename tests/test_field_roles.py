"""Field roles (sweep.plan.config): every TrialConfig field has a role and a label, and every list
of fields elsewhere is derived from them, so that a new field appears wherever its role says."""

from __future__ import annotations

import argparse
import dataclasses

import pandas as pd
import pytest

from sweep.plan.config import (
    BATCH,
    MAIN_FIELDS,
    MATCH,
    OPTION,
    ROLES,
    TrialConfig,
    field_label,
    field_names,
    field_role,
    match_fields,
    option_fields,
    shape_fields,
    workload_fields,
)
from tests.test_views_answer import A100, H200, frame, row

# a value other than the default for each field, valid with the defaults for the others
OTHER = {
    "model": "gpt2",
    "task": "causal-lm",
    "mode": "inference",
    "batch_size": 16,
    "seq_len": 64,
    "precision": "bf16-mixed",
    "attention": "eager",
    "compile": True,
    "cuda_graph": True,
    "optimizer": "adamw",
    "gradient_checkpointing": True,
    "harness": "lightning",
    "gpus_per_trial": 2,
    "device": "cpu",
}


def _other(name):
    config = TrialConfig(model="gpt2") if name == "task" else TrialConfig()
    return config, config.replace(**{name: OTHER[name]})


def test_every_field_has_a_role_and_a_label():
    for f in dataclasses.fields(TrialConfig):
        assert f.metadata.get("role") in ROLES, f"{f.name}: no role"
        label = f.metadata.get("label")
        assert isinstance(label, str) and label.strip(), f"{f.name}: no label"
        assert field_label(f.name) == label and field_role(f.name) == f.metadata["role"]
    assert [f for f in field_names() if field_role(f) == BATCH] == ["batch_size"]
    assert set(MAIN_FIELDS) <= set(match_fields())
    assert workload_fields() == tuple(
        f for f in field_names() if f in {*match_fields(), *option_fields(), "batch_size"}
    )
    assert shape_fields() == tuple(f for f in shape_fields() if f != "batch_size")
    assert set(workload_fields()) - {"batch_size"} <= set(shape_fields())


def test_the_roles_of_todays_fields():
    assert match_fields() == (
        "model",
        "task",
        "mode",
        "seq_len",
        "precision",
        "gpus_per_trial",
        "finetune",
        "capacity_gb",  # a capped run measures a smaller card's memory, not a GPU's speed
    )
    assert {"attention", "compile", "cuda_graph", "optimizer", "gradient_checkpointing"} <= set(
        option_fields()
    )
    assert field_role("device") not in (MATCH, OPTION)  # where it runs, not what
    assert {"steps", "warmup_steps", "seed", "min_measure_s", "profile_step"}.isdisjoint(
        workload_fields()
    )


def test_every_match_and_option_field_is_a_filter_an_answer_field_and_a_compare_flag():
    from sweep import compare
    from sweep.analysis.answer import MATCH_FIELDS, OPTION_FIELDS
    from sweep.analysis.selection import FILTER_FIELDS
    from sweep.analysis.table import FIRST_COLUMNS

    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    flags = {a.dest for a in parser._actions}
    assert set(OPTION_FIELDS) == set(option_fields())
    assert set(MATCH_FIELDS) == set(match_fields())
    for name in (*match_fields(), *option_fields()):
        assert name in FILTER_FIELDS, f"{name}: no filter in the app"
        assert name in flags, f"{name}: no flag of sweep compare"
    assert set(workload_fields()) <= set(FIRST_COLUMNS)


def test_compare_flags_become_the_answers_filters():
    from sweep import compare

    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    args = parser.parse_args(
        "--model gpt2 --seq-len 64 --task causal-lm --cuda-graph true --gpus-per-trial 2".split()
    )
    assert compare.filters_of(args) == {
        "task": "causal-lm",
        "cuda_graph": True,
        "gpus_per_trial": 2,
    }


@pytest.mark.parametrize("name", [f for f in OTHER if f != "batch_size"])
def test_the_shape_groupings_keep_every_field_but_the_batch(name):
    """The max-batch search's group, the worker's FLOPs cache, the memory model's fit and a
    chart's series: two trials that differ in one workload field (or the device) are never one."""
    from sweep.analysis.selection import WORKLOAD_FIELDS
    from sweep.engine.flops import shape_key
    from sweep.plan.grid import PlannedTrial
    from sweep.results.memory_model import predicted_limits

    a, b = _other(name)
    assert PlannedTrial(a, None).group != PlannedTrial(b, None).group
    assert shape_key(a.to_dict()) != shape_key(b.to_dict())
    assert name in WORKLOAD_FIELDS
    empty = pd.DataFrame(columns=[*field_names(), "gpu", "status"])
    assert name in predicted_limits(empty).columns


def test_the_shape_groupings_join_batch_sizes():
    from sweep.engine.flops import shape_key
    from sweep.plan.grid import PlannedTrial

    a, b = _other("batch_size")
    assert PlannedTrial(a, None).group == PlannedTrial(b, None).group
    assert shape_key(a.to_dict()) == shape_key(b.to_dict())


def test_rows_that_differ_in_an_option_are_never_averaged_in_the_answer():
    from sweep.analysis.answer import answer

    rows = [
        row(A100, 8, 1000.0),
        row(H200, 8, 1000.0, cuda_graph=False),
        row(H200, 8, 1000.0, cuda_graph=False),
        row(H200, 8, 4000.0, cuda_graph=True),
    ]
    table = answer(frame(rows), "roberta-base", 128, baseline="A100").table.set_index("GPU")
    assert (
        table.loc["H200", "Tokens/s (like baseline)"] == 1000
    )  # the baseline's configuration, not 2500
    assert table.loc["H200", "Differs in"] == ""
    strict = answer(frame(rows), "roberta-base", 128, baseline="H200", strict=True)
    assert list(strict.table["GPU"]) == ["H200"]  # its fastest is a CUDA graph, the A100 has none
    assert strict.table["Tokens/s (like baseline)"].iloc[0] == 4000
    assert any("A100" in n and "cuda_graph=True" in n for n in strict.notes)


def test_a_row_without_an_option_ran_with_its_default():
    """A row stored before a field existed (no value, or no column) is the field's default: it
    is one configuration with the rows that give the default, and a filter on it keeps it."""
    from sweep.analysis.answer import answer
    from sweep.analysis.selection import select

    old = frame([row(H200, 8, 1000.0), row(A100, 8, 500.0)]).drop(columns=["cuda_graph"])
    new = frame([row(H200, 8, 3000.0, cuda_graph=False), row(H200, 8, 9000.0, cuda_graph=True)])
    both = pd.concat([old, new], ignore_index=True)
    assert both["cuda_graph"].isna().sum() == 2
    table = answer(both, "roberta-base", 128, baseline="A100").table.set_index("GPU")
    assert (
        table.loc["H200", "Tokens/s (like baseline)"] == 2000
    )  # median of 1000 and 3000, never 9000
    assert table.loc["H200", "Differs in"] == ""
    assert len(select(both, {"cuda_graph": "False"})) == 3
    assert len(select(old, {"cuda_graph": "False", "gpus_per_trial": "1"})) == 2
    graphs = answer(both, "roberta-base", 128, filters={"cuda_graph": "True"}).table
    assert list(graphs["GPU"]) == ["H200"] and graphs["Tokens/s (like baseline)"].iloc[0] == 9000


def test_the_summary_never_merges_rows_of_different_options():
    from sweep.report import summary_table
    from sweep.results.frame import trials_frame

    rows = [row(H200, 8, 1000.0, cuda_graph=False), row(H200, 8, 3000.0, cuda_graph=True)]
    table = summary_table(trials_frame(rows))
    assert sorted(table["tokens_per_s"]) == [1000.0, 3000.0]
    assert "cuda_graph" in table.columns
