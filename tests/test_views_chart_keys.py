"""Distinct series stay distinct bars: charts key their categories on the series, not on its
shortened label (issue 25: the Cost chart stacked five gpt2 configurations into one bar, Time
breakdown stacked Lightning on native)."""

from __future__ import annotations

import pandas as pd

from sweep.analysis import charts_tabs

LONG = "NVIDIA H200 (ref h200) · attention=sdpa · optimizer=adamw_torch_fused · compile="


def test_short_labels_are_one_to_one():
    from sweep.analysis.charts import short_labels

    series = [LONG + "default", LONG + "max-autotune", "A100"]
    short = short_labels(series, 28)
    assert len(set(short.values())) == 3 and all(len(v) <= 31 for v in short.values())
    assert short["A100"] == "A100"


def test_cost_bars_of_configurations_sharing_a_long_prefix_do_not_stack():
    costs = pd.DataFrame(
        {
            "series": [f"{LONG}{mode}" for mode in ("a", "b", "c", "d", "e")],
            "usd_per_million_tokens": [0.0046, 0.006, 0.008, 0.01, 0.012],
            "best_tokens_per_s": [1e5, 9e4, 8e4, 7e4, 6e4],
            "usd_per_gpu_hour": [3.0] * 5,
        }
    )
    (bars,) = charts_tabs.cost(costs, "t")["data"]
    assert len(set(bars["y"])) == 5  # five categories, five bars: nothing adds up
    yaxis = charts_tabs.cost(costs, "t")["layout"]["yaxis"]
    assert len(set(yaxis["ticktext"])) == 5 and all(len(t) <= 63 for t in yaxis["ticktext"])


def test_breakdown_of_two_harnesses_keeps_two_stacks_per_batch():
    frame = pd.DataFrame(
        {
            "series": [LONG + "x · harness=lightning", LONG + "x · harness=native"],
            "batch_size": [8, 8],
            "forward_ms": [10.0, 9.0],
            "backward_ms": [20.0, 19.0],
            "optimizer_ms": [3.0, 3.0],
            "other_ms": [1.0, 1.0],
            "host_timers": [False, False],
        }
    )
    fig = charts_tabs.breakdown(frame, "t")
    for trace in fig["data"]:
        outer, inner = trace["x"]
        assert len(set(zip(outer, inner, strict=True))) == 2  # one stack per series and batch
