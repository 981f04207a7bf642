"""Loss parity (sweep.analysis.parity) on invented records: a knob is compared with the same
configuration without it, step by step, and flagged past the tolerance; nothing else is paired."""

from __future__ import annotations

import pandas as pd

from sweep.analysis.parity import LOSS_TOLERANCE, format_parity, loss_parity, parity_marks
from sweep.plan.config import TrialConfig

BASE = TrialConfig(
    model="llama-tiny", task="causal-lm", seq_len=16, precision="bf16-mixed", device="cpu"
).to_dict()


def _row(key, losses, gpu="NVIDIA H200", **changes):
    return {
        **BASE,
        **changes,
        "key": key,
        "status": "ok",
        "gpu": gpu,
        "dataset": "measured",
        "losses": losses,
    }


def test_a_knob_within_tolerance_is_ok_and_one_beyond_is_flagged():
    plain = [10.0, 9.0, 8.0]
    rows = [
        _row("plain", plain),
        _row("liger", [10.0, 9.0, 8.0 * (1 + LOSS_TOLERANCE / 2)], liger=True),
        _row("8bit", [10.0, 9.3, 8.6], optimizer="adamw-8bit"),  # 7.5% at the last step
        _row("true", [10.0, 9.0, 8.0], precision="bf16-true"),  # a match field: still paired
    ]
    table = loss_parity(pd.DataFrame(rows)).set_index("key")
    assert table.loc["liger", "parity"] == "ok"
    assert table.loc["liger", "plain_key"] == "plain"
    assert table.loc["8bit", "parity"] == "differs"
    assert abs(table.loc["8bit", "loss_diff_pct"] - 7.5) < 1e-9
    assert table.loc["true", "knob"] == "precision" and table.loc["true", "parity"] == "ok"
    marks = parity_marks(pd.DataFrame(rows))
    assert marks["liger"].startswith("ok (")
    assert marks["8bit"].startswith("differs:") and "7.5%" in marks["8bit"]
    assert "plain" not in marks  # the plain row is what the others are measured against
    assert "1 of 3 differ" in format_parity(pd.DataFrame(rows))


def test_rows_that_differ_in_more_than_the_knob_or_elsewhere_are_not_paired():
    rows = [
        _row("plain", [10.0, 9.0]),
        _row("other-seed", [10.5, 9.5], liger=True, seed=1),  # another seed: another start
        _row("other-gpu", [10.5, 9.5], gpu="NVIDIA A100", liger=True),
        _row("two-knobs", [10.5, 9.5], liger=True, gradient_checkpointing=True),
        {**_row("failed", [10.5, 9.5], liger=True), "status": "oom"},
    ]
    assert loss_parity(pd.DataFrame(rows)).empty
    assert format_parity(pd.DataFrame(rows)) == ""


def test_records_without_a_loss_list_use_their_first_and_last_loss():
    a = {**_row("plain", None), "loss_first": 10.0, "loss_last": 8.0}
    b = {**_row("ckpt", None, gradient_checkpointing=True), "loss_first": 10.0, "loss_last": 8.5}
    table = loss_parity(pd.DataFrame([a, b]))
    assert table["steps"].tolist() == [2] and table["parity"].tolist() == ["differs"]


def test_a_row_stored_before_a_knob_existed_pairs_as_its_default():
    # a plain row without the liger field (stored before it existed) ran without Liger
    plain = {k: v for k, v in _row("plain", [10.0, 9.0]).items() if k != "liger"}
    table = loss_parity(pd.DataFrame([plain, _row("liger", [10.0, 9.0], liger=True)]))
    assert table["key"].tolist() == ["liger"] and table["plain_key"].tolist() == ["plain"]


def test_expandable_segments_pair_with_a_row_stored_before_the_allocator_field():
    # the allocator changes where tensors live, never the arithmetic: its rows pair with the
    # default allocator's, also a row stored before the field existed
    plain = {k: v for k, v in _row("plain", [10.0, 9.0]).items() if k != "allocator"}
    table = loss_parity(pd.DataFrame([plain, _row("exp", [10.0, 9.0], allocator="expandable")]))
    assert table["knob"].tolist() == ["allocator"] and table["parity"].tolist() == ["ok"]
