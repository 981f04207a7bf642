"""Scaling efficiency of N-GPU rows against the stored 1-GPU row of the same configuration."""

from __future__ import annotations

import math

import pytest

from sweep.analysis.scaling import format_scaling, scaling
from sweep.plan.config import TrialConfig
from sweep.results.frame import trials_frame
from sweep.results.record import OK, OOM, Trial


def _row(n, tokens, *, batch=32, gpu="NVIDIA H100", status=OK, seed=0, busbw=None):
    config = TrialConfig(
        model="bert-large-uncased",
        seq_len=512,
        batch_size=batch,
        precision="bf16-mixed",
        gpus_per_trial=n,
        seed=seed,
        device="cuda",
    ).to_dict()
    metrics = {"tokens_per_s": tokens} if status == OK else {}
    if busbw:
        metrics.update(allreduce_busbw_gb_s=busbw, allreduce_ms_per_step=9.0)
    return Trial(config=config, status=status, metrics=metrics, env={"gpu_name": gpu})


def test_efficiency_against_the_same_configuration_on_one_gpu():
    rows = [
        _row(1, 1000.0),
        _row(1, 1100.0, seed=1),
        _row(1, 1050.0, seed=2),  # median 1050
        _row(2, 2000.0, busbw=150.0),
        _row(8, 7560.0, busbw=300.0),
        _row(8, 1.0, status=OOM),  # not ok: left out
        _row(1, 500.0, batch=16),  # another configuration: not a baseline for batch 32
        _row(1, 900.0, gpu="NVIDIA A100"),  # another GPU: neither
    ]
    t = scaling(trials_frame(rows))
    assert list(t["gpus_per_trial"]) == [2, 8]
    assert list(t["tokens_per_s_1gpu"]) == [1050.0, 1050.0]
    assert t["scaling_efficiency"][0] == pytest.approx(2000 / (2 * 1050))
    assert t["scaling_efficiency"][1] == pytest.approx(7560 / (8 * 1050))  # 0.9
    assert t["speedup"][1] == pytest.approx(7.2) and t["allreduce_busbw_gb_s"][1] == 300.0
    assert t["batch_size"][0] == 32 and t["gpu"][0] == "NVIDIA H100"


def test_no_baseline_is_said_and_no_n_gpu_rows_is_nothing():
    t = scaling(trials_frame([_row(4, 4000.0)]))
    assert math.isnan(t["scaling_efficiency"][0])
    assert "1 configuration(s) have no stored 1-GPU row" in format_scaling(
        trials_frame([_row(4, 4000.0)])
    )
    assert scaling(trials_frame([_row(1, 1000.0)])).empty
    assert format_scaling(trials_frame([_row(1, 1000.0)])) == ""


def test_old_rows_without_the_field_are_1_gpu_baselines():
    old = _row(1, 1000.0)
    old = old.replace(config={k: v for k, v in old.config.items() if k != "gpus_per_trial"})
    old = Trial.from_dict(old.to_dict())  # read back: the field's default filled in
    t = scaling(trials_frame([old, _row(2, 1900.0)]))
    assert t["scaling_efficiency"][0] == pytest.approx(0.95)


def test_the_run_summary_shows_scaling_only_with_n_gpu_rows():
    from sweep.report import format_summary

    with_n = format_summary(trials_frame([_row(1, 1000.0), _row(2, 1900.0)]))
    assert "Scaling (DDP on N GPUs" in with_n and "0.95" in with_n
    assert "Scaling" not in format_summary(trials_frame([_row(1, 1000.0)]))
