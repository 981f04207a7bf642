"""benchmarks/same_figures.py: which configurations issue 22's check compares, and how."""

from __future__ import annotations

from benchmarks.same_figures import compare


def _row(tps: float, peak: float, launch: float | None) -> dict:
    metrics = {"tokens_per_s": tps, "peak_allocated_gib": peak}
    if launch is not None:
        metrics["launch_bound_pct"] = launch
    config = {"model": "roberta-base", "seq_len": 512, "batch_size": 64}
    return {"metrics": metrics, "config": config, "sweep": "seed"}


def test_a_launch_bound_configuration_on_either_side_is_left_out():
    ref = {"a": _row(100.0, 5.0, 1.0), "b": _row(100.0, 5.0, 7.0), "c": _row(100.0, 5.0, 2.0)}
    new = {"a": _row(101.0, 5.0, 1.5), "b": _row(100.0, 5.0, 1.0), "c": _row(100.0, 5.0, 5.0)}
    out = compare(new, ref, 5.0)
    assert (out["compared"], out["skipped_launch_bound"]) == (1, 2)
    assert out["pairs"][0]["ratio"] == 1.01


def test_rows_older_than_the_launch_bound_measure_take_the_other_sides_share():
    # code of 2026-11-29 wrote no launch_bound_pct: the same machine's new row decides for both
    ref = {
        "gpu": _row(100.0, 5.0, None),
        "host": _row(100.0, 5.0, None),
        "neither": _row(1, 1, None),
    }
    new = {"gpu": _row(97.0, 5.5, 3.0), "host": _row(100.0, 5.0, 40.0), "neither": _row(1, 1, None)}
    out = compare(new, ref, 5.0)
    assert out["compared"] == 1 and out["skipped_launch_bound"] == 2
    assert out["within_2pct"] == 0 and out["same_peak"] == 0  # 0.97x and 5.5 against 5.0 GiB
