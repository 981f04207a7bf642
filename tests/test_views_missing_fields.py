"""A config field missing on some rows (capacity_gb: None on every row that ran the whole card,
a number on a capped one) in the read side's tables and dropdowns. pandas 3's astype(str) keeps
a missing value missing, and nunique leaves it out: {uncapped, 40 GB} read as one value, so the
field that tells the two apart was dropped from the tables (and speedup pooled the two)."""

from __future__ import annotations

import pytest

from sweep.analysis.landing import narrowed_choices
from sweep.analysis.pairs import pair_ratio, speedup
from sweep.analysis.report_rows import results_frame
from sweep.analysis.report_tables import mfu_table
from sweep.analysis.selection import combine, select
from sweep.results.frame import trials_frame
from sweep.results.record import Trial


def _row(gpu: str, tokens: float, sweep: str = "s", **cfg) -> Trial:
    # A record as stored: one without capacity_gb (written before the field existed, or at its
    # default) reads with capacity_gb None (Trial.from_dict).
    config = {"model": "llama-3.2-1b", "batch_size": 8, "seq_len": 2048}
    config |= {"precision": "bf16-mixed", "device": "cuda", **cfg}
    return Trial.from_dict(
        {
            "config": config,
            "status": "ok",
            "sweep": sweep,
            "metrics": {
                "tokens_per_s": tokens,
                "sequences_per_s": tokens / 2048,
                "mfu": tokens / 1e5,
                "tflops_per_s": tokens / 100,
                "peak_tflops": 989.0,
            },
            "env": {"gpu_name": gpu},
        }
    )


H100, H200 = "NVIDIA H100 80GB HBM3", "NVIDIA H200"


def test_speedup_never_pools_a_capped_row_with_the_whole_card():
    rows = [
        _row(H200, 2000.0),
        _row(H100, 1000.0),
        _row(H100, 600.0, capacity_gb=40),  # the same run capped at 40 GB: slower
    ]
    frame = trials_frame(rows)
    assert frame["capacity_gb"].isna().sum() == 2  # the uncapped rows: missing, not "None"
    sp = speedup(frame, H200)
    h100 = sp[sp["gpu"] == H100]
    # the whole card against the whole card (the capped row has no H200 row to compare with)
    assert h100["speedup"].tolist() == [0.5]
    assert h100["config"].str.contains("capacity_gb=None").all()


def test_pair_ratio_names_the_field_that_tells_two_pairs_apart():
    rows = [
        _row(H100, 1200.0, compile=True),
        _row(H100, 1000.0, compile=False),
        _row(H100, 700.0, compile=True, capacity_gb=40),
        _row(H100, 500.0, compile=False, capacity_gb=40),
    ]
    ratio = pair_ratio(results_frame([("a.db", t) for t in rows]), "compile", True, False)
    assert len(ratio) == 2
    assert "capacity_gb" in ratio  # else two rows that read as one configuration
    assert sorted(ratio["ratio"].round(2)) == [1.2, 1.4]


def test_mfu_table_shows_the_capacity_that_tells_two_rows_apart():
    rows = [_row(H100, 1000.0), _row(H100, 600.0, capacity_gb=40)]
    table = mfu_table(results_frame([("a.db", t) for t in rows]))
    assert len(table) == 2
    assert "capacity_gb" in table


def test_a_capacity_chosen_in_its_dropdown_selects_the_capped_rows():
    # the dropdown wrote 40.0, the filter compares config_text's "40": nothing was selected
    rows = [_row(H100, 1000.0), _row(H100, 600.0, capacity_gb=40)]
    frame = combine(trials_frame(rows), {})
    choices = narrowed_choices(frame, {}, "capacity_gb")
    assert choices[1:] == [("40 · 1 GPU", "40"), ("None · 1 GPU", "None")]
    chosen = select(frame, {"capacity_gb": choices[1][1]})
    assert chosen["tokens_per_s"].tolist() == pytest.approx([600.0])
    # the whole card (no cap) is a choice too: the uncapped rows alone (it was not offered)
    whole = select(frame, {"capacity_gb": choices[2][1]})
    assert whole["tokens_per_s"].tolist() == pytest.approx([1000.0])
